"""``referrals api`` as a child process: started with the given environment on top of this one, ready once
``/readyz`` answers 200 (Kafka reachable), stopped with SIGTERM (SIGKILL after 30 s). What ``referrals demo``,
the bench and the tests that kill a gateway run it with. (The other tests serve the application in-process.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from deploy.local.processes import tail_bytes


class GatewayFailed(AssertionError):
    """The gateway ended or was not ready in time; the message has its log's end."""


@dataclass
class GatewayProcess:
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)  # REFERRALS_... settings on top of this process's environment
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def tail(self, size: int = 3000) -> str:
        return tail_bytes(self.log, size)

    def start(self, ready_within_s: float = 60.0) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "referrals.cli", "api", "--host", self.host, "--port", str(self.port)],
                env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + ready_within_s
        while True:
            if self.proc.poll() is not None:
                raise GatewayFailed(f"the gateway exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise GatewayFailed(f"the gateway was not ready within {ready_within_s:.0f} s:\n{self.tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
