"""Events as Kafka records: topic, key, UTF-8 JSON value and CloudEvents headers.

Pure functions, no Kafka client here: the producers put what this returns on the wire.
Headers follow the CloudEvents Kafka protocol binding (binary content mode), so any
Kafka tool can route a record without parsing its value.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.derived import Attribution, RewardChange
from schemas.events import InboundEventBase
from schemas.fields import rfc3339
from schemas.fulfilment import Fulfilment
from schemas.topics import ATTRIBUTIONS, BY_EVENT_TYPE, FULFILMENTS, REWARDS

CE_SPECVERSION = "1.0"
CE_TYPE_PREFIX = "io.referral-pipeline."
CONTENT_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def ce_type(event_type: str) -> str:
    return f"{CE_TYPE_PREFIX}{event_type}.v1"


def _headers(event_id: str, event_type: str, source: str, time: str) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", CE_SPECVERSION.encode()),
        ("ce_id", event_id.encode()),
        ("ce_type", ce_type(event_type).encode()),
        ("ce_source", source.encode()),
        ("ce_time", time.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]


def _rfc3339(model: InboundEventBase | Attribution | RewardChange | Fulfilment) -> str:
    return rfc3339(model.occurred_at)


def inbound_record(event: InboundEventBase, source: str, topic_prefix: str = "") -> Record:
    """The record an inbound event is produced as. The value is the event's canonical JSON.

    ``topic_prefix`` isolates test runs (and tenants); it is empty in production.
    """
    kind = event.type  # type: ignore[attr-defined]
    spec = BY_EVENT_TYPE[kind]
    key = getattr(event, spec.key_field)
    return Record(
        topic=topic_prefix + spec.name,
        key=key.encode(),
        value=event.model_dump_json(exclude_none=True).encode(),
        headers=_headers(event.event_id, kind, source, _rfc3339(event)),
    )


Model = InboundEventBase | Attribution | RewardChange | Fulfilment


def _record(topic: str, key: str, model: Model, kind: str, source: str) -> Record:
    return Record(topic=topic, key=key.encode(), value=model.model_dump_json(exclude_none=True).encode(),
                  headers=_headers(model.event_id, kind, source, _rfc3339(model)))


def attribution_record(attribution: Attribution, source: str, topic_prefix: str = "") -> Record:
    return _record(topic_prefix + ATTRIBUTIONS.name, attribution.referee_id, attribution, "attribution", source)


def reward_record(change: RewardChange, referrer_id: str, source: str, topic_prefix: str = "") -> Record:
    return _record(topic_prefix + REWARDS.name, referrer_id, change, "reward", source)


def fulfilment_record(fulfilment: Fulfilment, source: str, topic_prefix: str = "") -> Record:
    """A shop's fulfilment, keyed by its reward: one reward's in order."""
    return _record(topic_prefix + FULFILMENTS.name, fulfilment.reward_id, fulfilment, "fulfilment", source)
