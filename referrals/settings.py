"""The one typed place for configuration.

Every process (CLI, stack, gateway, worker, exporter) builds one ``Settings`` at
start-up and hands it down; nothing below reads ``os.environ`` itself.

Environment variables use the prefix ``REFERRALS_`` and ``__`` for nesting, e.g.
``REFERRALS_KAFKA__PORT=9094`` or ``REFERRALS_REDIS__PORT=6390``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class KafkaSettings(BaseModel):
    """Where clients find Kafka, and how the local stack runs its broker."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="address the local broker binds to")
    port: int = Field(9092, ge=1, le=65535, description="client (PLAINTEXT) port of the local broker")
    controller_port: int = Field(9093, ge=1, le=65535, description="KRaft controller port of the local broker")
    bootstrap_servers: str | None = Field(
        None, description="what clients connect to; defaults to host:port of the local broker"
    )
    heap: str = Field("512m", pattern=r"^\d+[kmg]$", description="broker JVM heap (-Xms and -Xmx)")
    partitions: int = Field(6, ge=1, le=1000, description="partitions of every topic the project creates")
    start_timeout_s: float = Field(120.0, gt=0, description="how long `stack up` waits for the broker")
    extra_properties: dict[str, str] = Field(
        default_factory=dict, description="additional server.properties entries for the local broker"
    )

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or f"{self.host}:{self.port}"


class RedisSettings(BaseModel):
    """Where clients find Redis, and how the local stack runs it."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(6379, ge=1, le=65535)
    db: int = Field(0, ge=0)
    username: str | None = None
    password: str | None = Field(None, repr=False)
    start_timeout_s: float = Field(30.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="REFERRALS_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    state_dir: Path = Field(
        PROJECT_ROOT / ".state",
        description="data, logs and pid files of the local stack (git-ignored)",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    event_source: str = Field(
        "referrals-cli", description="CloudEvents `source` of records this process produces"
    )

    @model_validator(mode="after")
    def _no_unknown_variables(self) -> Settings:
        """A mistyped REFERRALS_ variable is an error, not a silently ignored setting."""
        prefix = self.model_config["env_prefix"]
        for name in os.environ:
            if name.upper().startswith(prefix):
                top = name[len(prefix):].split("__", 1)[0].lower()
                if top not in type(self).model_fields:
                    raise ValueError(
                        f"unknown setting {name}; known: "
                        + ", ".join(prefix + f.upper() for f in type(self).model_fields)
                    )
        return self
