"""Processes the local stack starts: pid files that prove ownership, ports, log tails.

A pid file holds the pid *and* the process start time, so ``down`` never signals a
process that merely inherited a recycled pid: only what ``up`` started is stopped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


class StackError(RuntimeError):
    """The local stack could not do what was asked; the message says why and what to do."""


def boot_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since the machine booted (Linux: /proc/<pid>/stat, field 22), or
    None where there is no such file. Unlike a wall-clock start time (psutil's ``create_time``: boot time + this),
    it does not move when the system clock is stepped: seen here, a 19 s step made the stack take its own Redis for
    a stranger's ("port taken"), and ``make test`` or ``make bench`` would then refuse to start."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True, slots=True)
class OwnedProcess:
    pid: int
    started: float
    ticks: int | None = None  # ``boot_ticks`` at the start (pid files written before it have none)

    def alive(self) -> bool:
        """Whether the pid is still the process that was started (not a later one given the same pid)."""
        try:
            proc = psutil.Process(self.pid)
            ticks = boot_ticks(self.pid) if self.ticks is not None else None
            same = ticks == self.ticks if ticks is not None else abs(proc.create_time() - self.started) < 0.01
            return same and proc.status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False


def read_pidfile(path: Path) -> OwnedProcess | None:
    try:
        data = json.loads(path.read_text())
        ticks = data.get("ticks")
        return OwnedProcess(int(data["pid"]), float(data["started"]), int(ticks) if ticks is not None else None)
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
        return None


def running(path: Path) -> OwnedProcess | None:
    """The process recorded in the pid file if it is still the one we started."""
    owned = read_pidfile(path)
    return owned if owned is not None and owned.alive() else None


def spawn(argv: Sequence[str], *, pidfile: Path, output: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start a detached process (own session: Ctrl-C in the shell does not reach it) and record it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = psutil.Process(proc.pid).create_time()
    pidfile.write_text(json.dumps({"pid": proc.pid, "started": started, "ticks": boot_ticks(proc.pid),
                                   "argv": list(argv)}))
    return proc


def stop(pidfile: Path, *, timeout_s: float) -> bool:
    """SIGTERM what the pid file names (if it is ours), SIGKILL after ``timeout_s``. True if it was running."""
    owned = running(pidfile)
    if owned is None:
        pidfile.unlink(missing_ok=True)
        return False
    proc = psutil.Process(owned.pid)
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    except psutil.NoSuchProcess:
        pass
    pidfile.unlink(missing_ok=True)
    return True


def stop_child(proc: subprocess.Popen, *, signum: int = signal.SIGTERM, timeout_s: float) -> None:
    """Stop a child started in a session of its own (``start_new_session``): ``signum`` to it, and SIGKILL to its
    whole group (its own children too: a gateway's worker processes) if it has not ended within ``timeout_s``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signum)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended between the wait and the kill
            pass
        proc.wait()


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the system's choice), for a process about to be started."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_owner(port: int) -> str:
    """Best effort: which process listens on the port, for an error message."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({proc.name()})"
    except (psutil.Error, OSError):
        pass
    return "another process"


def ensure_port_free(host: str, port: int, what: str, setting: str) -> None:
    if port_open(host, port):
        raise StackError(
            f"{what}: port {port} on {host} is taken by {port_owner(port)}, which the local stack did not start. "
            f"Stop it, or choose another port with {setting}=<port>."
        )


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(tail_bytes(path, 64 * 1024).splitlines()[-lines:])


def tail_bytes(path: Path, size: int) -> str:
    """The last ``size`` bytes of a log, decoded, read from its end (a long log is not read whole)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"({path} does not exist)"


def wait_until(check, *, timeout_s: float, interval_s: float = 0.25, alive=None) -> bool:
    """Poll ``check`` until it is true; give up early when ``alive`` says the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        if alive is not None and not alive():
            return False
        time.sleep(interval_s)
    return False
