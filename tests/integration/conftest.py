"""Fixtures for tests against the real stack: Kafka 4 (KRaft) and Redis.

The session's stack is the one `referrals stack up` runs (settings from the
environment). If it is not running, the ``stack`` fixture starts it, and stops it again
at the end of the session; if it cannot start, every test that needs it fails with the
cause. Nothing here skips.

Every test gets names of its own (topics, consumer groups, Redis keys), so tests never
see each other's data.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_lib
import uvicorn
import yaml

from deploy.local.processes import StackError
from deploy.local.stack import LocalStack
from referrals.kafka_admin import delete_topics, ensure_topics
from referrals.settings import PROJECT_ROOT, Settings, changed

STACK_FACTS: dict[str, str] = {}


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[LocalStack]:
    local = LocalStack(settings)
    try:
        started = local.up(echo=lambda message: None)
    except StackError as exc:
        pytest.fail(f"the local stack could not start, so the integration tests cannot run:\n{exc}", pytrace=False)
    STACK_FACTS["kafka"] = (
        f"Apache Kafka {local.kafka.running_version()} (KRaft, single node) at {settings.kafka.bootstrap}, "
        f"{'started for this run' if started['kafka'] else 'already running'}; "
        f"version as logged by the broker in {local.kafka.server_log}"
    )
    STACK_FACTS["redis"] = (
        f"Redis {local.redis.version()} at {settings.redis.host}:{settings.redis.port}, "
        f"{'started for this run' if started['redis'] else 'already running'}"
    )
    yield local
    if started["kafka"]:
        local.kafka.down()
    if started["redis"]:
        local.redis.down()


def _slug(request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:60]
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """unique_name("group") -> "group.<test name>-<random>": for topics, groups, keys."""
    slug = _slug(request)
    return lambda prefix: f"{prefix}.{slug}"


@pytest.fixture
def topic_factory(stack: LocalStack, settings: Settings, unique_name) -> Iterator[Callable[..., str]]:
    """Creates topics with names of this test's own on the real broker; deletes them afterwards."""
    created: list[str] = []

    def make(purpose: str = "topic", partitions: int | None = None) -> str:
        name = unique_name(f"test.{purpose}")
        ensure_topics(settings, [name], partitions)
        created.append(name)
        return name

    yield make
    delete_topics(settings, created)


@pytest.fixture
def redis_client(stack: LocalStack) -> Iterator[redis_lib.Redis]:
    client = stack.redis.client()
    yield client
    client.close()


@pytest.fixture
def redis_keys(redis_client: redis_lib.Redis, unique_name) -> Iterator[Callable[[str], str]]:
    """redis_keys("counter") -> a key of this test's own; all of them are deleted afterwards."""
    prefix = unique_name("test")
    yield lambda name: f"{prefix}:{name}"
    keys = list(redis_client.scan_iter(match=f"{prefix}:*"))
    if keys:
        redis_client.delete(*keys)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def isolated_settings(tmp_path) -> Settings:
    """Settings for a second, throw-away stack: own state folder, own free ports."""
    return Settings(
        state_dir=tmp_path / "state",
        kafka={"port": free_port(), "controller_port": free_port(), "start_timeout_s": 90},
        redis={"port": free_port()},
    )


# -- the gateway -----------------------------------------------------------------------------------

APP_KEY = "app-key-for-tests-0123456789"
SHOP_KEY = "shop-key-for-tests-0123456789"
READ_KEY = "read-key-for-tests-0123456789"
WEBHOOK_SECRET = "webhook-secret-for-tests-0123456789"


@dataclass
class RunningGateway:
    url: str
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread
    topics: list[str] = field(default_factory=list)

    def topic(self, base: str) -> str:
        return self.settings.kafka.topic_prefix + base

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def gateway_settings(settings: Settings, unique_name, **gateway) -> Settings:
    """The session's settings with topics and Redis keys of this test's own, and test keys."""
    base = {
        "port": free_port(),
        "api_keys": [
            {"name": "app", "key": APP_KEY, "types": ["share", "click", "signup"]},
            {"name": "shop", "key": SHOP_KEY, "types": ["signup", "order", "refund"]},
            {"name": "support", "key": READ_KEY, "read": True},
        ],
        "webhook_secrets": [{"name": "shop-webhook", "secret": WEBHOOK_SECRET, "types": ["order", "refund"]}],
        "default_landing_url": "http://127.0.0.1:9/default",
    }
    base.update(gateway)
    prefix = unique_name("t").replace(".", "-") + "."
    return changed(settings, kafka={"topic_prefix": prefix}, redis={"key_prefix": prefix}, gateway=base)


