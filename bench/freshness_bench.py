"""Freshness: from an event produced to the live counter it changes written in Redis, at a fixed rate.

Simulated live traffic (referrers from a base whose signups are loaded first) is produced at a
fixed offered rate; each event's ``occurred_at`` is stamped the moment before it is handed to
the producer, so the worker's own histogram ``referral_event_freshness_seconds`` (event time to
counters written, ``streams.worker_metrics``) measures produce-to-Redis. The histogram is read
before and after the window; the quantiles are interpolated inside its buckets, as Prometheus'
``histogram_quantile`` does, and the maximum is the upper bound of the highest bucket reached.
Ticks run at their default interval, as in production.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaProducer

from bench.pipeline_bench import cleanup
from bench.worker_runs import GroupWatch, Worker, follow
from bench.workload import BenchRun
from producers.simulate import new_simulation, register_codes
from producers.simulator import SimulationConfig
from referrals.settings import Settings
from schemas.parsing import parse_event
from schemas.records import inbound_record
from streams.topology import prepare_topics


@dataclass
class FreshnessResult:
    offered_per_s: float
    achieved_per_s: float
    events: int
    observed: int  # events whose counters the histogram saw written
    p50_s: float
    p99_s: float
    max_le_s: float
    gc_full: int = 0  # the worker's full (generation 2) garbage collections within the window
    gc_full_s: float = 0.0  # their time in all

    @property
    def gc_full_mean_s(self) -> float:
        return self.gc_full_s / self.gc_full if self.gc_full else 0.0


def quantile(q: float, buckets: list[tuple[float, int]]) -> float:
    """``histogram_quantile``: linear inside the bucket that holds the q-th observation."""
    total = buckets[-1][1]
    if total == 0:
        return float("nan")
    rank = q * total
    lower_bound, lower_count = 0.0, 0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(count - lower_count, 1)
        lower_bound, lower_count = bound, count
    return buckets[-1][0]


def highest_bucket(buckets: list[tuple[float, int]]) -> float:
    """The upper bound of the highest bucket with an observation (the maximum is at most that)."""
    previous = 0
    highest = 0.0
    for bound, count in buckets:
        if count > previous:
            highest = bound
        previous = count
    return highest


def window(before: list[tuple[float, int]], after: list[tuple[float, int]]) -> list[tuple[float, int]]:
    old = dict(before)
    return [(bound, count - old.get(bound, 0)) for bound, count in after]


def freshness(base: Settings, *, rate: float, seconds: float, customers: int, metrics_port: int, label: str,
              work_dir: Path) -> FreshnessResult:
    run = BenchRun.new(base, label, metrics_port=metrics_port)
    count = int(rate * seconds)
    simulation = new_simulation(SimulationConfig(customers=customers), seed=7, rate=rate, count=count,
                                duration_s=None, now=datetime.now(UTC))
    prepare_topics(run.settings)
    register_codes(run.settings, simulation)
    stream = simulation.events()
    base_signups = [next(stream)[1] for _ in range(customers)]
    live = [next(stream)[1] for _ in range(count)]
    prefix = run.settings.kafka.topic_prefix
    producer = KafkaProducer(**run.settings.kafka.client_options(), acks="all", linger_ms=1)
    worker = Worker(run.settings, work_dir / f"worker-{run.run_id}.log")
    watch = GroupWatch(run.settings)
    try:
        for raw in base_signups:  # the state the live traffic meets: the base's signups, before the window
            r = inbound_record(parse_event(raw), "bench", prefix)
            producer.send(r.topic, key=r.key, value=r.value, headers=r.headers)
        producer.flush()
        worker.start()
        worker.wait_ready()
        follow(worker, watch, timeout_s=600)
        before = worker.freshness_buckets()
        gc_before = worker.gc_pauses()
        started = time.perf_counter()
        for i, raw in enumerate(live):
            due = started + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            raw["occurred_at"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            r = inbound_record(parse_event(raw), "bench", prefix)
            producer.send(r.topic, key=r.key, value=r.value, headers=r.headers)
        producer.flush()
        achieved = count / (time.perf_counter() - started)
        follow(worker, watch, timeout_s=600)
        buckets = window(before, worker.freshness_buckets())
        gc_after = worker.gc_pauses()
    finally:
        producer.close()
        worker.stop()
        watch.close()
        cleanup(run)  # a failed run leaves no keys either: a million customers' worth slows every later SCAN
    return FreshnessResult(rate, achieved, count, buckets[-1][1] if buckets else 0, quantile(0.5, buckets),
                           quantile(0.99, buckets), highest_bucket(buckets), gc_after[0] - gc_before[0],
                           gc_after[1] - gc_before[1])
