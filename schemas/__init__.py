"""Event contracts: inbound events, derived events, topics and their records."""

from schemas.derived import (
    Attribution,
    AttributionMethod,
    DeadLetter,
    ReasonCode,
    RewardChange,
    RewardRole,
    RewardStatus,
)
from schemas.events import (
    EVENT_MODELS,
    ClickEvent,
    InboundEvent,
    InboundEventBase,
    OrderEvent,
    RefundEvent,
    ShareEvent,
    SignupEvent,
)
from schemas.fields import Channel
from schemas.parsing import EventRejected, Problem, decode_json, parse_event, parse_event_json

__all__ = [
    "EVENT_MODELS",
    "Attribution",
    "AttributionMethod",
    "Channel",
    "ClickEvent",
    "DeadLetter",
    "EventRejected",
    "InboundEvent",
    "InboundEventBase",
    "OrderEvent",
    "Problem",
    "ReasonCode",
    "RefundEvent",
    "RewardChange",
    "RewardRole",
    "RewardStatus",
    "ShareEvent",
    "SignupEvent",
    "decode_json",
    "parse_event",
    "parse_event_json",
]
