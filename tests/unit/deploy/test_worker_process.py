"""Worker supervision (start, ready, restart on the crash exit code, stop) with real child processes: a
stand-in runs as the worker's launcher and plays a plan, one step per start, instead of starting Faust."""

from __future__ import annotations

import sys

import pytest

from deploy.local.worker_process import READY, WorkerFailed, WorkerProcess, never
from referrals.settings import Settings
from streams.exit_codes import CRASH_EXIT_CODE

STAND_IN = f"""
import os, pathlib, sys, time
starts = pathlib.Path(os.environ["STAND_IN_STARTS"])
n = int(starts.read_text()) if starts.exists() else 0
starts.write_text(str(n + 1))
plan = os.environ["STAND_IN_PLAN"].split(",")
step = plan[min(n, len(plan) - 1)]
print(f"start {{n}}: {{step}}", flush=True)
if step == "guard":
    print("offset gap on t[0]: records skipped", flush=True)
    sys.exit({CRASH_EXIT_CODE})
if step == "crash":
    sys.exit({CRASH_EXIT_CODE})
if step == "fail":
    sys.exit(1)
if step == "ready":
    print("[{{}}] [INFO] {READY}".format(os.getpid()), flush=True)
time.sleep(60)
"""


@pytest.fixture
def supervised(tmp_path, monkeypatch):
    made: list[WorkerProcess] = []

    def make(plan: str, **kwargs) -> WorkerProcess:
        monkeypatch.setenv("STAND_IN_STARTS", str(tmp_path / f"starts-{len(made)}"))
        monkeypatch.setenv("STAND_IN_PLAN", plan)
        worker = WorkerProcess(Settings(state_dir=tmp_path), tmp_path / f"worker-{len(made)}.log",
                               launcher=(sys.executable, "-c", STAND_IN), **kwargs)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()


def test_ready_once_the_current_process_says_so_and_restarted_after_it_stopped_itself(supervised):
    worker = supervised("guard,guard,ready")
    worker.start()
    assert worker.wait_ready(30) >= 0
    assert worker.restarts == 2 and len(worker.procs) == 3
    assert worker.current.poll() is None and [p.poll() for p in worker.procs[:2]] == [CRASH_EXIT_CODE] * 2


def test_a_ready_line_of_an_earlier_process_does_not_count(supervised):
    worker = supervised("ready,silent")
    worker.start()
    worker.wait_ready(30)
    worker.stop()
    worker.start()  # the log holds the first one's line; this one never says it is ready
    with pytest.raises(WorkerFailed, match="not ready within 1 s"):
        worker.wait_ready(1)


def test_restarts_stop_at_the_limit_and_the_failure_shows_the_log(supervised):
    worker = supervised("crash", max_restarts=2)
    worker.start()
    with pytest.raises(WorkerFailed, match=f"exited with {CRASH_EXIT_CODE}:\n(.|\n)*start 2: crash\n$"):
        worker.wait_ready(30)
    assert worker.restarts == 2


def test_a_crash_the_policy_refuses_and_any_other_exit_fail_at_once(supervised):
    refused = supervised("crash,ready", restart_when=lambda log_tail: "offset gap on" in log_tail)
    refused.start()
    with pytest.raises(WorkerFailed, match=f"exited with {CRASH_EXIT_CODE}"):
        refused.wait_ready(30)
    failed = supervised("fail,ready")
    failed.start()
    with pytest.raises(WorkerFailed, match="exited with 1"):
        failed.wait_ready(30)
    assert refused.restarts == failed.restarts == 0


def test_without_restarts_the_wait_fails_on_the_first_stop(supervised):
    worker = supervised("guard,ready", restart_when=never)
    worker.start()
    with pytest.raises(WorkerFailed, match=f"exited with {CRASH_EXIT_CODE}"):
        worker.wait_ready(30, restart=False)


def test_stop_ends_every_process_it_started(supervised):
    worker = supervised("ready")
    worker.start()
    worker.wait_ready(30)
    worker.start()
    worker.stop()
    assert all(p.poll() is not None for p in worker.procs)
