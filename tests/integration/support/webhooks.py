"""Outbound webhooks in tests: receivers in their own processes (``webhook_receiver``), the dispatcher as a child
process (``referrals dispatcher``), and the reward changes it delivers, produced to the test's own topics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaProducer

from deploy.local.processes import free_port
from referrals.settings import PROJECT_ROOT, Settings, changed, worker_environment
from schemas.derived import Attribution, RewardChange
from schemas.records import attribution_record, reward_record
from tests.integration.support.worker import wait_for

BIN = Path(sys.executable).parent


@dataclass
class Receiver:
    """A shop's endpoint: ``tests/integration/support/webhook_receiver.py`` in its own process."""

    name: str
    secret: str
    log: Path
    behaviour: str = "ok"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{self.name}"

    def start(self, behaviour: str | None = None) -> Receiver:
        self.behaviour = behaviour or self.behaviour
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.support.webhook_receiver", "--port", str(self.port),
             "--secret", self.secret, "--log", str(self.log), "--behaviour", self.behaviour],
            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.process.stdout.readline()
        assert line.startswith("listening"), f"receiver {self.name} did not start: {line}{self.process.stdout.read()}"
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def requests(self) -> list[dict[str, Any]]:
        """Every request that came whole (the ones cut off by a SIGKILLed dispatcher left out), in order."""
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [line for line in lines if not line.get("incomplete")]

    def incomplete(self) -> int:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return sum('"incomplete": true' in line for line in lines)

    def delivered(self) -> list[dict[str, Any]]:
        """The requests it accepted (verified and answered 2xx), in the order they came."""
        return [r for r in self.requests() if r["verified"] and 200 <= r["answered"] < 300]

    def endpoint(self, types: list[str], campaigns: list[str] | None = None) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "secret": self.secret, "types": types, "campaigns": campaigns}


class Dispatcher:
    """``referrals dispatcher`` as a child process, started again after a SIGKILL as a restart policy would."""

    def __init__(self, settings: Settings, log: Path):
        self.metrics_port = free_port()
        self.settings = changed(settings, webhooks={"metrics_port": self.metrics_port})
        self.log = log
        self.process: subprocess.Popen | None = None
        self.kills = 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REFERRALS_")}
        return env | worker_environment(self.settings, ("kafka", "redis", "streams", "webhooks", "privacy"))

    def start(self) -> Dispatcher:
        with self.log.open("a") as out:
            out.write(f"--- start {time.time():.3f}\n")
        self.process = subprocess.Popen([str(BIN / "referrals"), "dispatcher"], env=self.env(), cwd=PROJECT_ROOT,
                                        stdout=self.log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: (self.serving(), f"the dispatcher's metrics (log: {self.log})"), 30, interval_s=0.2)
        return self

    def serving(self) -> bool:
        assert self.process is not None and self.process.poll() is None, (
            f"the dispatcher ended with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def sigkill(self) -> None:
        assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.kills += 1

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(f"the dispatcher did not stop on SIGTERM:\n{self.log.read_text()[-3000:]}"
                                 ) from None

    def cli(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "referrals"), *args], env=self.env(), cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=timeout_s)


def produce(settings: Settings, changes: list[RewardChange | Attribution], referrer_of: dict[str, str]) -> None:
    """Reward changes (keyed by their referrer, as the worker writes them) and attributions, in the given order."""
    producer = KafkaProducer(**settings.kafka.client_options(), acks="all", linger_ms=5)
    try:
        for change in changes:
            if isinstance(change, RewardChange):
                record = reward_record(change, referrer_of[change.reward_id], "tests", settings.kafka.topic_prefix)
            else:
                record = attribution_record(change, "tests", settings.kafka.topic_prefix)
            producer.send(record.topic, record.value, record.key, headers=record.headers)
        producer.flush(timeout=30)
    finally:
        producer.close()
