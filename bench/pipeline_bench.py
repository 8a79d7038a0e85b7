"""The pipeline's own figures: throughput over a preloaded backlog, and the same as state grows.

Throughput: a workload is produced to a run's own topics first; then one worker starts and
the clock runs from the first input it processed to the moment it has processed every input
(inbound events and the internal facts they cause) and committed them. The worker commits a
batch only after its counters are in Redis, so that moment is when every counter reflects
every event. The worker's clock ticks as in production (``streams.tick_interval_s``, 5 s): the workload's
events go back 40 days, so the first ticks end the holds of the older referrals and the worker settles them
(``streams.referrer_parts``), which is what keeps its memory from growing with them. (Before 2026-11-30 the
throughput runs had the clock off; the growth runs still do, so that their end is a fixed number of inputs.)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.workload import BenchRun, Workload
from bench.worker_runs import Footprint, GroupWatch, Worker, follow, redis_funnel_shares, redis_view_footprint
from referrals.redis_client import redis_client
from referrals.settings import Settings


class BenchFailed(RuntimeError):
    pass


@dataclass
class ThroughputResult:
    events: int
    inputs: int  # events and the internal facts they caused
    seconds: float
    ready_s: float
    rss_peak_bytes: int
    # the history through the worker: seconds per input over the first and the last tenth of the inputs, and the
    # resident set when the first tenth was done and at the end
    first_tenth_s: float = 0.0
    last_tenth_s: float = 0.0
    rss_first_tenth_bytes: int = 0
    rss_end_bytes: int = 0
    settled: int = 0  # referrals the worker settled out of its records' objects (their holds ended)

    @property
    def last_over_first(self) -> float:
        return self.last_tenth_s / self.first_tenth_s

    @property
    def rss_end_over_first(self) -> float:
        return self.rss_end_bytes / self.rss_first_tenth_bytes

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def us_per_event(self) -> float:
        return 1e6 * self.seconds / self.events


def throughput(base: Settings, workload: Workload, *, metrics_port: int, label: str, work_dir: Path,
               profile: Path | None = None, timeout_s: float = 3600) -> ThroughputResult:
    run = BenchRun.new(base, label, metrics_port=metrics_port)  # the clock as in production
    run.prepare(workload)
    run.produce(workload.records)
    worker = Worker(run.settings, work_dir / f"worker-{run.run_id}.log")
    watch = GroupWatch(run.settings)
    try:
        worker.start(profile=profile)
        ready_s = worker.wait_ready()
        ready_at = time.monotonic()
        progress, inputs = follow(worker, watch, timeout_s=timeout_s)
        started = progress.started(0, ready_at)
        seconds = progress.reached(inputs) - started
        tenth = inputs // 10
        first_tenth = (progress.reached(tenth) - started) / tenth
        last_tenth = (progress.reached(inputs) - progress.reached(inputs - tenth)) / tenth
        rss_tenth, rss_end = progress.rss_at(tenth), worker.rss_bytes()
        rss, settled = worker.rss_peak_bytes(), worker.settled()
        worker.stop()
        check_counters(run, workload)
    finally:
        worker.stop()
        watch.close()
        cleanup(run)  # a failed run leaves no keys either: a million customers' worth slows every later SCAN
    return ThroughputResult(workload.events, inputs, seconds, ready_s, rss, first_tenth, last_tenth, rss_tenth,
                            rss_end, settled)


def check_counters(run: BenchRun, workload: Workload) -> None:
    """After a run: its counters must reflect its events (the funnel's shares)."""
    shares = redis_funnel_shares(run.settings)
    if shares != workload.shares:
        raise BenchFailed(f"the counters do not reflect the events: shares {dict(shares)} != {dict(workload.shares)}")


def cleanup(run: BenchRun) -> None:
    """The run's Redis keys go (its topics stay until the stack is reset: deleting them costs more time
    than it saves)."""
    with redis_client(run.settings) as client:
        batch = []
        for key in client.scan_iter(match=f"{run.settings.redis.key_prefix}*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)


@dataclass
class GrowthResult:
    customers: int
    base_events_per_s: float  # the base's signups, while the state grows from nothing to ``customers``
    tail_events: int
    tail_events_per_s: float  # simulated traffic on top of that state
    rss_peak_bytes: int
    footprint: Footprint

    @property
    def tail_us_per_event(self) -> float:
        return 1e6 / self.tail_events_per_s


def growth(base: Settings, workload: Workload, *, metrics_port: int, label: str, work_dir: Path,
           timeout_s: float = 7200) -> GrowthResult:
    """The base's signups first (the state), then the rest of the workload on top of it, timed apart."""
    run = BenchRun.new(base, label, tick_interval_s=0.0, metrics_port=metrics_port)
    run.prepare(workload)
    base_signups, tail = workload.records[:workload.customers], workload.records[workload.customers:]
    run.produce(base_signups)
    worker = Worker(run.settings, work_dir / f"worker-{run.run_id}.log")
    watch = GroupWatch(run.settings)
    try:
        worker.start()
        worker.wait_ready()
        ready_at = time.monotonic()
        first, inputs = follow(worker, watch, timeout_s=timeout_s)
        base_rate = len(base_signups) / (first.reached(inputs) - first.started(0, ready_at))
        producing = threading.Thread(target=run.produce, args=(tail,))
        produced_from = time.monotonic()
        producing.start()  # sampled from the first record on: the worker takes the tail as it arrives
        second, total = follow(worker, watch, timeout_s=timeout_s, at_least=inputs + len(tail))
        producing.join()
        tail_rate = len(tail) / (second.reached(total) - second.started(inputs, produced_from))
        rss = worker.rss_peak_bytes()
        worker.stop()
        check_counters(run, workload)
        footprint = redis_view_footprint(run.settings)
    finally:
        worker.stop()
        watch.close()
        cleanup(run)
    return GrowthResult(workload.customers, base_rate, len(tail), tail_rate, rss, footprint)
