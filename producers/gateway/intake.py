"""From a request body to validated events, or to the status and errors the client gets.

Pure: no HTTP framework, no Kafka, no clock (``now`` is passed in). The rules:

- not UTF-8 JSON -> 400; a JSON value that is neither an object nor an array of objects,
  an empty array, or more than ``max_batch`` events -> 422;
- an event whose type the key may not send -> 403 (checked before validation);
- any invalid event -> 422 listing every problem with its index; nothing is produced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from referrals.http_errors import error
from schemas.events import EVENT_MODELS, InboundEventBase
from schemas.parsing import EventRejected, decode_json, parse_event

BODY = "(body)"


class IntakeRejected(Exception):
    def __init__(self, status: int, errors: list[dict[str, Any]]):
        super().__init__(f"{status}: {errors[:3]}")
        self.status = status
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Intake:
    events: list[InboundEventBase]
    batch: bool


def read_events(
    body: bytes, *, allowed_types: frozenset[str], principal: str, now: datetime, max_batch: int
) -> Intake:
    try:
        data = decode_json(body)
    except EventRejected as exc:
        status = 422 if exc.problems[0].rule == "duplicate_field" else 400
        raise IntakeRejected(status, [error(None, p.field if p.field != "(event)" else BODY, p.rule, p.message)
                                      for p in exc.problems]) from None
    batch = isinstance(data, list)
    items = data if batch else [data]
    if batch and not items:
        raise IntakeRejected(422, [error(None, BODY, "empty_batch", "an array must hold at least one event")])
    if len(items) > max_batch:
        raise IntakeRejected(
            422, [error(None, BODY, "batch_too_large", f"an array may hold at most {max_batch} events")]
        )
    forbidden = [
        error(i, "type", "forbidden_type", f"key '{principal}' may not send {item['type']} events")
        for i, item in enumerate(items)
        if isinstance(item, dict) and isinstance(item.get("type"), str)
        and item["type"] in EVENT_MODELS and item["type"] not in allowed_types
    ]
    if forbidden:
        raise IntakeRejected(403, forbidden)
    events, errors = [], []
    for i, item in enumerate(items):
        try:
            events.append(parse_event(item, now=now))
        except EventRejected as exc:
            errors += [error(i if batch else 0, p.field, p.rule, p.message) for p in exc.problems]
    if errors:
        raise IntakeRejected(422, errors)
    return Intake(events, batch)
