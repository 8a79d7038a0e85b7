"""The worker's topology: the topics it reads and writes, its tables and their changelog topics, the clock's
tick record. Importable without Faust (the ops commands, ``rebuild``, the tests and the benches use it)."""

from __future__ import annotations

from datetime import datetime

from referrals.kafka_admin import ensure_topics
from referrals.settings import Settings
from schemas.topics import ATTRIBUTIONS, DEADLETTER, INBOUND, INTERNAL, REWARDS
from streams import record_codec
from streams.referrer_rewards import Tick

TABLES = ("visitors", "customers", "referrers")  # one per stage, in the order of the flow
TICK_KEY = b"__tick__"


def input_topics(settings: Settings) -> list[str]:
    """What the worker reads: the inbound events and its own internal facts (its group's lag is on these)."""
    prefix = settings.kafka.topic_prefix
    return [prefix + s.name for s in (*INBOUND, *INTERNAL)]


def worker_topics(settings: Settings) -> list[str]:
    prefix = settings.kafka.topic_prefix
    return [prefix + s.name for s in (*INBOUND, ATTRIBUTIONS, REWARDS, DEADLETTER, *INTERNAL)]


def changelog_topic(app_id: str, table: str) -> str:
    """A table's changelog topic, named as Faust names it."""
    return f"{app_id}-{table}-changelog"


def changelog_topics(settings: Settings) -> list[str]:
    """The tables' changelog topics, in the order of ``TABLES``."""
    return [changelog_topic(settings.streams.app_id, table) for table in TABLES]


def prepare_topics(settings: Settings) -> None:
    """Every topic the worker uses, before it starts. Faust would create the changelogs itself, but a
    just-created topic can show 0 partitions to its consumer for a moment, and Faust then refuses the
    table write (``PartitionsMismatch``); created and awaited here, they are complete when it starts."""
    ensure_topics(settings, worker_topics(settings))
    # compacted; segments roll daily, so a tombstone (an erased customer, streams.erasure) removes the
    # values before it within about a day
    ensure_topics(settings, changelog_topics(settings), configs={"cleanup.policy": "compact", "segment.ms": "86400000"})


def tick_record(now: datetime) -> tuple[bytes, bytes]:
    """The clock's tick as a referrer-facts record (key, value): ends the hold periods due at ``now``."""
    return TICK_KEY, record_codec.encode(Tick(now))
