"""The local stack knows its own processes by their pid files, also when the system clock is stepped."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest

from deploy.local.processes import OwnedProcess, boot_ticks, read_pidfile, running, spawn, stop, stop_child


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


_STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                          "time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_stop_child_kills_the_whole_group_of_one_that_ignores_sigterm():
    proc = subprocess.Popen([sys.executable, "-c", _STUBBORN], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    grandchild = psutil.Process(int(proc.stdout.readline()))
    stop_child(proc, timeout_s=0.5)
    assert proc.returncode == -9
    grandchild.wait(timeout=5)  # psutil.TimeoutExpired if it still runs
    proc.stdout.close()


def test_stop_child_of_one_that_ended_does_nothing():
    proc = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    proc.wait(timeout=30)
    stop_child(proc, timeout_s=0.5)
    assert proc.returncode == 0
