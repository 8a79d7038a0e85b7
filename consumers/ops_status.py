"""``referrals status``: is the pipeline healthy? Stack, topics, consumer lag, workers, dead letters.

Every probe is independent: Kafka down still shows Redis, and the other way round; what
could not be read says why instead of a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis

from referrals.kafka_admin import admin_client, group_positions
from referrals.redis_client import redis_client
from referrals.settings import Settings
from schemas.topics import DEADLETTER
from streams import deadletter_counts, redis_views, worker_heartbeats
from streams.topology import changelog_topics, input_topics, worker_topics


@dataclass
class StatusReport:
    kafka: str  # "ok" or the error
    redis: str
    topics_missing: list[str] = field(default_factory=list)
    topics_present: int = 0
    group: str = ""
    group_state: str = ""
    group_members: int = 0
    lag: dict[str, int] = field(default_factory=dict)  # topic (without prefix) -> records behind
    workers: list[dict[str, Any]] = field(default_factory=list)
    deadletter_records: int | None = None  # records in the dead-letter topic
    deadletters: dict[str, int] = field(default_factory=dict)  # "<topic> <reason>" -> distinct dead letters
    view_prefix: str = ""

    @property
    def healthy(self) -> bool:
        return self.kafka == "ok" and self.redis == "ok" and not self.topics_missing

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "healthy": self.healthy}


def _short(settings: Settings, topic: str) -> str:
    prefix = settings.kafka.topic_prefix
    return topic[len(prefix):] if prefix and topic.startswith(prefix) else topic


def gather(settings: Settings, now: datetime) -> StatusReport:
    report = StatusReport(kafka="ok", redis="ok", group=settings.streams.app_id)
    prefix = settings.kafka.topic_prefix
    try:
        admin = admin_client(settings, "referrals-status")
        try:
            existing = set(admin.list_topics())
            wanted = worker_topics(settings) + changelog_topics(settings)
            report.topics_missing = sorted(t for t in wanted if t not in existing)
            report.topics_present = len(wanted) - len(report.topics_missing)
            group = admin.describe_groups([settings.streams.app_id])[settings.streams.app_id]
            report.group_state = group["group_state"]
            report.group_members = len(group["members"])
        finally:
            admin.close()
        inputs = input_topics(settings)
        present = [t for t in inputs if t in existing]
        for (topic, _p), (committed, end) in group_positions(settings, settings.streams.app_id, present).items():
            report.lag[_short(settings, topic)] = report.lag.get(_short(settings, topic), 0) + max(0, end - committed)
        if prefix + DEADLETTER.name in existing:
            from consumers.kafka_log import end_offsets

            report.deadletter_records = sum(end_offsets(settings, [prefix + DEADLETTER.name]).values())
    except Exception as exc:  # kafka-python raises many kinds; the report says which
        report.kafka = f"{type(exc).__name__}: {exc}"
    cfg = settings.redis
    try:
        with redis_client(settings, timeout_s=3) as client:
            client.ping()
            report.view_prefix = redis_views.active_prefix(client, cfg.key_prefix)
            for beat in worker_heartbeats.read(client, cfg.key_prefix, now, settings.streams.app_id):
                report.workers.append({"worker": f"{beat.worker.host}/{beat.worker.pid}",
                                       "seen_s_ago": round((now - beat.seen_at).total_seconds(), 1),
                                       "events": beat.events, "partitions": beat.partitions})
            report.deadletters = {f"{_short(settings, t)} {r}": n
                                  for (t, r), n in deadletter_counts.counts(client, cfg.key_prefix).items()}
    except redis.RedisError as exc:
        report.redis = f"{type(exc).__name__}: {exc}"
    return report
