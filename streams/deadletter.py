"""Which inbound records can be used, and a dead-letter record for those that cannot. Pure.

A record goes to ``referrals.deadletter`` (its original bytes, source topic/partition/
offset and the reason) when its value is not UTF-8 JSON, breaks its event's contract,
or is a valid event of another type than its topic carries (``wrong_topic``). The agent
goes on with the next record.
"""

from __future__ import annotations

from datetime import datetime

from schemas.derived import DeadLetter
from schemas.events import InboundEventBase
from schemas.parsing import EventRejected, Problem, parse_event_json
from schemas.topics import INBOUND


def classify(
    *, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, received_at: datetime,
    topic_prefix: str = "",
) -> InboundEventBase | DeadLetter:
    """The event the record carries, or the dead letter that keeps it."""
    expected = next((s.event_type for s in INBOUND if topic_prefix + s.name == topic), None)

    def dead(problems: list[Problem]) -> DeadLetter:
        return DeadLetter.for_record(topic=topic, partition=partition, offset=offset, value=value, key=key,
                                     reason=problems[0].rule, problems=[p.as_dict() for p in problems],
                                     received_at=received_at)

    if value is None:
        return dead([Problem("(event)", "empty", "the record has no value")])
    try:
        # Event time is what the producer says; the "not in the future" rule is checked against
        # the time the record reached the worker.
        event = parse_event_json(value, now=received_at)
    except EventRejected as exc:
        return dead(exc.problems)
    if expected is not None and event.type != expected:  # type: ignore[attr-defined]
        return dead([Problem("type", "wrong_topic", f"a {event.type} event on {topic}, which carries "  # type: ignore[attr-defined]
                             f"{expected} events")])
    return event
