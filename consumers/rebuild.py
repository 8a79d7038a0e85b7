"""``referrals rebuild``: every Redis view recomputed from Kafka into a fresh key prefix, then switched to.

Two sources, both the referrer stage's own log (the stage that writes every counter):

- ``changelog`` (default): the stage's table changelog, a compacted topic holding the last
  record of every referrer for as long as the pipeline runs, whatever the topics' retention;
- ``log``: the stage's inputs replayed through the pure stage (``streams.stages.referrer_step``)
  in log order: ``referrals.shares`` and ``referrals.referrer-facts`` (every referral,
  profile and counted click the upstream stages decided from the inbound topics, and the
  clock's ticks). It covers what those topics retain (the local broker keeps 7 days).

Either way the records are the worker's own, so the snapshots (``streams.counters``) are
equal to what the live view holds, sequence numbers included. The rebuilt rewards are
checked against the reward events (``referrals.rewards``, last change per reward wins).

The switch: the new view is written under ``<key_prefix>v<n>:``, the pointer
(``streams.redis_views``) is moved to it, and whatever reached the log meanwhile is read
and written too (the worker follows the pointer from its next batch; the snapshot fence
makes the two writers agree). Then the old view's keys are deleted (``--keep-old`` keeps
them). Dead-letter counts and referral codes are not views and are left as they are.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import redis

from consumers import kafka_log
from referrals.privacy import pseudonym
from referrals.redis_client import delete_matching, redis_client
from referrals.settings import Settings
from schemas.derived import DeadLetter
from schemas.events import ShareEvent
from schemas.topics import REFERRER_FACTS, REWARDS, SHARES
from streams import counters, erasure_registry, record_codec, redis_views, referee_ledger, referrer_parts, stages
from streams.campaigns import CampaignBook
from streams.deadletter import classify, classify_internal
from streams.inbound import to_fact
from streams.redis_layout import RedisLayout
from streams.redis_sink import SnapshotWriter
from streams.referrer_rewards import Tick
from streams.stage_runner import Batch, ByName, StageRunner, Tables
from streams.topology import changelog_topics

Source = Literal["changelog", "log"]
Progress = Callable[[str, int, int | None], None]  # (phase, advance, total or None)


@dataclass
class RebuildResult:
    source: str
    old_prefix: str
    new_prefix: str
    referrers: int
    records_read: int
    switched: bool
    rewards_checked: int = 0
    rewards_differing: dict[str, tuple] = field(default_factory=dict)
    old_keys_deleted: int = 0


def _no_progress(_phase: str, _advance: int, _total: int | None) -> None:
    pass


def _shares_resolve_no_codes(code: str) -> None:
    raise AssertionError(f"a share names its referrer: no code to resolve ({code!r})")


class _Replay:
    """The referrer stage over its own input log, in memory: the worker's own runner (``streams.stage_runner``)
    over a table of its own; what it sends is not sent."""

    def __init__(self, settings: Settings, campaigns: CampaignBook, erased: set[str]):
        self.settings = settings
        secret = settings.privacy.pseudonym_key.get_secret_value()
        self.runner = StageRunner(campaigns, Tables({}, {}, {}, ("", "", "")), settings.kafka.partitions,
                                  erased=erased, pseudonym_of=lambda customer_id: pseudonym(secret, customer_id),
                                  horizon_days=settings.streams.dedup_horizon_days,
                                  visitor_cap=settings.streams.visitor_fact_cap,
                                  customer_limits=referee_ledger.Limits(orders=settings.streams.customer_orders_kept))
        self.records = ByName(self.runner.tables.referrers)
        self.changed: set[str] = set()

    def feed(self, record) -> None:  # a kafka-python ConsumerRecord
        prefix = self.settings.kafka.topic_prefix
        batch = Batch()
        batch.partition = record.partition
        if record.topic == prefix + SHARES.name:
            received = datetime.fromtimestamp(record.timestamp / 1000, UTC)
            share = classify(topic=record.topic, partition=record.partition, offset=record.offset, key=record.key,
                             value=record.value, received_at=received, topic_prefix=prefix)
            if isinstance(share, ShareEvent):
                self.runner.referrer(*to_fact(share, _shares_resolve_no_codes), batch)
        else:
            fact = classify_internal(topic=record.topic, partition=record.partition, offset=record.offset,
                                     key=record.key, value=record.value, received_at=datetime.now(UTC),
                                     topic_prefix=prefix)
            if isinstance(fact, DeadLetter):
                return  # the worker dead-lettered it too: it changed nothing
            if isinstance(fact, Tick):
                self.runner.tick(record.partition, fact.now, batch)
            else:
                self.runner.referrer(record.key.decode(), fact, batch)
        self.changed.update(batch.dirty, batch.retired)


def _changelog_records(settings: Settings, campaigns: CampaignBook, until, since, records: dict, changed: set,
                       progress: Progress) -> int:
    """The referrer records as the worker's table recovers them: assembled from their parts
    (``streams.referrer_parts``), a record a crash left torn decided again as the worker will."""
    n = 0
    assembler = referrer_parts.Assembler(records)
    for record in kafka_log.read(settings, until, since, on_progress=lambda k: progress("read", k, None)):
        n += 1
        value = None if record.value is None else record_codec.decode(record.value)
        changed.add(assembler.apply(record.key, value))
    for referrer_id, newest in assembler.finish().items():
        records[referrer_id] = stages.referrer_repair(records[referrer_id], referrer_id, campaigns, newest).record
    return n


def _write(writer: SnapshotWriter, layout: RedisLayout, records: dict[str, stages.ReferrerRecord],
           ids: list[str], progress: Progress, chunk: int = 500) -> None:
    for i in range(0, len(ids), chunk):
        part = ids[i:i + chunk]
        writer.apply([counters.snapshot(layout, r, records[r]) for r in part
                      if r in records and records[r].erasure is None])  # markers: mid-erasure, no view
        progress("write", len(part), None)


def _delete_view(client: redis.Redis, prefix: str) -> int:
    return delete_matching(client, f"{prefix}{{ref:*")


def check_rewards(settings: Settings, records: dict[str, stages.ReferrerRecord],
                  until: kafka_log.Position) -> tuple[int, dict[str, tuple]]:
    """The rebuilt rewards against the reward events: the last change of each reward id must say the same.
    Rewards revoked with 0 points are left out (announced, then voided by a late event: whether they exist
    depends on arrival order, as documented)."""
    logged: dict[str, tuple[str, int]] = {}
    for record in kafka_log.read(settings, until):
        change = json.loads(record.value)
        logged[change["reward_id"]] = (change["status"], change["points"])
    rebuilt = {w.reward_id: (w.status.value, w.points) for r in records.values() for w in r.core.rewards.values()}

    def real(rewards: dict[str, tuple[str, int]]) -> dict[str, tuple[str, int]]:
        return {k: v for k, v in rewards.items() if v != ("revoked", 0)}

    logged, rebuilt = real(logged), real(rebuilt)
    differing = {k: (rebuilt.get(k), logged.get(k)) for k in set(logged) | set(rebuilt)
                 if rebuilt.get(k) != logged.get(k)}
    return len(rebuilt), differing


def rebuild(settings: Settings, campaigns: CampaignBook, *, source: Source = "changelog", switch: bool = True,
            keep_old: bool = False, settle_s: float = 2.0, progress: Progress = _no_progress) -> RebuildResult:
    client = redis_client(settings)
    key_prefix, partitions = settings.redis.key_prefix, settings.kafka.partitions
    prefix = settings.kafka.topic_prefix
    old = redis_views.active_prefix(client, key_prefix)
    new = redis_views.next_prefix(key_prefix, old)
    _delete_view(client, new)  # leftovers of an interrupted rebuild
    layout = RedisLayout(new, partitions)
    writer = SnapshotWriter(client)

    if source == "changelog":
        topics = [t for t in changelog_topics(settings) if t.endswith("-referrers-changelog")]
    else:
        topics = [prefix + SHARES.name, prefix + REFERRER_FACTS.name]
    until = kafka_log.end_offsets(settings, topics)
    progress("read", 0, sum(until.values()))
    records: dict[str, stages.ReferrerRecord]
    if source == "changelog":
        records, changed = {}, set()
        read = _changelog_records(settings, campaigns, until, None, records, changed, progress)
    else:
        replay = _Replay(settings, campaigns, erasure_registry.pseudonyms(client, key_prefix))
        read = 0
        for record in kafka_log.read(settings, until, on_progress=lambda k: progress("read", k, None)):
            replay.feed(record)
            read += 1
        records = replay.records
    progress("write", 0, len(records))
    _write(writer, layout, records, sorted(records), progress)
    rewards_until = kafka_log.end_offsets(settings, [prefix + REWARDS.name])
    checked, differing = check_rewards(settings, records, rewards_until)
    result = RebuildResult(source, old, new, len(records), read, False, checked, differing)
    if not switch:
        return result

    redis_views.switch(client, key_prefix, new)
    result.switched = True
    time.sleep(settle_s)  # batches that read the old pointer finish their writes
    since, until = until, kafka_log.end_offsets(settings, topics)
    if source == "changelog":
        changed: set[str] = set()
        result.records_read += _changelog_records(settings, campaigns, until, since, records, changed, progress)
    else:
        replay.changed = set()
        for record in kafka_log.read(settings, until, since):
            replay.feed(record)
            result.records_read += 1
        changed = replay.changed
    _write(writer, layout, records, sorted(changed), progress)
    result.referrers = len(records)
    if not keep_old and old != new:
        result.old_keys_deleted = _delete_view(client, old)
    return result
