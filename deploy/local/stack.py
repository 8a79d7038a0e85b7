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
        self.kafka = KafkaBroker(settings)
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
            started["kafka"] = self.kafka.up(echo=echo)
        except Exception:
            if started["redis"]:
                self.redis.down()
            raise
        return started

    def down(self) -> dict[str, bool]:
        """Stop what `up` started, and nothing else. Returns which services were stopped."""
        return {"kafka": self.kafka.down(), "redis": self.redis.down()}

    def status(self) -> list[ServiceStatus]:
        return [self.kafka.status(), self.redis.status()]

    def reset(self) -> None:
        """Stop everything and delete all local state (topics, offsets, Redis data); keeps the jars."""
        self.down()
        for sub in ("kafka/data", "kafka/logs", "redis"):
            shutil.rmtree(self.settings.state_dir / sub, ignore_errors=True)
