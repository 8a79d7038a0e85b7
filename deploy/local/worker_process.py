"""``referrals worker`` as a child process, supervised as a restart policy would: what ``referrals demo``,
the tests and the bench run workers with.

Started with the settings' environment (``worker_environment``), its output appended to a log; ready once
the process logged Faust's "Ready" (partitions assigned, tables recovered); started again when it stopped
itself (``CRASH_EXIT_CODE``: its guards, see docs/worker.md) and ``restart_when`` agrees; stopped with SIGTERM,
SIGKILL after a minute.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from deploy.local.processes import stop_child, tail_bytes
from referrals.settings import Settings, worker_environment
from streams.exit_codes import CRASH_EXIT_CODE

READY = "[^Worker]: Ready"


class WorkerFailed(AssertionError):
    """The worker ended otherwise than a restart policy restarts, or was not ready in time; the message has
    its log's end. (An ``AssertionError``: in a test it is the test's failure.)"""


def any_crash(log_tail: str) -> bool:
    return True


def never(log_tail: str) -> bool:
    return False


@dataclass
class WorkerProcess:
    settings: Settings
    log: Path
    # on CRASH_EXIT_CODE, given the end of the log: restart? (the tests restart only their guards' stops)
    restart_when: Callable[[str], bool] = any_crash
    max_restarts: int | None = None
    # a command the worker runs under (``py-spy record ... --``), the worker its child
    launcher: tuple[str, ...] = ()
    procs: list[subprocess.Popen] = field(default_factory=list)
    restarts: int = 0  # after the worker stopped itself (CRASH_EXIT_CODE)
    started_at: float = 0.0  # time.monotonic() of the current process's start
    _log_offset: int = 0  # the log's size when the current process started: its "Ready" is after it

    def env(self) -> dict[str, str]:
        return {**os.environ, **worker_environment(self.settings)}

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.procs.append(subprocess.Popen(
                [*self.launcher, sys.executable, "-m", "referrals.cli", "worker", "--loglevel", "info"], env=self.env(),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        self.started_at = time.monotonic()

    @property
    def current(self) -> subprocess.Popen:
        return self.procs[-1]

    @property
    def pid(self) -> int:
        """The worker's own process id (a launcher's child)."""
        pid = self.current.pid
        return psutil.Process(pid).children()[0].pid if self.launcher else pid

    def tail(self, size: int = 4000) -> str:
        return tail_bytes(self.log, size)

    def restartable(self, code: int | None) -> bool:
        return (code == CRASH_EXIT_CODE and (self.max_restarts is None or self.restarts < self.max_restarts)
                and self.restart_when(self.tail(20000)))

    def assert_alive(self) -> None:
        code = self.current.poll()
        if code is not None:
            raise WorkerFailed(f"the worker exited with {code}:\n{self.tail()}")

    def keep_alive(self) -> None:
        """Start the worker again if it stopped itself and may be restarted; fail on any other exit."""
        if self.restartable(self.current.poll()):
            self.restarts += 1
            self.start()
        else:
            self.assert_alive()

    def wait_ready(self, timeout_s: float = 60.0, *, restart: bool = True) -> float:
        """Until the current process has logged "Ready"; the seconds from its start. With ``restart``, a process
        that stopped itself before it logged the line (an offset gap found by a first batch that comes before
        it) is started again and the wait goes on for the new one."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.log.open("rb") as log:
                log.seek(self._log_offset)
                if READY in log.read().decode(errors="replace"):
                    return time.monotonic() - self.started_at
            self.keep_alive() if restart else self.assert_alive()
            if time.monotonic() > deadline:
                raise WorkerFailed(f"the worker was not ready within {timeout_s:.0f} s:\n{self.tail()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no commit."""
        self.current.send_signal(signal.SIGKILL)
        self.current.wait(timeout=30)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Every process it started, ``signum`` first (py-spy writes its profile on SIGINT and passes it on)."""
        for proc in self.procs:
            stop_child(proc, signum=signum, timeout_s=60)
