"""Which inbound records can be used, and a dead-letter record for those that cannot. Pure.

A record goes to ``referrals.deadletter`` (its original bytes, source topic/partition/
offset and the reason) when its value is not UTF-8 JSON, breaks its event's contract,
or is a valid event of another type than its topic carries (``wrong_topic``). The agent
goes on with the next record.

The worker's own topics carry facts in the records' encoding (``streams.record_codec``). A
record there is dead-lettered the same way when its tag names no record type
(``unknown_record``: nothing is built from it), it is not an envelope or does not fit its
type (``damaged_record``: a pickle, random bytes, a value cut short), it is of another format
(``other_format``), it holds a fact its stage does not take (``wrong_fact``), or it has no
UTF-8 key (``key``).
"""

from __future__ import annotations

from datetime import datetime

from schemas.derived import DeadLetter
from schemas.events import InboundEventBase
from schemas.parsing import EventRejected, Problem, parse_event_json
from schemas.topics import CUSTOMER_FACTS, INBOUND, REFERRER_FACTS, VISITOR_FACTS
from streams import record_codec
from streams.erasure import Adopt, AdoptPart, Continue, Erase, Forget
from streams.referrer_rewards import Tick
from streams.stages import Share, Versioned
from streams.visitor_attribution import VisitorSignup

# what each stage's own topic carries: the facts the stages send (``stages.Outbound``), the erase command's
# ``Erase`` and the clock's ``Tick``
INTERNAL_FACTS: dict[str, tuple[type, ...]] = {
    VISITOR_FACTS.name: (VisitorSignup, Erase),
    CUSTOMER_FACTS.name: (Versioned, Erase, Forget),
    REFERRER_FACTS.name: (Share, Versioned, Tick, Erase, Adopt, AdoptPart, Continue, Forget),
}


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


def classify_internal(
    *, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, received_at: datetime,
    topic_prefix: str = "",
) -> object | DeadLetter:
    """The fact a record of a stage's own topic carries, or the dead letter that keeps it."""
    kinds = next(kinds for name, kinds in INTERNAL_FACTS.items() if topic_prefix + name == topic)

    def dead(rule: str, message: str) -> DeadLetter:
        return DeadLetter.for_record(topic=topic, partition=partition, offset=offset, value=value, key=key,
                                     reason=rule, problems=[Problem("(record)", rule, message).as_dict()],
                                     received_at=received_at)

    if value is None:
        return dead("empty", "the record has no value")
    try:
        fact = record_codec.decode(value)
    except record_codec.UnreadableRecord as exc:
        return dead(exc.reason, str(exc)[:200])
    if not isinstance(fact, kinds):
        return dead("wrong_fact", f"a {type(fact).__name__} on {topic}, which carries "
                                  + ", ".join(k.__name__ for k in kinds))
    if key is None:
        return dead("key", "the record has no key")
    try:
        key.decode("utf-8")
    except UnicodeDecodeError:
        return dead("key", "the key is not UTF-8")
    return fact
