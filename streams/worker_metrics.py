"""What one worker process publishes for Prometheus (``streams.metrics_port``).

Process-local figures only: what this worker did. The pipeline's global state (funnel,
rewards, rejections, dead letters, consumer lag) is published by ``referrals exporter``
from Redis and Kafka, so it is right however many workers run. Labels are bounded: the
agent's name, never a customer id or a code.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Counter, Histogram

AGENTS = ("visitors", "customers", "referrers")

EVENTS = Counter("referral_worker_events", "Records an agent processed (inputs, including internal facts)",
                 ["agent"])
BATCHES = Counter("referral_worker_batches", "Batches an agent finished (outputs acknowledged, Redis written)",
                  ["agent"])
BATCH_SECONDS = Histogram(
    "referral_worker_batch_seconds", "Time from a batch taken to its outputs acknowledged (and counters written)",
    ["agent"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
DEADLETTERS = Counter("referral_worker_deadletters", "Records this worker sent to the dead-letter topic", ["agent"])
DROPPED = Counter("referral_worker_dropped", "Inputs an agent did not apply, by reason (beyond_dedup_horizon: "
                  "a share or click older than the referrer's dedup horizon; visitor_fact_cap: a click or signup "
                  "of a visitor that has as many as its record keeps; customer_fact_cap: a customer's signup, order or "
                  "refund beyond what their record keeps)", ["agent", "reason"])
RECORDS_LOADED = Counter("referral_worker_records_loaded", "Table records read back from local disk because they "
                         "were not among the records the table keeps as objects (streams.record_store; the settings "
                         "records_cached, customer_records_cached, visitor_records_cached): a rate near the events' "
                         "means the working set does not fit", ["table"])
SETTLED = Counter("referral_worker_referrals_settled", "Referrals decided for good, or at rest without rewards, that "
                  "this worker moved out of their referrer's record in memory to local disk, once acknowledged, or "
                  "when recovery found them so (streams.referrer_parts.settle)")
FRESHNESS = Histogram(
    "referral_event_freshness_seconds",
    "From an event's occurred_at to the live counters it changes being written to Redis",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
             21600, 86400, 604800))

for _agent in AGENTS:  # every series exists from the start, so rate() has a zero to begin with
    for _metric in (EVENTS, BATCHES, DEADLETTERS):
        _metric.labels(_agent)
    BATCH_SECONDS.labels(_agent)
GC_PAUSE_SECONDS = Histogram(
    "referral_worker_gc_pause_seconds",
    "The worker's garbage collections, by generation: how long each held the process (and its event loop)",
    ["generation"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


def watch_gc() -> None:
    """Time every garbage collection of this process into ``GC_PAUSE_SECONDS`` (once per process)."""
    if any(getattr(c, "__name__", "") == "_time_gc" for c in gc.callbacks):
        return
    by_generation = [GC_PAUSE_SECONDS.labels(str(g)) for g in range(3)]
    started = [0.0]

    def _time_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            by_generation[info["generation"]].observe(time.perf_counter() - started[0])

    gc.callbacks.append(_time_gc)