@pytest.fixture
def app_factory(stack: LocalStack, settings: Settings, unique_name) -> Iterator[Callable[..., RunningGateway]]:
    """Starts the real gateway (uvicorn, on a free loopback port) with topics and keys of this test's own."""
    from referrals.cli.api import http_app
    from referrals.kafka_admin import project_topics

    running: list[RunningGateway] = []

    def make(create_topics: bool = True, kafka_bootstrap: str | None = None, base: Settings | None = None,
             data_of: Settings | None = None, **gateway) -> RunningGateway:
        """``data_of``: use those settings' topics and Redis keys (a worker's), created and removed by their owner."""
        own = gateway_settings(base or settings, unique_name, **gateway)
        if data_of is not None:
            create_topics = False
            own = changed(own, kafka={"topic_prefix": data_of.kafka.topic_prefix},
                          redis={"key_prefix": data_of.redis.key_prefix})
        if kafka_bootstrap is not None:
            own = changed(own, kafka={"bootstrap_servers": kafka_bootstrap})
        if create_topics:
            ensure_topics(own, project_topics(own))
        server = uvicorn.Server(uvicorn.Config(http_app(own), host="127.0.0.1", port=own.gateway.port,
                                               log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("the gateway did not start")
            time.sleep(0.05)
        gw = RunningGateway(f"http://127.0.0.1:{own.gateway.port}", own, server, thread,
                            project_topics(own) if create_topics else [])
        running.append(gw)
        return gw

    yield make
    for gw in running:
        gw.stop()
    for gw in running:
        if gw.topics and gw.settings.kafka.bootstrap == settings.kafka.bootstrap:
            delete_topics(settings, gw.topics)
    with stack.redis.client() as client:
        for gw in running:
            if (gw.settings.redis.host, gw.settings.redis.port) != (settings.redis.host, settings.redis.port):
                continue
            keys = list(client.scan_iter(match=f"{gw.settings.redis.key_prefix}*"))
            if keys:
                client.delete(*keys)


# -- the stream worker ------------------------------------------------------------------------------


@pytest.fixture
def pipeline_factory(stack, settings, unique_name, tmp_path):
    """Settings with their own topics, Redis keys, consumer group and state; a worker for them."""
    made: list = []  # (settings, WorkerProcess)

    def make(name: str = "w", tick_interval_s: float = 1.0, fault_kill_rate: float = 0.0, batch_size: int = 500,
             stall_timeout_s: float = 60.0, metrics_port: int = 0, base: Settings | None = None,
             dedup_horizon_days: int | None = None, **streams: object):
        """``base``: settings to start from instead of the session's (another Redis, say); ``streams``: more
        stream settings."""
        base = base or settings
        tag = unique_name(name).replace(".", "-")
        own = changed(
            base, kafka={"topic_prefix": tag + "."}, redis={"key_prefix": tag + ":"}, state_dir=tmp_path / tag,
            streams={"app_id": tag, "tick_interval_s": tick_interval_s, "fault_kill_rate": fault_kill_rate,
                     "batch_size": batch_size, "stall_timeout_s": stall_timeout_s, "metrics_port": metrics_port,
                     "dedup_horizon_days": dedup_horizon_days or base.streams.dedup_horizon_days, **streams})
        from streams.topology import prepare_topics
        from tests.integration.worker_support import WorkerProcess

        prepare_topics(own)
        worker = WorkerProcess(own, tmp_path / f"{tag}.log")
        made.append((own, worker))
        return own, worker

    yield make
    for own, worker in made:
        worker.stop()
        from streams.topology import changelog_topics, worker_topics
        from tests.integration.worker_support import client

        # and the topic Faust makes for its partition assignor's leader election
        delete_topics(settings, worker_topics(own) + changelog_topics(own)
                      + [f"{own.streams.app_id}-__assignor-__leader"])

        with client(own) as c:
            keys = list(c.scan_iter(match=f"{own.redis.key_prefix}*"))
            if keys:
                c.delete(*keys)


# -- Prometheus ------------------------------------------------------------------------------------


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
