"""The pipeline's own figures: throughput over a preloaded backlog, and the same as state grows.

Throughput: one worker starts on a run's own, empty topics; the workload is then produced a tenth at a time,
each tenth once the worker has processed every input of the tenths before it (inbound events and the internal
facts they cause) and committed them. A tenth's clock runs from the start of its producing to the moment the
worker has processed and committed all of it; the throughput is the events over the tenths' time. The worker
commits a batch only after its counters are in Redis, so that moment is when every counter reflects every event.
Each tenth is a backlog of 100,000 events (at full size), taken through both stages of the worker, so the
first and the last tenth cost the same work unless the worker's state makes it cost more: the history figure.
(Until 2026-11-30 the whole workload was one backlog, and its tenths were those of the inputs processed: the
stage that reads the events drained its backlog first, so the last tenth held only the referrer stage's
inputs, the dearest, and its time per input grew with the mix, not with the state: a py-spy sample of the
worker near the end found its customer and visitor agents idle.) The worker's clock ticks as in production
(``streams.tick_interval_s``, 5 s): the workload's events go back 40 days, so the first ticks end the holds of
the older referrals and the worker settles them (``streams.referrer_parts``), which is what keeps its memory from
growing with them. (Before 2026-11-30 the throughput runs had the clock off; the growth runs still do, so that
their end is a fixed number of inputs.)

Restarts: once the throughput run's counters are checked, a worker is started again on what it left, twice
(``RESTART_READ_AHEAD``: the default read-ahead, then Faust's 1 MiB), each timed from its start to Faust's
"Ready" (its tables recovered from their changelogs), and the counters are checked again. The suite restarts
after its first throughput run only: at full size a restart takes minutes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.worker_runs import Footprint, GroupWatch, Worker, follow, redis_funnel_shares, redis_view_footprint
from bench.workload import BenchRun, Workload
from referrals.redis_client import redis_client
from referrals.settings import Settings, changed


class BenchFailed(RuntimeError):
    pass


@dataclass
class ThroughputResult:
    events: int
    inputs: int  # events and the internal facts they caused
    seconds: float
    ready_s: float
    rss_peak_bytes: int
    # the history through the worker: seconds per input over the first and the last tenth of the events (each
    # tenth's inputs: its events and the facts they caused), and the resident set when the first tenth was done
    # and at the end
    first_tenth_s: float = 0.0
    last_tenth_s: float = 0.0
    rss_first_tenth_bytes: int = 0
    rss_end_bytes: int = 0
    settled: int = 0  # referrals the worker settled out of its records' objects (their holds ended)
    tenths_us_per_input: tuple[float, ...] = ()  # every tenth's time per input, in order
    tenths_rss_mib: tuple[float, ...] = ()  # the worker's resident set after every tenth
    # a worker started again on the run's state once it is all processed, for each read-ahead in
    # ``RESTART_READ_AHEAD`` (in that order): (bytes read ahead per partition, seconds to Ready, RSS when Ready)
    restarts: tuple[tuple[int, float, int], ...] = ()

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


# The restarts after a throughput run: the worker's default read-ahead (``streams.fetch_bytes_per_partition``),
# then Faust's own (1 MiB). The first reads the changelogs from disk, the second may find them in the page cache;
# a third restart with the default again (2026-12-01, 1M events) took 357 s against the first's 359: the order
# did not matter, and each restart of that size costs six minutes, so there are two
RESTART_READ_AHEAD = (256 * 1024, 1024 * 1024)


def restarted(settings: Settings, read_ahead: int, log: Path, timeout_s: float = 900) -> tuple[int, float, int]:
    """A worker started on what the run left (its tables recover from their changelogs): (``read_ahead``, seconds
    from its start to Ready, its RSS then). Stopped before it returns."""
    worker = Worker(changed(settings, streams={"fetch_bytes_per_partition": read_ahead}), log)
    try:
        worker.start()
        ready_s = worker.wait_ready(timeout_s)
        return read_ahead, ready_s, worker.rss_bytes()
    finally:
        worker.stop()


def throughput(base: Settings, workload: Workload, *, metrics_port: int, label: str, work_dir: Path,
               profile: Path | None = None, timeout_s: float = 3600, restart: bool = True) -> ThroughputResult:
    """``restart``: then start a worker again on the run's state for each of ``RESTART_READ_AHEAD`` (how long its
    tables take to recover); the counters are checked before and after."""
    run = BenchRun.new(base, label, metrics_port=metrics_port)  # the clock as in production
    run.prepare(workload)
    worker = Worker(run.settings, work_dir / f"worker-{run.run_id}.log")
    watch = GroupWatch(run.settings)
    try:
        worker.start(profile=profile)
        ready_s = worker.wait_ready()
        records = workload.records
        inputs, tenths, rss = 0, [], []
        for i in range(10):
            part = records[i * len(records) // 10:(i + 1) * len(records) // 10]
            produced_from = time.monotonic()
            run.produce(part)  # the worker takes the tenth as it arrives
            progress, total = follow(worker, watch, timeout_s=timeout_s, at_least=inputs + len(part))
            tenths.append((total - inputs, progress.reached(total) - progress.started(inputs, produced_from)))
            inputs = total
            rss.append(worker.rss_bytes())
        seconds = sum(t for _, t in tenths)
        per_input = tuple(t / n for n, t in tenths)
        rss_peak, settled = worker.rss_peak_bytes(), worker.settled()
        worker.stop()
        check_counters(run, workload)
        restarts = tuple(restarted(run.settings, read_ahead, work_dir / f"worker-{run.run_id}-restart-{i}.log")
                         for i, read_ahead in enumerate(RESTART_READ_AHEAD if restart else ()))
        if restarts:
            check_counters(run, workload)  # a recovered worker changes no counter
    finally:
        worker.stop()
        watch.close()
        cleanup(run)  # a failed run leaves no keys either: a million customers' worth slows every later SCAN
    return ThroughputResult(workload.events, inputs, seconds, ready_s, rss_peak, per_input[0], per_input[-1], rss[0],
                            rss[-1], settled, tuple(1e6 * t for t in per_input), tuple(r / 2**20 for r in rss),
                            restarts)


def check_counters(run: BenchRun, workload: Workload) -> None:
    """After a run: its counters must reflect its events (the funnel's shares)."""
    shares = redis_funnel_shares(run.settings)
    if shares != workload.shares:
        raise BenchFailed(f"the counters do not reflect the events: shares {dict(shares)} != {dict(workload.shares)}")


def cleanup(run: BenchRun) -> None:
    """The run's Redis keys go (its topics at the end of the suite, ``Suite.run``)."""
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
