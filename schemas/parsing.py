"""Turning raw bytes or decoded JSON into validated events, or into problems an API can return.

``parse_event_json`` is the single entry point for anything that arrives from outside
(HTTP bodies, Kafka record values): it never raises anything but ``EventRejected``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

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


def decode_json(raw: bytes | str) -> Any:
    """Strict JSON: UTF-8 only, no duplicate keys, no NaN/Infinity, numbers as exact decimals."""
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
        return json.loads(
            text,
            parse_float=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=_reject_duplicate_keys,
        )
    except json.JSONDecodeError as exc:
        raise EventRejected(
            [Problem(_WHOLE_EVENT, "json", f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]
        ) from None
    except RecursionError:
        raise EventRejected([Problem(_WHOLE_EVENT, "json_depth", "is nested too deeply")]) from None


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
