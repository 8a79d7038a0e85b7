"""The local stack knows its own processes by their pid files, also when the system clock is stepped."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from deploy.local.processes import OwnedProcess, boot_ticks, read_pidfile, running, spawn, stop


@pytest.fixture
def sleeper(tmp_path):
    pidfile = tmp_path / "sleeper.pid"
    proc = spawn([sys.executable, "-c", "import time; time.sleep(60)"], pidfile=pidfile, output=tmp_path / "out",
                 cwd=tmp_path)
    yield pidfile
    stop(pidfile, timeout_s=5)  # ours: stopped; not ours (the test changed the file): left alone, so killed here
    proc.kill()
    proc.wait(timeout=5)


def test_a_process_started_by_the_stack_is_its_own_after_the_clock_moved(sleeper):
    data = json.loads(sleeper.read_text())
    assert data["ticks"] == boot_ticks(data["pid"])
    # the wall clock stepped by 19 s since the start (seen here): the start time psutil reports moves with it
    data["started"] -= 19
    sleeper.write_text(json.dumps(data))
    assert running(sleeper) is not None


def test_another_process_under_the_same_pid_is_not(sleeper):
    data = json.loads(sleeper.read_text())
    data["ticks"] -= 1  # started at another moment: the pid was reused
    sleeper.write_text(json.dumps(data))
    assert running(sleeper) is None


def test_a_pid_file_written_before_keeps_the_wall_clock_check(sleeper):
    data = json.loads(sleeper.read_text())
    old = {"pid": data["pid"], "started": data["started"], "argv": data["argv"]}
    sleeper.write_text(json.dumps(old))
    assert read_pidfile(sleeper) == OwnedProcess(data["pid"], data["started"])
    assert running(sleeper) is not None
    sleeper.write_text(json.dumps({**old, "started": data["started"] - 19}))
    assert running(sleeper) is None


def test_boot_ticks_of_this_process_and_of_none():
    import psutil

    ticks = boot_ticks(os.getpid())
    btime = next(int(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
    # the start field of /proc/<pid>/stat, not another: boot time + ticks is the start time psutil reports
    assert abs(btime + ticks / os.sysconf("SC_CLK_TCK") - psutil.Process().create_time()) < 1
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert boot_ticks(int(done.stdout)) is None  # gone
