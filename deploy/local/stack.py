"""`referrals stack up|down|status|prepare|reset`: the whole local stack in one place."""

from __future__ import annotations

import shutil

from deploy.local import system_packages
from deploy.local.kafka_broker import KafkaBroker
from deploy.local.redis_server import RedisServer
from deploy.local.service_status import ServiceStatus
from referrals.settings import Settings


class LocalStack:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.nodes = [KafkaBroker(settings, n) for n in range(1, settings.kafka.brokers + 1)]
        self.kafka = self.nodes[0]
        self.redis = RedisServer(settings)

    def prepare(self, *, test_tools: bool = False, echo=print) -> None:
        """Install what is missing (Debian packages, Kafka jars); starts nothing."""
        wanted = dict(system_packages.STACK_PACKAGES)
        if test_tools:
            wanted.update(system_packages.TEST_PACKAGES)
        system_packages.ensure(wanted, echo=echo)
        self.kafka.resolve_jars(echo=echo)

    def up(self, echo=print) -> dict[str, bool]:
        """Start what is not running. Returns which services were started now (a second `up` starts none)."""
        self.prepare(echo=echo)
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        started = {"redis": self.redis.up(echo=echo)}
        try:
            # every node first, then wait for each: a cluster's nodes answer once a majority of them runs
            for node in self.nodes:
                started[node.name] = node.start(echo=echo)
            for node in self.nodes:
                node.wait_ready(started[node.name])
        except Exception:
            for node in self.nodes:
                if started.get(node.name):
                    node.down()
            if started["redis"]:
                self.redis.down()
            raise
        return started

    def down(self) -> dict[str, bool]:
        """Stop what `up` started, and nothing else. Returns which services were stopped."""
        return {**{node.name: node.down() for node in reversed(self.nodes)}, "redis": self.redis.down()}

    def status(self) -> list[ServiceStatus]:
        return [node.status() for node in self.nodes] + [self.redis.status()]

    def reset(self) -> None:
        """Stop everything and delete all local state (topics, offsets, Redis data, the cluster's id and its
        TLS certificates); keeps the jars."""
        self.down()
        for node in self.nodes:
            shutil.rmtree(node.data, ignore_errors=True)
            shutil.rmtree(node.logs, ignore_errors=True)
        for path in (self.kafka.tls.dir, self.settings.state_dir / "redis"):
            shutil.rmtree(path, ignore_errors=True)
        self.kafka.cluster_id_file.unlink(missing_ok=True)
