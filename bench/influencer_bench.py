"""One influencer through the real worker (#17): a referrer gains ``referrals`` referrals, each a share, a
signup with their code and a qualifying 49.90 EUR order, spread over the months before now (75 a day: under
the velocity limit), sent slice by slice (1,000 referrals each) to a running worker.

Per slice: the time from its first record sent until the worker has processed every input (its
events and the internal facts they cause; ``worker_runs.follow``, to the 50 ms sample). The first
and the last slice are compared: the worker's cost per referral must not grow with the
referrer's history. At the end: the largest value the worker wrote on any topic it writes (its
tables' changelogs, its own topics, attributions, rewards, dead letters) against the 100 KB
bound and Kafka's message limit, and the worker's peak RSS. Ticks are off: the clock's work is the same
per referral and would blur the slices' ends.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.worker_runs import GroupWatch, Worker, follow
from bench.workload import BenchRun
from referrals.code_registry import CodeRegistry
from referrals.settings import Settings
from schemas.topics import ATTRIBUTIONS, DEADLETTER, INTERNAL, REWARDS
from streams.topology import changelog_topics

SLICE = 1_000
REFERRER = "influencer"


def influencer_events(code: str, referrals: int, now: datetime, referrer: str = REFERRER) -> list[dict]:
    """A share, a signup with the code and a qualifying order per referral, evenly over the referrals' span
    (75 a day: fewer than the velocity limit of 5 an hour), ending a few minutes before ``now``."""
    span = timedelta(days=referrals / 75)
    start = now - timedelta(minutes=10) - span
    events: list[dict] = []
    for i in range(referrals):
        at = start + span * i / referrals
        friend = f"friend-{i}"
        events += [
            {"type": "share", "event_id": f"share-{i}", "occurred_at": at.isoformat(), "referrer_id": referrer,
             "channel": "whatsapp"},
            {"type": "signup", "event_id": f"signup-{i}", "occurred_at": (at + timedelta(seconds=30)).isoformat(),
             "customer_id": friend, "referral_code": code},
            {"type": "order", "event_id": f"order-{i}", "occurred_at": (at + timedelta(minutes=3)).isoformat(),
             "customer_id": friend, "order_id": f"o-{i}", "amount": "49.90", "currency": "EUR"},
        ]
    return events


TOPIC_OF = {"share": ("referrals.shares", "referrer_id"), "signup": ("customers.signups", "customer_id"),
            "order": ("shop.orders", "customer_id")}


@dataclass
class InfluencerResult:
    referrals: int
    slice_s: list[float] = field(default_factory=list)  # per slice of ``SLICE`` referrals
    largest_value: int = 0  # bytes: the largest value the worker wrote on any topic
    largest_topic: str = ""
    values_read: int = 0
    rss_peak_bytes: int = 0

    @property
    def growth(self) -> float:
        """The last slice's time over the first's."""
        return self.slice_s[-1] / self.slice_s[0]


def run(base: Settings, referrals: int, *, metrics_port: int, work_dir: Path, timeout_s: float = 3600
        ) -> InfluencerResult:
    bench = BenchRun.new(base, "influencer", tick_interval_s=0.0, metrics_port=metrics_port)
    settings = bench.settings
    from streams.topology import prepare_topics

    prepare_topics(settings)
    code = CodeRegistry.from_settings(settings).issue(REFERRER).code
    events = influencer_events(code, referrals, datetime.now(UTC))
    prefix = settings.kafka.topic_prefix
    result = InfluencerResult(referrals)
    worker = Worker(settings, work_dir / f"worker-{bench.run_id}.log")
    watch = GroupWatch(settings)
    producer = KafkaProducer(**settings.kafka.client_options(), acks="all", linger_ms=5)
    try:
        worker.start()
        worker.wait_ready()
        done = 0
        for i in range(0, len(events), 3 * SLICE):
            began = time.monotonic()
            for event in events[i:i + 3 * SLICE]:
                topic, key = TOPIC_OF[event["type"]]
                producer.send(prefix + topic, key=event[key].encode(), value=json.dumps(event).encode())
            producer.flush()
            progress, done = follow(worker, watch, timeout_s=timeout_s, interval_s=0.05, at_least=done + 1)
            result.slice_s.append(progress.reached(done) - began)
        result.rss_peak_bytes = worker.rss_peak_bytes()
        worker.alive()  # it never stopped
    finally:
        producer.close()
        worker.stop()
        watch.close()
    written = [*changelog_topics(settings),
               *(prefix + spec.name for spec in (*INTERNAL, ATTRIBUTIONS, REWARDS, DEADLETTER))]
    result.largest_value, result.largest_topic, result.values_read = largest_value(settings, written)
    return result


def largest_value(settings: Settings, topics: list[str]) -> tuple[int, str, int]:
    """The largest value on ``topics`` (bytes), the topic it is on, and how many values were read."""
    consumer = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False,
                             fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024)
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        largest, where, n = 0, "", 0
        remaining = {tp for tp, end in ends.items() if end > 0}
        deadline = time.monotonic() + 300
        while remaining:
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not read {len(remaining)} partitions to their end")
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for r in records:
                    n += 1
                    size = len(r.value or b"")
                    if size > largest:
                        largest, where = size, tp.topic
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return largest, where, n
    finally:
        consumer.close()
