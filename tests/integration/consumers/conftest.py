"""A real Prometheus (Debian's package) for the exporter's and the deploy configuration's tests; the webhook
tests' own topics, receivers and dispatchers."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from consumers.webhooks.signing import new_secret
from deploy.local.processes import free_port
from referrals.kafka_admin import delete_topics, ensure_topics
from referrals.redis_client import redis_client as new_redis_client
from referrals.settings import PROJECT_ROOT, Settings, changed
from schemas.topics import ATTRIBUTIONS, FULFILMENTS, REWARDS, WEBHOOK_DEADLETTER
from tests.integration.support.webhooks import Dispatcher, Receiver


@dataclass
class RunningPrometheus:
    url: str
    process: subprocess.Popen
    log: Path

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (or scalar as a one-element list)."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [{"metric": {}, "value": data["result"]}]

    def targets_up(self) -> dict[str, bool]:
        return {t["labels"]["job"]: t["health"] == "up" for t in self.api("targets")["activeTargets"]}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


PROMETHEUS_DIR = PROJECT_ROOT / "deploy" / "prometheus"


@pytest.fixture
def prometheus_factory(tmp_path) -> Iterator[Callable[..., RunningPrometheus]]:
    """A real Prometheus (Debian's package) with the jobs and rules of ``deploy/prometheus``, scraping the
    targets the test gives every second."""
    running: list[RunningPrometheus] = []

    def make(targets: dict[str, str], interval: str = "1s") -> RunningPrometheus:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: `make setup` installs Debian's prometheus package"
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        jobs = {job["job_name"] for job in config["scrape_configs"] if job["job_name"].startswith("referral-")}
        assert jobs == set(targets), f"give a target for every pipeline job of the deploy config: {sorted(jobs)}"
        port = free_port()
        config["global"] = {"scrape_interval": interval, "evaluation_interval": interval}
        config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
        for job in config["scrape_configs"]:
            job["static_configs"] = [{"targets": [targets.get(job["job_name"], f"127.0.0.1:{port}")]}]
        folder = tmp_path / f"prometheus-{port}"
        folder.mkdir()
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = folder / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        prom = RunningPrometheus(f"http://127.0.0.1:{port}", process, log)
        running.append(prom)
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{prom.url}/-/ready", timeout=2).status_code == 200:
                    return prom
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus was not ready within 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    yield make
    for prom in running:
        prom.stop()


@dataclass
class WebhookRun:
    """A test's own webhook set-up: settings with their own topics, keys and groups; receivers; a dispatcher."""

    settings: Settings
    folder: Path
    receivers: list[Receiver] = field(default_factory=list)
    dispatchers: list[Dispatcher] = field(default_factory=list)

    def receiver(self, name: str, behaviour: str = "ok", start: bool = True) -> Receiver:
        receiver = Receiver(name, new_secret(), self.folder / f"receiver-{name}.jsonl", behaviour)
        self.receivers.append(receiver)
        return receiver.start() if start else receiver

    def dispatcher(self, endpoints: list[dict[str, Any]], streams: dict[str, Any] | None = None,
                   **webhooks: Any) -> Dispatcher:
        own = changed(self.settings, webhooks={"endpoints": endpoints, **webhooks}, streams=streams or {})
        dispatcher = Dispatcher(own, self.folder / f"dispatcher-{len(self.dispatchers)}.log")
        self.dispatchers.append(dispatcher)
        return dispatcher


@pytest.fixture
def webhook_factory(stack, settings, unique_name, tmp_path) -> Iterator[Callable[[], WebhookRun]]:
    runs: list[WebhookRun] = []

    def make() -> WebhookRun:
        tag = unique_name("wh").replace(".", "-")
        own = changed(settings, kafka={"topic_prefix": tag + "."}, redis={"key_prefix": tag + ":"},
                      streams={"app_id": tag})
        ensure_topics(own, [own.kafka.topic_prefix + spec.name for spec in (REWARDS, ATTRIBUTIONS, WEBHOOK_DEADLETTER, FULFILMENTS)])
        run = WebhookRun(own, tmp_path)
        runs.append(run)
        return run

    yield make
    for run in runs:
        for dispatcher in run.dispatchers:
            dispatcher.stop()
        for receiver in run.receivers:
            receiver.stop()
        delete_topics(settings, [run.settings.kafka.topic_prefix + spec.name
                                 for spec in (REWARDS, ATTRIBUTIONS, WEBHOOK_DEADLETTER, FULFILMENTS)])
        client = new_redis_client(settings)
        keys = list(client.scan_iter(match=f"{run.settings.redis.key_prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def dispatcher_factory(tmp_path) -> Iterator[Callable[..., Dispatcher]]:
    """``referrals dispatcher`` for given settings (with ``webhooks`` settings on top), started; stopped after the
    test whatever happened."""
    made: list[Dispatcher] = []

    def make(settings: Settings, **webhooks: Any) -> Dispatcher:
        dispatcher = Dispatcher(changed(settings, webhooks=webhooks) if webhooks else settings,
                                tmp_path / f"dispatcher-{len(made)}.log")
        made.append(dispatcher)
        return dispatcher.start()

    yield make
    for dispatcher in made:
        dispatcher.stop()


@pytest.fixture
def receiver_factory(tmp_path) -> Iterator[Callable[..., Receiver]]:
    """A webhook receiver in its own process (``support/webhook_receiver.py``), started; killed after the test."""
    made: list[Receiver] = []

    def make(name: str, behaviour: str = "ok") -> Receiver:
        receiver = Receiver(name, new_secret(), tmp_path / f"receiver-{name}.jsonl", behaviour)
        made.append(receiver)
        return receiver.start()

    yield make
    for receiver in made:
        receiver.stop()
