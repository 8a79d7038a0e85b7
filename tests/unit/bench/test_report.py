"""The benchmark's pure parts: figures, targets, the table, py-spy's stacks summed."""

from __future__ import annotations

import math

from bench.freshness_bench import highest_bucket, quantile, window
from bench.profile_summary import summarise
from bench.report import SECTIONS, Figure, Report, markdown, write
from bench.worker_runs import Footprint


def test_a_figure_is_the_median_of_its_runs_and_meets_its_target_or_not():
    assert Figure("x", "events/s", [3.0, 1.0, 2.0], target=">= 2").met() is True
    assert Figure("x", "ms", [120.0, 80.0, 130.0], target="<= 100").met() is False
    assert Figure("x", "ms", [1.0]).met() is None
    report = Report("2026-11-23T05:00:00+00:00", "quick", {})
    report.add(Figure("pipeline", "events/s", [1000.0, 1500.0, 1200.0], target=">= 20000"))
    table = markdown(report)
    assert "| pipeline | 1,200 | 1,000 .. 1,500 | events/s | >= 20000 | NO |" in table


def test_a_partial_run_is_written_beside_the_whole_one_not_over_it(tmp_path):
    def written(mode, sections):
        return write(Report("2026-11-23T05:00:00+00:00", mode, {"sections": list(sections)}), tmp_path).name

    assert written("full", SECTIONS) == "2026-11-23.json"
    assert written("quick", reversed(SECTIONS)) == "2026-11-23-quick.json"
    assert written("full", ["growth"]) == "2026-11-23-growth.json"
    assert written("quick", ["raw", "pipeline"]) == "2026-11-23-quick-raw-pipeline.json"


def test_quantiles_are_interpolated_inside_the_histogram_buckets_like_prometheus():
    before = [(0.01, 0), (0.05, 0), (0.1, 0), (float("inf"), 0)]
    after = [(0.01, 10), (0.05, 60), (0.1, 100), (float("inf"), 100)]
    buckets = window(before, after)
    assert math.isclose(quantile(0.5, buckets), 0.01 + 0.04 * (50 - 10) / 50)
    assert math.isclose(quantile(0.99, buckets), 0.05 + 0.05 * (99 - 60) / 40)
    assert highest_bucket(buckets) == 0.1
    assert math.isnan(quantile(0.5, window(after, after)))


def test_only_the_main_threads_stacks_are_summed_by_package():
    lines = ["_run_module_as_main (<frozen runpy>:198);run (faust/worker.py:10);send (aiokafka/producer.py:5) 3",
             "_run_module_as_main (<frozen runpy>:198);step (streams/stages.py:1) 1",
             "Thread._bootstrap (threading.py:1002);wait (threading.py:320) 50"]
    profile = summarise(lines)
    assert profile.samples == 4
    assert profile.by_package == {"aiokafka": 3, "streams": 1}
    assert profile.inclusive["run (worker.py)"] == 3


def test_worker_processes_py_spy_followed_are_summed_together():
    supervisor = 'process 10:"python -m referrals.cli api";'
    worker = supervisor + 'process {}:"python -c from multiprocessing.spawn import spawn_main; spawn_main(fd=7)";'
    lines = [worker.format(11) + "<module> (<string>:1);post_events (producers/gateway/app.py:9) 5",
             worker.format(12) + "<module> (<string>:1);serve (uvicorn/server.py:3) 2",
             worker.format(12) + "Thread._bootstrap (threading.py:1002);wait (threading.py:320) 50",
             supervisor + "_run_module_as_main (<frozen runpy>:198);wait (threading.py:320) 1"]
    profile = summarise(lines)
    assert profile.by_package == {"producers": 5, "uvicorn": 2, "threading": 1}


def test_a_phase_that_ended_between_two_samples_is_timed_from_the_fallback_not_zero():
    from bench.worker_runs import Progress

    moving = Progress([(1.0, 0), (1.25, 0), (1.5, 40), (1.75, 100)])
    assert moving.started(0, fallback=0.5) == 1.25 and moving.reached(100) == 1.75
    done_already = Progress([(2.0, 300)])
    assert done_already.started(0, fallback=1.9) == 1.9  # not 2.0: no zero-length phase


def test_the_redis_footprint_is_divided_among_referrers_in_all_or_by_kind():
    footprint = Footprint(4, {"referrer": 800, "referrals": 400, "funnel": 40})
    assert footprint.total == 1240
    assert footprint.per_referrer() == 310
    assert footprint.per_referrer("referrer") == 200
    assert footprint.per_referrer("funnel", "ledger") == 10
    assert Footprint(0, {}).per_referrer() == 0
