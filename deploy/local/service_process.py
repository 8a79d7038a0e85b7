"""``referrals api``, ``referrals exporter``, ``referrals dispatcher`` and ``referrals webhooks receive`` as
child processes: started with the given environment on top
of this one, their output appended to a log, ready once their readiness URL answers 200 (the gateway's
``/readyz``: Kafka reachable; the exporter's ``/metrics``: one full scrape), stopped with SIGTERM (SIGKILL after
30 s). What ``referrals demo``, the bench and the tests that kill a gateway run them with. (The other tests
serve the gateway in-process.) The worker, which also restarts, is ``worker_process``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from deploy.local.processes import stop_child, tail_bytes


class ServiceFailed(AssertionError):
    """The service ended or was not ready in time; the message has its log's end. (An ``AssertionError``: in a
    test it is the test's failure.)"""


class ServiceProcess:
    """``python <args>`` (``-m referrals.cli <command>``), an HTTP service, as a child process."""

    def __init__(self, what: str, args: Sequence[str], ready_url: str, log: Path,
                 env: dict[str, str] | None = None):
        self.what = what
        self.args = tuple(args)
        self.ready_url = ready_url
        self.log = log
        self.env = dict(env or {})  # REFERRALS_... settings on top of this process's environment
        self.proc: subprocess.Popen | None = None

    def tail(self, size: int = 3000) -> str:
        return tail_bytes(self.log, size)

    def start(self, ready_within_s: float = 60.0) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, *self.args],
                                         env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + ready_within_s
        while True:
            if self.proc.poll() is not None:
                raise ServiceFailed(f"the {self.what} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.ready_url, timeout=max(2.0, min(30.0, deadline - time.monotonic()))
                             ).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise ServiceFailed(f"the {self.what} was not ready within {ready_within_s:.0f} s:\n{self.tail()}")
            time.sleep(0.2)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_child(self.proc, timeout_s=30)


class GatewayProcess(ServiceProcess):
    """``referrals api`` (gateway and read API) on ``host:port``."""

    def __init__(self, port: int, log: Path, env: dict[str, str] | None = None, host: str = "127.0.0.1"):
        self.host, self.port = host, port
        super().__init__("gateway", ["-m", "referrals.cli", "api", "--host", host, "--port", str(port)],
                         f"{self.url}/readyz", log, env)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class ExporterProcess(ServiceProcess):
    """``referrals exporter``, on the host and port its settings give (``REFERRALS_EXPORTER__...``)."""

    def __init__(self, host: str, port: int, log: Path, env: dict[str, str] | None = None):
        super().__init__("exporter", ["-m", "referrals.cli", "exporter"], f"http://{host}:{port}/metrics", log, env)


class DispatcherProcess(ServiceProcess):
    """``referrals dispatcher``, ready once its /metrics answers (``REFERRALS_WEBHOOKS__METRICS_...``)."""

    def __init__(self, host: str, port: int, log: Path, env: dict[str, str] | None = None):
        super().__init__("webhook dispatcher", ["-m", "referrals.cli", "dispatcher"], f"http://{host}:{port}/metrics",
                         log, env)


class ReceiverProcess(ServiceProcess):
    """``referrals webhooks receive <endpoint>``: a local endpoint on the port of the endpoint's URL."""

    def __init__(self, endpoint: str, port: int, out: Path, log: Path, env: dict[str, str] | None = None):
        super().__init__("webhook receiver", ["-m", "referrals.cli", "webhooks", "receive", endpoint, "--out", str(out)],
                         f"http://127.0.0.1:{port}/healthz", log, env)
