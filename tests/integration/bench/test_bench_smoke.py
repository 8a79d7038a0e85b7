"""`make bench` in miniature: the whole suite once with a few thousand events, so it cannot rot.

A benchmark is not a test: nothing here asserts a speed. It asserts that every figure was
measured (present, finite, from a run that completed) and that the results were written.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

from bench.suite import SMOKE
from referrals.kafka_admin import topic_names
from referrals.settings import PROJECT_ROOT

SECTIONS = ("raw: Kafka ProducerPerformance", "raw: kafka-python producer", "raw: aiokafka producer",
            "raw: aiokafka consume", "raw: Faust agent", "raw: Redis HINCRBY", "pipeline throughput (1 worker)",
            "pipeline throughput / raw aiokafka consume", "pipeline inputs/s / raw Faust agent",
            "freshness at 200 events/s: p99",
            "freshness at 80 % of max: p99", "gateway single events at 200 req/s: p99",
            "gateway single events at saturation", "gateway batches of 100 at saturation",
            "gateway batches of 100 / raw aiokafka producer", "gateway: GET /healthz alone at saturation",
            "growth 300 customers: cost per event", "growth 600 customers: Redis per referrer",
            "growth 600 customers: Redis per referrer: referral lists",
            "growth: cost per event at 600 / at 300 customers",
            "history: referrer stage per event, last / first slice", "history: reference core",
            "history: largest changelog value written over 2,000 referrals",
            "influencer: last / first slice", "influencer: largest value the worker wrote over 2,000 referrals",
            "story: a page of 50 steps, 1,000 referrals: p99", "story: what the longest story holds in Redis",
            "raw: the same pages, sorted-set range and hash read only: p99",
            "statement: 20,000 reward changes to CSV", "statement: peak memory for 20,000 rows",
            "raw: Faust agent that only takes and decodes, with cython_optimizations",
            "variants: pipeline throughput, defaults", "variants: pipeline throughput, gc_freeze",
            "worker start with empty tables: seconds to Ready", "worker restart after 3,000 events, first",
            "worker restart after 3,000 events, second")


def test_the_benchmark_runs_end_to_end_and_writes_its_results(stack, settings, tmp_path):
    before = topic_names(settings)
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--smoke", "--out", str(tmp_path),
                           "--work-dir", str(tmp_path / "work")], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    [result] = tmp_path.glob("*-smoke.json")
    report = json.loads(result.read_text())
    assert report["mode"] == "smoke" and report["configuration"]["sizes"]["runs"] == SMOKE.runs
    assert {"cpu", "cores", "kafka_broker", "kafka_tools", "redis_server", "packages"} <= set(report["machine"])
    names = [f["name"] for f in report["figures"]]
    for section in SECTIONS:
        assert any(n.startswith(section) for n in names), f"{section!r} missing from {names}"
    for figure in report["figures"]:
        assert len(figure["runs"]) == SMOKE.runs and all(math.isfinite(v) and v >= 0 for v in figure["runs"]), figure
    assert result.with_suffix(".md").read_text().startswith("| figure |")
    assert "pipeline throughput (1 worker)" in done.stdout
    deadline = time.monotonic() + 30  # a deletion reaches the broker's metadata a moment after it is done
    while (left := sorted(t for t in topic_names(settings) - before if t.startswith("bench-"))) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"the benchmark left its topics on the broker: {left}"
