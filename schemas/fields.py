"""Field types shared by the event contracts.

Each type validates one rule and, when it fails, raises a ``PydanticCustomError``
whose type is a stable rule name (``control_characters``, ``timezone_required``,
...): that name is what an API returns as ``rule``.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any

from iso4217 import Currency
from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

MAX_ID_LENGTH = 128
MAX_FUTURE_SKEW = timedelta(minutes=5)
#: The largest amount an order or refund may carry, in major units of any currency.
MAX_AMOUNT = Decimal("1000000000")

_CONTROL_CATEGORIES = {"Cc"}
# Unicode's category Cc is exactly these code points (it is closed: no version adds to it), so one search
# finds whether a string has one; the character-by-character walk then names the first, as it always did.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")


def _no_control_characters(value: str) -> str:
    """The fast path of the common valid id: one regex search; a string with a control character is ruled
    on by the walk below (tests/unit/schemas/test_fields_fast_path.py: both agree on every string)."""
    if _CONTROL_CHARACTER.search(value) is None:
        return value
    return _no_control_characters_walk(value)


def _no_control_characters_walk(value: str) -> str:
    for ch in value:
        if unicodedata.category(ch) in _CONTROL_CATEGORIES:
            raise PydanticCustomError(
                "control_characters",
                "must not contain control characters (found {char})",
                {"char": f"U+{ord(ch):04X}"},
            )
    return value


def _printable(value: str) -> str:
    """The fast path: ``str.isprintable`` over the whole string; otherwise the walk names the first."""
    if value.isprintable():
        return value
    return _printable_walk(value)


def _printable_walk(value: str) -> str:
    for ch in value:
        if not ch.isprintable():
            raise PydanticCustomError(
                "printable_characters",
                "must contain printable characters only (found {char})",
                {"char": f"U+{ord(ch):04X}"},
            )
    return value


_ID_JSON_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
    "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$",
}

#: An id or code: 1-128 characters, no control characters.
Identifier = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH),
    AfterValidator(_no_control_characters),
    WithJsonSchema(_ID_JSON_SCHEMA),
]

#: The idempotency key: 1-128 printable characters.
def rfc3339(at: datetime) -> str:
    """A UTC time as RFC 3339 text with ``Z``, as the records' headers and the webhooks carry it."""
    return at.isoformat().replace("+00:00", "Z")


#: Free text for people (a note for support): no control characters; its length is the field's.
Text = Annotated[str, AfterValidator(_no_control_characters)]

EventId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH),
    AfterValidator(_printable),
    WithJsonSchema({**_ID_JSON_SCHEMA, "description": "1-128 printable characters; the idempotency key"}),
]

# RFC 3339 section 5.6 date-time; the offset ("Z" or +hh:mm) is mandatory.
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})?$"
)


def _parse_rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise PydanticCustomError("timezone_required", "needs a UTC offset, e.g. 2026-05-01T12:00:00Z")
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("rfc3339", "must be an RFC 3339 date-time string")
    match = _RFC3339.match(value)
    if match is None:
        raise PydanticCustomError(
            "rfc3339", "must be an RFC 3339 date-time such as 2026-05-01T12:00:00Z"
        )
    if match.group(8) is None:
        raise PydanticCustomError("timezone_required", "needs a UTC offset, e.g. 2026-05-01T12:00:00Z")
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError:
        raise PydanticCustomError("rfc3339", "is not a valid calendar date and time") from None


def _not_in_future(value: datetime, info: ValidationInfo) -> datetime:
    context = info.context or {}
    now = context.get("now")
    if now is None:
        now = datetime.now(UTC)
    if value - now > MAX_FUTURE_SKEW:
        raise PydanticCustomError(
            "future_time", "is more than 5 minutes in the future (clock skew allowed: 5 minutes)"
        )
    return value.astimezone(UTC)


#: When the event happened (event time decides, not arrival time).
OccurredAt = Annotated[
    datetime,
    BeforeValidator(_parse_rfc3339),
    AfterValidator(_not_in_future),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": _RFC3339.pattern.replace(")?$", ")$"),
            "description": "RFC 3339 with a UTC offset; at most 5 minutes in the future",
        }
    ),
]


class Channel(StrEnum):
    """Where a referral link was shared or clicked."""

    WHATSAPP = "whatsapp"
    EMAIL = "email"
    SMS = "sms"
    FACEBOOK = "facebook"
    INSTAGRAM = "instagram"
    X = "x"
    TELEGRAM = "telegram"
    MESSENGER = "messenger"
    COPY_LINK = "copy_link"
    QR = "qr"
    OTHER = "other"


_DECIMAL_STRING = re.compile(r"^\d{1,10}(\.\d{1,10})?$")


def _parse_amount(value: Any) -> Any:
    """A decimal string or a JSON number, as an exact ``Decimal``; never a float in between."""
    if isinstance(value, bool):
        raise PydanticCustomError("amount_type", "must be a decimal string or a JSON number")
    if isinstance(value, str):
        if not _DECIMAL_STRING.match(value):
            raise PydanticCustomError(
                "decimal_format", "must be a plain decimal such as \"19.99\" (no sign, exponent or spaces)"
            )
        return Decimal(value)
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # Only reached when a caller hands a float over directly: the shortest repr is what was typed.
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise PydanticCustomError("decimal_format", "must be a finite number")
        try:
            # Normalise exponent notation (1E+1) to a plain decimal of the same value and scale.
            return value if value.as_tuple().exponent <= 0 else value.quantize(Decimal(1))
        except InvalidOperation:
            raise PydanticCustomError("decimal_format", "must be a finite number") from None
    raise PydanticCustomError("amount_type", "must be a decimal string or a JSON number")


def _amount_range(value: Decimal) -> Decimal:
    if value <= 0:
        raise PydanticCustomError("amount_positive", "must be greater than 0")
    if value >= MAX_AMOUNT:
        raise PydanticCustomError("amount_too_large", "must be less than 1000000000")
    return value


#: A positive money amount, exact. Decimal places are checked against the currency by the model.
Amount = Annotated[
    Decimal,
    BeforeValidator(_parse_amount),
    AfterValidator(_amount_range),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "string", "pattern": _DECIMAL_STRING.pattern},
                {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": int(MAX_AMOUNT)},
            ],
            "description": "exact amount in major units (\"19.99\"), no more decimals than the currency allows",
        }
    ),
]

#: ISO 4217 codes of currencies money can be paid in (funds, metals and test codes have no minor unit).
PAYMENT_CURRENCIES: dict[str, int] = {
    c.code: c.exponent for c in Currency if c.exponent is not None
}


def _currency(value: str) -> str:
    if value not in PAYMENT_CURRENCIES:
        raise PydanticCustomError(
            "iso4217", "must be an ISO 4217 currency code such as EUR (upper case)"
        )
    return value


Currency3 = Annotated[
    str,
    AfterValidator(_currency),
    WithJsonSchema({"type": "string", "enum": sorted(PAYMENT_CURRENCIES)}),
]


def minor_units(currency: str) -> int:
    """How many decimals the currency allows (EUR 2, JPY 0, KWD 3)."""
    return PAYMENT_CURRENCIES[currency]


def decimal_places(amount: Decimal) -> int:
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


#: A channel field: the enum's value as a JSON string (strict mode would demand an enum instance).
ChannelField = Annotated[Channel, Field(strict=False)]
