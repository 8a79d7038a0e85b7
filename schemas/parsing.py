"""Turning raw bytes or decoded JSON into validated events, or into problems an API can return.

``parse_event_json`` is the single entry point for anything that arrives from outside
(HTTP bodies, Kafka record values): it never raises anything but ``EventRejected``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
from pydantic import ValidationError

from schemas.events import EVENT_MODELS, InboundEventBase


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason an event was rejected: which field, which rule, in words."""

    field: str
    rule: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class EventRejected(ValueError):
    """The input is not a valid event; ``problems`` says why, field by field."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.message} [{p.rule}]" for p in problems))

    def as_json(self) -> list[dict[str, str]]:
        return [p.as_dict() for p in self.problems]


_RULE_NAMES = {
    "extra_forbidden": "unknown_field",
    "literal_error": "type",
}
_WHOLE_EVENT = "(event)"


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise EventRejected([Problem(key, "duplicate_field", "appears more than once in the object")])
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise EventRejected([Problem(_WHOLE_EVENT, "json", f"{name} is not valid JSON")])


# The fast path's decoder: msgspec, numbers with a fraction or exponent as exact decimals (as below)
_FAST = msgspec.json.Decoder(float_hook=Decimal)
# where an object's key ends: each key in the text matches once; a string value may match too, never less
_KEY_END = re.compile(rb'"\s*:')
# Deepest nesting read: a batch of events is 2 deep. Deeper input is rejected (``json_depth``) at this
# depth, not at whatever depth the interpreter's stack gives out, which changes with the caller's stack.
MAX_DEPTH = 64
_NOT_FAST = object()
_TOO_DEEP = object()


def decode_json(raw: bytes | str) -> Any:
    """Strict JSON: UTF-8 only, no duplicate keys, no NaN/Infinity, numbers as exact decimals.

    Bytes take a fast path first (msgspec, about ten times quicker than the standard library) whose result
    is used only where it is the strict decoder's: decoded without error, no deeper than ``MAX_DEPTH``,
    and as many keys in the decoded objects as key endings in the text (msgspec keeps the last of duplicate
    keys; a duplicate makes the count fall short, a key ending inside a string only adds to the text's).
    Anything else, every error included, is decided by ``decode_json_strict``."""
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        value = _fast(data)
        if value is not _NOT_FAST:
            return value
    return decode_json_strict(raw)


def _fast(data: bytes) -> Any:
    try:
        value = _FAST.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return _NOT_FAST
    keys = _keys_within_depth(value)
    return value if keys is not None and keys == len(_KEY_END.findall(data)) else _NOT_FAST


def _keys_within_depth(value: Any) -> int | None:
    """How many keys the objects in ``value`` have, or None if it nests deeper than ``MAX_DEPTH``."""
    items = [value] if type(value) is dict else value if type(value) is list else None
    if items is not None and all(type(item) is dict for item in items):  # the shape of events: counted quickly
        if not any(type(v) is dict or type(v) is list for item in items for v in item.values()):
            return sum(map(len, items))
    keys, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list) and depth > MAX_DEPTH:
            return None
        if isinstance(item, dict):
            keys += len(item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return keys


def decode_json_strict(raw: bytes | str) -> Any:
    """The standard library's decoder with every rule checked as it reads: what ``decode_json`` falls back to
    and the test oracle of its fast path."""
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventRejected(
                [Problem(_WHOLE_EVENT, "utf8", f"is not valid UTF-8 (byte {exc.start})")]
            ) from None
    else:
        text = raw
    try:
        value = json.loads(
            text,
            parse_float=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=_reject_duplicate_keys,
        )
    except EventRejected:
        raise
    except json.JSONDecodeError as exc:
        raise EventRejected(
            [Problem(_WHOLE_EVENT, "json", f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]
        ) from None
    except ValueError:  # an integer longer than Python converts (sys.get_int_max_str_digits); its own message
        # tells the reader to change a Python setting, which is not for an API client
        raise EventRejected([Problem(_WHOLE_EVENT, "json_number", "has a number with too many digits")]) from None
    except RecursionError:
        value = _TOO_DEEP
    if value is _TOO_DEEP or _keys_within_depth(value) is None:
        raise EventRejected([Problem(_WHOLE_EVENT, "json_depth", f"is nested more than {MAX_DEPTH} levels deep")])
    return value


def problems_from_validation_error(error: ValidationError, model: type | None = None) -> list[Problem]:
    known_fields = list(getattr(model, "model_fields", {}) or {})
    problems = []
    for item in error.errors(include_url=False):
        loc = item.get("loc") or ()
        ctx = item.get("ctx") or {}
        field = ".".join(str(part) for part in loc) or ctx.get("field") or _WHOLE_EVENT
        rule = _RULE_NAMES.get(item["type"], item["type"])
        message = item["msg"]
        if rule == "unknown_field":
            message = "is not a field of this event"
            close = difflib.get_close_matches(str(loc[-1]), known_fields, n=1) if loc else []
            if close:
                message += f"; did you mean '{close[0]}'?"
        problems.append(Problem(field, rule, message))
    return problems


def parse_event(data: Any, *, now: datetime | None = None) -> InboundEventBase:
    """Validate one decoded JSON value as an inbound event.

    ``now`` is the clock the "not in the future" rule compares against; shells pass
    their clock, tests pass a fixed time. Without it the system clock is used.
    """
    if not isinstance(data, Mapping):
        raise EventRejected([Problem(_WHOLE_EVENT, "object", "must be a JSON object")])
    kind = data.get("type")
    if kind is None:
        raise EventRejected(
            [Problem("type", "missing", f"is required: one of {', '.join(EVENT_MODELS)}")]
        )
    model = EVENT_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise EventRejected(
            [Problem("type", "type", f"must be one of {', '.join(EVENT_MODELS)}")]
        )
    context = {"now": now} if now is not None else None
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise EventRejected(problems_from_validation_error(exc, model)) from None


def parse_event_json(raw: bytes | str, *, now: datetime | None = None) -> InboundEventBase:
    """Validate raw JSON text or bytes as one inbound event."""
    return parse_event(decode_json(raw), now=now)
