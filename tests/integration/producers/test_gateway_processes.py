"""``referrals api`` as several processes (uvicorn's supervisor, one listening socket): /metrics adds up
every process, a key's rate limit holds across them (the bucket in the real Redis), events are still
accepted while Redis is down, and the workers of a SIGKILLed supervisor stop too."""

from __future__ import annotations

import json
import re
import time

import httpx
import psutil
import pytest

from deploy.local.processes import free_port
from deploy.local.service_process import GatewayProcess
from referrals.kafka_admin import delete_topics, ensure_topics, project_topics
from referrals.settings import Settings, changed
from tests.integration.fixtures.gateway import APP_KEY
from tests.integration.support.kafka_reading import end_offsets

KEYS = [{"name": "app", "key": APP_KEY, "types": ["share", "click", "signup"]}]


def share(i: int, tag: str) -> dict:
    return {"type": "share", "event_id": f"{tag}-{i}", "occurred_at": "2026-01-01T00:00:00Z",
            "referrer_id": f"cust-{i}", "channel": "whatsapp"}


@pytest.fixture
def gateway_of_processes(stack, settings, unique_name, tmp_path):
    """A ``referrals api`` of ``processes`` processes with topics, Redis keys and metrics port of its own."""
    made: list[tuple[GatewayProcess, Settings]] = []

    def make(processes: int = 2, redis_port: int | None = None, **gateway) -> tuple[GatewayProcess, Settings]:
        prefix = unique_name("gp").replace(".", "-") + "."
        own = changed(settings, kafka={"topic_prefix": prefix}, redis={"key_prefix": prefix},
                      state_dir=tmp_path / f"state-{len(made)}")
        ensure_topics(own, project_topics(own))
        env = {"REFERRALS_KAFKA__TOPIC_PREFIX": prefix, "REFERRALS_REDIS__KEY_PREFIX": prefix,
               "REFERRALS_STATE_DIR": str(own.state_dir), "REFERRALS_GATEWAY__API_KEYS": json.dumps(KEYS),
               "REFERRALS_GATEWAY__PROCESSES": str(processes),
               "REFERRALS_GATEWAY__METRICS_PORT": str(free_port()), "REFERRALS_REDIS__PORT":
                   str(redis_port or settings.redis.port),
               **{f"REFERRALS_GATEWAY__{k.upper()}": str(v) for k, v in gateway.items()}}
        gateway_process = GatewayProcess(free_port(), tmp_path / f"gateway-{len(made)}.log", env=env)
        made.append((gateway_process, own))
        gateway_process.start(ready_within_s=90)
        return gateway_process, own

    yield make
    for gateway_process, own in made:
        gateway_process.stop()
        delete_topics(settings, project_topics(own))
        with stack.redis.client() as client:
            keys = list(client.scan_iter(match=f"{own.redis.key_prefix}*"))
            if keys:
                client.delete(*keys)


def post_on_new_connections(gateway: GatewayProcess, events: list[dict]) -> list[int]:
    """One request per connection: the kernel hands each to whichever process accepts first."""
    statuses = []
    for event in events:
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {APP_KEY}"}) as client:
            statuses.append(client.post(f"{gateway.url}/v1/events", json=event).status_code)
    return statuses


def workers(gateway: GatewayProcess) -> list[psutil.Process]:
    """The worker processes (multiprocessing's spawned children, not its resource tracker)."""
    return [p for p in psutil.Process(gateway.proc.pid).children() if "spawn_main" in " ".join(p.cmdline())]


def metric(text: str, name: str, labels: str) -> float:
    found = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_metrics_add_up_every_process_and_every_202_is_on_kafka(gateway_of_processes):
    gateway, own = gateway_of_processes(processes=2, rate_limit_per_s=100000, rate_limit_burst=100000)
    assert len(workers(gateway)) == 2
    statuses = post_on_new_connections(gateway, [share(i, "m") for i in range(60)])
    assert statuses == [202] * 60
    files = {path.name for path in (own.state_dir / "gateway-metrics" / str(gateway.port)).iterdir()}
    assert len({re.sub(r"\D", "", name) for name in files if name.startswith("counter_")}) == 2, files
    text = httpx.get(f"http://127.0.0.1:{gateway.env['REFERRALS_GATEWAY__METRICS_PORT']}/metrics", timeout=10).text
    assert metric(text, "referral_gateway_events_total", 'type="share"') == 60
    assert metric(text, "referral_gateway_requests_total", 'method="POST",route="/v1/events",status="202"') == 60
    assert end_offsets(own, [own.kafka.topic_prefix + "referrals.shares"]) == {
        own.kafka.topic_prefix + "referrals.shares": 60}


def test_a_keys_rate_limit_holds_across_processes(gateway_of_processes):
    gateway, _ = gateway_of_processes(processes=2, rate_limit_per_s=0.01, rate_limit_burst=6)
    statuses = post_on_new_connections(gateway, [share(i, "r") for i in range(20)])
    assert statuses.count(202) == 6 and statuses.count(429) == 14, statuses


def test_events_are_accepted_while_redis_is_down(gateway_of_processes):
    gateway, own = gateway_of_processes(processes=2, redis_port=free_port(), rate_limit_per_s=1000,
                                        rate_limit_burst=1000)
    statuses = post_on_new_connections(gateway, [share(i, "d") for i in range(10)])
    assert statuses == [202] * 10
    assert "rate limits per process while Redis is unreachable" in gateway.tail(20000)


def test_the_workers_of_a_sigkilled_supervisor_stop_too(gateway_of_processes):
    gateway, _ = gateway_of_processes(processes=2)
    orphans = workers(gateway)
    assert len(orphans) == 2, ([p.cmdline() for p in orphans], gateway.tail())
    gateway.proc.kill()
    gateway.proc.wait()
    gone, alive = psutil.wait_procs(orphans, timeout=30)
    assert alive == [], ([p.pid for p in alive], gateway.tail())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{gateway.url}/healthz", timeout=1)
        except httpx.TransportError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"something still answers on the gateway's port:\n{gateway.tail()}")
