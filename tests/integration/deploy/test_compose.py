"""deploy/docker-compose.yml: valid Compose, and the same stack as `referrals stack up`.

Validated by a real Compose implementation (`docker compose config` where the plugin exists,
else Debian's `docker-compose config`); no Docker engine is needed for that.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.local.kafka_broker import KafkaBroker, pinned_kafka_version
from deploy.local.redis_server import RedisServer
from referrals.settings import PROJECT_ROOT, Settings

COMPOSE_FILE = PROJECT_ROOT / "deploy" / "docker-compose.yml"

# server.properties keys that legitimately differ between a loopback process and a container
HOST_SPECIFIC = {
    "listeners", "advertised.listeners", "controller.quorum.bootstrap.servers", "log.dirs",
    "inter.broker.listener.name", "listener.security.protocol.map", "controller.listener.names",
}


def compose_command() -> list[str]:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("no Compose implementation: run `referrals stack prepare --test-tools` (installs docker-compose)")


def compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*compose_command(), "-f", str(path), "config"], capture_output=True, text=True,
                          cwd=path.parent)


@pytest.fixture(scope="module")
def compose() -> dict:
    done = compose_config(COMPOSE_FILE)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def env_name(prop: str) -> str:
    return "KAFKA_" + prop.upper().replace(".", "_")


def test_the_validator_is_real_it_rejects_a_broken_file(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("    ports:\n", "    portz:\n", 1))
    done = compose_config(broken)
    assert done.returncode != 0
    assert "portz" in done.stderr


def test_compose_has_the_stack_and_the_pipeline_services(compose):
    assert {"kafka", "redis", "prometheus", "grafana", "topics", "api", "worker", "exporter", "dispatcher"} <= set(
        compose["services"])


def test_kafka_image_is_the_pinned_broker_version(compose):
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{pinned_kafka_version()}"


def published(service: dict) -> set[int]:
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.add(int(port["published"]))
        else:
            ports.add(int(str(port).split(":")[-2]))
    return ports


def test_ports_are_the_local_stack_defaults_on_loopback(compose):
    defaults = Settings()
    assert defaults.kafka.port in published(compose["services"]["kafka"])
    assert defaults.redis.port in published(compose["services"]["redis"])
    assert defaults.gateway.port in published(compose["services"]["api"])
    for service in compose["services"].values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{port} is not published on loopback only"


def test_broker_settings_match_the_local_broker(compose, tmp_path):
    env = compose["services"]["kafka"]["environment"]
    local = KafkaBroker(Settings(state_dir=tmp_path)).server_properties()
    for prop, value in local.items():
        if prop in HOST_SPECIFIC:
            continue
        assert str(env.get(env_name(prop))) == value, f"{env_name(prop)} should be {value} as in the local stack"
    heap = Settings().kafka.heap
    assert env["KAFKA_HEAP_OPTS"] == f"-Xms{heap} -Xmx{heap}"


def test_redis_persists_like_the_local_one(compose, tmp_path):
    command = compose["services"]["redis"]["command"]
    local = RedisServer(Settings(state_dir=tmp_path)).config_text()
    for key, value in (("appendonly", "yes"), ("appendfsync", "everysec"), ("hash-max-listpack-value", "1024")):
        assert f"{key} {value}" in local
        assert command[command.index(f"--{key}") + 1] == value


def test_pipeline_services_are_configured_through_the_typed_settings(compose, monkeypatch):
    kafka = compose["services"]["kafka"]["environment"]
    for name in ("topics", "api", "worker", "exporter", "dispatcher"):
        env = compose["services"][name]["environment"]
        assert env, f"{name} has no environment"
        for key in list(__import__("os").environ):
            if key.startswith("REFERRALS_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            assert key.startswith("REFERRALS_"), key
            monkeypatch.setenv(key, str(value))
        settings = Settings()  # an unknown or mistyped variable fails here
        assert f"INTERNAL://{settings.kafka.bootstrap}" in kafka["KAFKA_ADVERTISED_LISTENERS"]
        assert settings.redis.host == "redis" and settings.redis.port == 6379
        assert str(settings.kafka.partitions) == kafka["KAFKA_NUM_PARTITIONS"]


def test_prometheus_scrapes_every_pipeline_service_on_the_port_its_settings_give(compose):
    config = yaml.safe_load((COMPOSE_FILE.parent / "prometheus" / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    defaults = Settings()
    assert targets["referral-exporter"] == [f"exporter:{defaults.exporter.port}"]
    assert targets["referral-gateway"] == [f"api:{defaults.gateway.metrics_port}"]
    assert targets["referral-worker"] == [f"worker:{defaults.streams.metrics_port}"]
    assert targets["referral-dispatcher"] == [f"dispatcher:{defaults.webhooks.metrics_port}"]
    for service, job in (("exporter", "referral-exporter"), ("api", "referral-gateway"), ("worker", "referral-worker"),
                         ("dispatcher", "referral-dispatcher")):
        assert service in compose["services"], job
    mounts = [str(v.get("source", v) if isinstance(v, dict) else v) for v in compose["services"]["prometheus"]["volumes"]]
    assert any(m.endswith("alerts.yml") or "alerts.yml" in m for m in mounts), "the alert rules are not mounted"


def test_grafana_gets_the_datasource_and_every_dashboard_provisioned(compose):
    grafana = compose["services"]["grafana"]
    targets = {}
    for v in grafana["volumes"]:  # Compose v2 renders mounts as mappings, v1 as "source:target[:mode]"
        source, target = (v.get("source"), v.get("target")) if isinstance(v, dict) else str(v).split(":")[:2]
        targets[str(target)] = Path(str(source))
    provisioning = targets["/etc/grafana/provisioning"]
    dashboards_dir = targets["/var/lib/grafana/dashboards"]
    provider = yaml.safe_load((provisioning / "dashboards" / "referrals.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    names = sorted(p.stem for p in dashboards_dir.glob("*.json"))
    assert names == ["referral-fraud", "referral-funnel", "referral-pipeline-health", "referral-rewards"]
    for path in dashboards_dir.glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            assert panel["datasource"]["uid"] == uid, f"{path.name}: {panel['title']}"
