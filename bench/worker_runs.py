"""One stream worker (`referrals worker`) as a child process, watched from outside the way ops would.

Progress comes from the worker's own metrics endpoint (``referral_worker_events_total``, read every
250 ms), "done" from Kafka (the group's committed offsets at the end of every input topic), what
it wrote from Redis. Nothing here reaches into the worker.
"""

from __future__ import annotations

import re
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from deploy.local.worker_process import WorkerFailed, WorkerProcess, never
from referrals.redis_client import redis_client
from referrals.settings import Settings
from streams.redis_layout import RedisLayout
from streams.redis_views import active_prefix
from streams.topology import input_topics

_EVENTS = re.compile(r'^referral_worker_events_total\{agent="(\w+)"\} ([0-9.e+]+)$', re.M)
_FRESHNESS_BUCKET = re.compile(r'^referral_event_freshness_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', re.M)


class Worker(WorkerProcess):
    """A worker the bench measures: never restarted (a run whose worker stopped is a failed run)."""

    def __init__(self, settings: Settings, log: Path) -> None:
        super().__init__(settings, log, restart_when=never)

    def start(self, *, profile: Path | None = None) -> None:  # type: ignore[override]
        self.launcher = () if profile is None else (  # py-spy records the worker from its first instruction
            str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw", "-o", str(profile),
            "--rate", "50", "--")
        super().start()

    def alive(self) -> None:
        self.assert_alive()

    def wait_ready(self, timeout_s: float = 300) -> float:  # type: ignore[override]
        return super().wait_ready(timeout_s, restart=False)

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.settings.streams.metrics_port}/metrics", timeout=5).text

    def processed(self) -> int:
        """Inputs processed (inbound events and internal facts), as the worker publishes it."""
        return int(sum(float(n) for _agent, n in _EVENTS.findall(self.metrics())))

    def settled(self) -> int:
        """Referrals decided for good the worker settled out of its records' objects so far (``referrer_parts``)."""
        found = re.search(r"^referral_worker_referrals_settled_total ([0-9.e+-]+)$", self.metrics(), re.M)
        return int(float(found.group(1))) if found else 0

    def gc_pauses(self, generation: int = 2) -> tuple[int, float]:
        """The worker's garbage collections of ``generation`` so far: how many, and their time in all (s)."""
        text = self.metrics()
        found = {kind: float(m.group(1)) for kind in ("count", "sum")
                 if (m := re.search(rf'^referral_worker_gc_pause_seconds_{kind}\{{generation="{generation}"\}} '
                                    r"([0-9.e+-]+)$", text, re.M))}
        return int(found.get("count", 0)), found.get("sum", 0.0)

    def freshness_buckets(self) -> list[tuple[float, int]]:
        """The worker's freshness histogram: (upper bound, cumulative count)."""
        return [(float(le), int(float(n))) for le, n in _FRESHNESS_BUCKET.findall(self.metrics())]

    def rss_bytes(self) -> int:
        """The process's resident set now."""
        return psutil.Process(self.pid).memory_info().rss

    def rss_peak_bytes(self) -> int:
        """The process's peak resident set (VmHWM): the most memory it held at any point."""
        pid = self.pid
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return psutil.Process(pid).memory_info().rss

    def stop(self) -> None:  # type: ignore[override]
        super().stop(signal.SIGINT if self.launcher else signal.SIGTERM)  # py-spy writes its profile on SIGINT


