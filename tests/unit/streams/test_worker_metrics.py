"""The worker's own metrics that need no worker: its garbage collections, timed."""

from __future__ import annotations

import gc

from prometheus_client import REGISTRY

from streams import worker_metrics


def full_collections() -> tuple[float, float]:
    labels = {"generation": "2"}
    return (REGISTRY.get_sample_value("referral_worker_gc_pause_seconds_count", labels) or 0.0,
            REGISTRY.get_sample_value("referral_worker_gc_pause_seconds_sum", labels) or 0.0)


def test_every_full_garbage_collection_is_timed_once_however_often_the_watch_is_started():
    worker_metrics.watch_gc()
    worker_metrics.watch_gc()
    count, total = full_collections()
    gc.collect(2)
    gc.collect(2)
    after_count, after_total = full_collections()
    assert after_count == count + 2 and after_total > total