class GroupWatch:
    """The worker's consumer group against the end of its input topics, with clients kept open."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topics = input_topics(settings)
        self.admin = KafkaAdminClient(**settings.kafka.client_options(), client_id="bench-watch")
        self.consumer = KafkaConsumer(**settings.kafka.client_options(), client_id="bench-watch")
        self.partitions = [TopicPartition(t, p) for t in self.topics
                           for p in sorted(self.consumer.partitions_for_topic(t) or ())]

    def ends(self) -> dict[TopicPartition, int]:
        return self.consumer.end_offsets(self.partitions)

    def caught_up(self) -> tuple[bool, int]:
        """(every input partition committed to its end, the sum of the end offsets)."""
        group = self.settings.streams.app_id
        committed = self.admin.list_group_offsets(group).get(group, {})
        ends = self.ends()
        done = all(tp in committed and committed[tp].offset >= end for tp, end in ends.items() if end > 0)
        return done, sum(ends.values())

    def close(self) -> None:
        self.admin.close()
        self.consumer.close()


@dataclass
class Progress:
    """(monotonic time, inputs processed) as the worker published them."""

    samples: list[tuple[float, int]] = field(default_factory=list)
    rss: list[tuple[int, int]] = field(default_factory=list)  # (inputs processed, resident bytes), once a second

    def started(self, baseline: int, fallback: float) -> float:
        """When processing beyond ``baseline`` began, at the latest: the last sample still at it, or ``fallback``
        (when it was already past it at the first sample: a small phase can end between two samples)."""
        before = [t for t, n in self.samples if n <= baseline]
        return before[-1] if before else fallback

    def reached(self, total: int) -> float:
        return next(t for t, n in self.samples if n >= total)

    def rss_at(self, inputs: int) -> int:
        """The worker's resident set at the first sample with ``inputs`` processed."""
        return next(rss for n, rss in self.rss if n >= inputs)


def follow(worker: Worker, watch: GroupWatch, *, timeout_s: float, interval_s: float = 0.25,
           at_least: int = 0) -> tuple[Progress, int]:
    """Sample the worker's progress until its group has committed every input record (at least
    ``at_least``) and it has processed as many as there are; returns the samples and that number."""
    progress = Progress()
    deadline = time.monotonic() + timeout_s
    last_check = 0.0
    while True:
        worker.alive()
        now = time.monotonic()
        try:
            progress.samples.append((now, worker.processed()))
        except httpx.HTTPError:  # a worker busy for seconds (a large state's GC) answers late: no sample then
            if now > deadline:
                raise WorkerFailed(f"its metrics did not answer within {timeout_s:.0f} s") from None
            time.sleep(interval_s)
            continue
        if now - last_check >= 1.0:
            last_check = now
            progress.rss.append((progress.samples[-1][1], worker.rss_bytes()))
            done, total = watch.caught_up()
            if done and total >= at_least and progress.samples[-1][1] >= total:
                return progress, total
        if now > deadline:
            raise WorkerFailed(f"not caught up within {timeout_s:.0f} s (processed {progress.samples[-1][1]})")
        time.sleep(interval_s)


def redis_funnel_shares(settings: Settings, campaign: str = "default") -> Counter:
    with redis_client(settings) as client:
        layout = RedisLayout(active_prefix(client, settings.redis.key_prefix), settings.kafka.partitions)
        total: Counter = Counter()
        for key in layout.all_funnels(campaign):
            for f, v in client.hgetall(key).items():
                name = f.decode() if isinstance(f, bytes) else f
                if name.startswith("share:"):
                    total[name] += int(v)
    return +total


@dataclass(frozen=True)
class Footprint:
    """The live view's Redis memory: MEMORY USAGE of every key, summed by kind (``streams.redis_layout``:
    referrer, referrals, welcome, funnel, ledger, leaderboard, campaigns)."""

    referrers: int  # referrer hashes: the customers with counters
    by_kind: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    def per_referrer(self, *kinds: str) -> float:
        return sum(self.by_kind.get(k, 0) for k in kinds or self.by_kind) / max(self.referrers, 1)


def redis_view_footprint(settings: Settings) -> Footprint:
    with redis_client(settings) as client:
        prefix = active_prefix(client, settings.redis.key_prefix)
        by_kind: Counter = Counter()
        keys: list[str] = []

        def measure() -> None:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.memory_usage(key, samples=0)
            for key, n in zip(keys, pipe.execute(), strict=True):
                by_kind[key.split("}:", 1)[1].split(":", 1)[0]] += n or 0
            keys.clear()

        for key in client.scan_iter(match=f"{prefix}{{ref:*", count=5000):
            keys.append(key.decode() if isinstance(key, bytes) else key)
            if len(keys) >= 5000:
                measure()
        measure()
        referrers = 0
        for _ in client.scan_iter(match=f"{prefix}{{ref:*}}:referrer:*", count=5000):
            referrers += 1
    return Footprint(referrers, dict(by_kind))
