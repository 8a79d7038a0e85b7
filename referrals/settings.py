"""The one typed place for configuration.

Every process (CLI, stack, gateway, worker, exporter) builds one ``Settings`` at
start-up and hands it down; nothing below reads ``os.environ`` itself.

Environment variables use the prefix ``REFERRALS_`` and ``__`` for nesting, e.g.
``REFERRALS_KAFKA__PORT=9094`` or ``REFERRALS_REDIS__PORT=6390``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import ssl
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
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
    brokers: int = Field(1, ge=1, le=5, description="nodes of the local stack, each a KRaft broker and controller "
                         "(`stack up --brokers 3`): node n listens on port + 2(n - 1) and controller_port + 2(n - 1); "
                         "clients bootstrap from every node (docs/reliability.md, three brokers)")
    replication_factor: int | None = Field(None, ge=1, description="replicas of every topic the project and the "
                                           "worker create; default: 3 with three brokers or more, else 1")
    min_insync_replicas: int | None = Field(None, ge=1, description="min.insync.replicas of those topics (and the "
                                            "local brokers' default); default: the replication factor - 1, at "
                                            "least 1")
    partitions: int = Field(6, ge=1, le=1000, description="partitions of every topic the project creates")
    start_timeout_s: float = Field(120.0, gt=0, description="how long `stack up` waits for the broker")
    extra_properties: dict[str, str] = Field(
        default_factory=dict, description="additional server.properties entries for the local broker"
    )
    topic_prefix: str = Field(
        "", pattern=r"^[A-Za-z0-9._-]*$",
        description="prepended to every topic name (isolates tests or tenants; empty in production)",
    )
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = Field(
        "PLAINTEXT", description="how clients reach Kafka: SASL_SSL (SCRAM over TLS) in production; the local "
        "stack runs PLAINTEXT, SASL_PLAINTEXT or SSL (with a CA of its own: docs/configuration.md, TLS)",
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="with SASL_*: how the Kafka user authenticates")
    sasl_username: str | None = Field(None, description="with SASL_*: the Kafka user")
    sasl_password: SecretStr | None = Field(None, description="with SASL_*: its password (from the environment)")
    ssl_cafile: Path | None = Field(None, description="with SSL/SASL_SSL: the CA bundle (default: the system's)")
    ssl_certfile: Path | None = Field(None, description="with SSL: a client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(None, description="with SSL: the client certificate's key")

    @model_validator(mode="after")
    def _credentials_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username and sasl_password")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        return self

    @model_validator(mode="after")
    def _replicas_fit(self) -> KafkaSettings:
        if self.min_isr > self.replicas:
            raise ValueError(f"min_insync_replicas {self.min_isr} is more than the replication factor {self.replicas}")
        if self.bootstrap_servers is None and self.replicas > self.brokers:
            raise ValueError(f"replication_factor {self.replicas} needs as many brokers; the local stack has "
                             f"{self.brokers} (kafka.brokers)")
        ports = [p for n in range(1, self.brokers + 1) for p in self.node_ports(n)]
        if self.brokers > 1 and len(set(ports)) != len(ports):
            raise ValueError(f"the nodes' ports overlap ({sorted(ports)}): node n uses port + 2(n - 1) and "
                             "controller_port + 2(n - 1); pick ports further apart")
        return self

    @property
    def replicas(self) -> int:
        """The replication factor of the topics the project creates."""
        return self.replication_factor or (3 if self.brokers >= 3 else 1)

    @property
    def min_isr(self) -> int:
        """Their min.insync.replicas: a write is acknowledged once this many replicas have it (acks=all)."""
        return self.min_insync_replicas or max(1, self.replicas - 1)

    def node_ports(self, node: int) -> tuple[int, int]:
        """(client port, controller port) of the local stack's node ``node`` (1-based)."""
        return self.port + 2 * (node - 1), self.controller_port + 2 * (node - 1)

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or ",".join(
            f"{self.host}:{self.node_ports(n)[0]}" for n in range(1, self.brokers + 1))

    def ssl_context(self) -> ssl.SSLContext | None:
        """With SSL or SASL_SSL: the TLS context of the asyncio clients (aiokafka: the worker, the gateway)."""
        if not self.security_protocol.endswith("SSL"):
            return None
        context = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        if self.ssl_certfile is not None:
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile))
        return context

    def aiokafka_options(self) -> dict[str, object]:
        """aiokafka's connection arguments (the gateway's producer): the same settings as ``client_options``."""
        options: dict[str, object] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol,
                                      "ssl_context": self.ssl_context()}
        if self.security_protocol.startswith("SASL_"):
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password.get_secret_value())
        return options

    def java_client_properties(self) -> list[str]:
        """The same connection settings as ``key=value`` properties of a Java client (Kafka's own tools)."""
        props = [f"security.protocol={self.security_protocol}"]
        if self.security_protocol.endswith("SSL") and self.ssl_cafile is not None:
            props += ["ssl.truststore.type=PEM", f"ssl.truststore.location={self.ssl_cafile}"]
        if self.security_protocol.startswith("SASL_"):
            module = ("scram.ScramLoginModule" if self.sasl_mechanism.startswith("SCRAM-")
                      else "plain.PlainLoginModule")
            props += [f"sasl.mechanism={self.sasl_mechanism}",
                      f"sasl.jaas.config=org.apache.kafka.common.security.{module} required "
                      f'username="{self.sasl_username}" password="{self.sasl_password.get_secret_value()}";']
        return props

    def client_options(self) -> dict[str, object]:
        """kafka-python's connection arguments (every producer, consumer and admin client of the project)."""
        options: dict[str, object] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL_"):
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password.get_secret_value())
        if self.security_protocol.endswith("SSL"):
            options.update(ssl_check_hostname=True, ssl_cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                           ssl_certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                           ssl_keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None)
        return options


class RedisSettings(BaseModel):
    """Where clients find Redis, and how the local stack runs it."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="where Redis listens (the local stack binds to it)")
    port: int = Field(6379, ge=1, le=65535, description="Redis' port; if another Redis uses it, `stack up` says "
                      "so (with the owning process): pick another")
    db: int = Field(0, ge=0, description="the Redis database number")
    username: str | None = Field(None, description="an ACL user (the local stack creates it and turns Redis' "
                                 "default user off; a password alone sets requirepass)")
    password: SecretStr | None = Field(None, description="with an ACL user or requirepass: its password (from the "
                                       "environment)")
    start_timeout_s: float = Field(30.0, gt=0, description="how long `stack up` waits for Redis")
    key_prefix: str = Field(
        "rp:", pattern=r"^[A-Za-z0-9._:-]*$", description="prepended to every key the pipeline writes"
    )


EventType = Literal["share", "click", "signup", "order", "refund"]
PUBLISHABLE_TYPES = frozenset({"share", "click", "signup"})  # what a key inside an app or a page may send
ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")  # a web origin as browsers send it


class ApiKey(BaseModel):
    """A client of the gateway: a name for logs and limits, the secret key, and what it may do: send
    events of ``types``, (``read``) use the read API, (``fulfil``) confirm rewards' fulfilment."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    key: SecretStr = Field(min_length=16)
    types: frozenset[EventType] = Field(default_factory=frozenset, description="event types it may send")
    read: bool = Field(False, description="may read referrers, funnels and leaderboards (GET /v1/...)")
    fulfil: bool = Field(False, description="may confirm rewards' fulfilment (POST /v1/rewards/{id}/fulfilment)")
    publishable: bool = Field(False, description="compiled into an app or a web page, so public: it may send "
                              "share, click and signup events only, shares and signups with a customer token "
                              "(docs/security.md); a signup it sends is a claim the shop's server confirms")
    token_secret: SecretStr | None = Field(None, min_length=32, description="a publishable key's: the secret the "
                                           "shop's backend issues customer tokens with; never in the app")
    origins: list[str] = Field(default_factory=list, description="a publishable key's: the web origins "
                               "(scheme://host[:port]) pages may use it from; none: apps only, no browser")

    @model_validator(mode="after")
    def _may_do_something(self) -> ApiKey:
        if not self.types and not self.read and not self.fulfil:
            raise ValueError(f"API key {self.name!r} may do nothing: give it event types, read: true, fulfil: true, "
                             "or several")
        if not self.publishable:
            if self.token_secret is not None or self.origins:
                raise ValueError(f"API key {self.name!r}: token_secret and origins are for publishable keys only")
            return self
        if self.read or self.fulfil or not self.types <= PUBLISHABLE_TYPES:
            raise ValueError(f"publishable key {self.name!r} may send share, click and signup events only; "
                             "reading and fulfilment need a secret key")
        if self.token_secret is None:
            raise ValueError(f"publishable key {self.name!r} needs a token_secret (the shop's backend issues "
                             "customer tokens with it)")
        for origin in self.origins:
            if not ORIGIN.fullmatch(origin):
                raise ValueError(f"publishable key {self.name!r}: {origin!r} is not an origin like "
                                 "https://shop.example.com (scheme, host, port; no path, no trailing slash)")
        return self


class WebhookSecret(BaseModel):
    """A shop that signs its webhooks (X-Signature) with a shared secret instead of sending a key."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    secret: SecretStr = Field(min_length=16)
    types: frozenset[EventType] = Field(min_length=1)


class GatewaySettings(BaseModel):
    """The HTTP ingest gateway and referral-link redirector (`referrals api`)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="address the gateway (`referrals api`) listens on")
    port: int = Field(8080, ge=1, le=65535, description="its port")
    public_url: str = Field("http://127.0.0.1:8080", description="base of share URLs (…/r/<code>)")
    api_keys: list[ApiKey] = Field(default_factory=list, description="the gateway's clients, a JSON list of "
                                   '{"name", "key", "types", "read", "fulfil"}, publishable ones with "publishable", '
                                   '"token_secret", "origins" (docs/security.md)')
    webhook_secrets: list[WebhookSecret] = Field(
        default_factory=list, description='shops that sign their webhooks, a JSON list of {"name", "secret", '
        '"types"} (docs/events.md, the gateway)')
    rate_limit_per_s: float = Field(200.0, gt=0, description="sustained requests per second per key, across "
                                    "every gateway process (docs/events.md, rate limits)")
    rate_limit_burst: int = Field(400, ge=1, description="requests a key may send at once, across every gateway "
                                  "process")
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="largest request body; a larger one is 413")
    max_batch: int = Field(500, ge=1, description="most events in one request; more is a 422 (batch_too_large)")
    kafka_timeout_s: float = Field(5.0, gt=0, description="longest wait for Kafka's acks before 503")
    retry_after_s: int = Field(5, ge=1, description="Retry-After sent with 503")
    signature_tolerance_s: int = Field(300, ge=1, description="oldest accepted X-Signature timestamp")
    default_landing_url: str = Field("https://shop.example.com/", description="where a referral link leads when "
                                     "its campaign has no landing URL")
    landing_urls: dict[str, str] = Field(default_factory=dict, description="campaign_id -> landing URL")
    click_dedup_window_s: int = Field(1800, ge=1, description="a reload within this window is not a new click")
    visitor_cookie: str = Field("rp_vid", description="name of the cookie that carries the visitor id")
    cookie_secure: bool = Field(False, description="mark the visitor cookie Secure (behind HTTPS)")
    public_docs: bool = Field(True, description="serve the API's description (/openapi.json, /docs, /redoc) "
                              "without a key (it holds no data); false: not at all")
    metrics_host: str = Field("127.0.0.1", description="address of the gateway's Prometheus endpoint")
    metrics_port: int = Field(9109, ge=0, le=65535, description="port of /metrics (requests, latency); 0: off")
    processes: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, le=256,
        description="how many processes `referrals api` serves with (default: the machine's cores); with more "
        "than one, /metrics adds up every process's figures and the rate limits are shared through Redis",
    )
    token_rate_limit_per_s: float = Field(1.0, gt=0, description="sustained requests per second per customer "
                                          "token (publishable keys), across every gateway process")
    token_rate_limit_burst: int = Field(20, ge=1, description="requests one customer token may send at once")
    token_max_ttl_s: int = Field(86400, ge=60, description="a customer token expiring further ahead than this "
                                 "is refused (a leaked token is useful for at most this long)")
    rate_limit_timeout_s: float = Field(
        0.25, gt=0, description="longest wait for Redis to take a rate limit's tokens; then this process limits "
        "by itself (its share of the rate) for a second",
    )

    @property
    def browser_origins(self) -> frozenset[str]:
        """The web origins browsers may call the gateway from (CORS): every publishable key's."""
        return frozenset(o for k in self.api_keys if k.publishable for o in k.origins)


class StreamSettings(BaseModel):
    """The stream worker (``referrals worker``): its Kafka group, campaigns and clock, its batches and timeouts,
    the bounds of its records and how many it keeps in memory."""

    model_config = ConfigDict(extra="forbid")

    app_id: str = Field(
        "referral-pipeline", pattern=r"^[A-Za-z0-9._-]+$",
        description="Faust app id: the consumer group and the prefix of the worker's changelog topics",
    )
    campaigns_file: Path = Field(
        PROJECT_ROOT / "deploy" / "campaigns" / "example.toml", description="the campaigns (TOML or YAML)"
    )
    tick_interval_s: float = Field(
        5.0, ge=0, description="how often the worker's clock ticks (ends hold periods); 0: no clock"
    )
    batch_size: int = Field(500, ge=1, description="most events a stage processes (and writes to Redis) at once")
    batch_wait_s: float = Field(0.01, gt=0, description="longest wait to fill a batch (measured: 10 ms gives the best freshness, see docs/performance.md)")
    fetch_bytes_per_partition: int = Field(
        256 * 1024, ge=1024, description="most bytes one fetch from Kafka brings of one input partition (Faust's "
        "consumer_max_fetch_size, 1 MiB by default): what the worker reads ahead of its batches. Working off a "
        "backlog, Faust's 1 MiB let up to 48 MiB of fetched records (and their objects) wait in memory across the "
        "worker's 48 input partitions, and the process kept that peak; 256 KiB measured 46-57 MiB less peak RSS "
        "on the 1M-event bench at about the same throughput (docs/performance.md). A record bigger than this still "
        "comes (Kafka returns at least one batch). The same consumer reads the tables' changelogs when the worker "
        "recovers them: the recovery of the 1M-event bench's state took 358 s with 256 KiB, 305 s with 1 MiB (docs/"
        "performance.md, restarts on a large state)",
    )
    stream_buffer: int = Field(
        4096, ge=1, description="most records Faust keeps read ahead per stream (its stream_buffer_maxsize, "
        "4096 by default); 1,024 together with 128 KiB fetches measured 15 % slower (docs/performance.md)",
    )
    commit_interval_s: float = Field(1.0, gt=0, description="how often processed input offsets are committed")
    session_timeout_s: float = Field(
        10.0, ge=6, description="a worker silent this long (killed, hung) loses its partitions to the others"
    )
    kafka_timeout_s: float = Field(
        30.0, gt=0, description="longest wait for Kafka to take a batch's outputs; then the worker stops (exit 70) "
        "and, restarted, processes the batch again",
    )
    stall_timeout_s: float = Field(
        60.0, ge=0, description="records waiting and no offset committed for this long: the worker stops "
        "(exit 70) to be restarted; 0: no watchdog",
    )
    metrics_host: str = Field("127.0.0.1", description="address of the worker's Prometheus endpoint")
    metrics_port: int = Field(
        9110, ge=0, le=65535, description="port of the worker's /metrics (events per agent, batch time, "
        "freshness); 0: off. Give every worker on one host its own"
    )
    dedup_horizon_days: int = Field(
        60, ge=1, description="how long a referrer's record keeps the ids of the shares and clicks it counted, in "
        "days of event time behind the newest one: within it every event counts once however often it comes; "
        "an older one is not counted (worker metric referral_worker_dropped, beyond_dedup_horizon)",
    )
    recent_activity_days: int = Field(
        7, ge=0, description="days of a referrer's shares and clicks (their counts per funnel cell) kept in its "
        "record, back from the newest day it counted, with `records_on_disk`; the counts of older days wait in the "
        "part store, one entry per day, until a late share or click, the dedup floor passing them or a complete "
        "snapshot reads them (streams.referrer_parts.archive_before); 0: every day in the record",
    )
    visitor_fact_cap: int = Field(
        300, ge=1, description="most clicks and signups one visitor's record keeps; later ones are not taken (no "
        "candidate, no click counted; worker metric referral_worker_dropped, visitor_fact_cap): a bot replaying one "
        "cookie cannot grow a record past Kafka's message size",
    )
    customer_orders_kept: int = Field(
        50, ge=1, description="a customer's first orders by event time that their record keeps: a referral "
        "qualifies with one of them or not at all; later orders are not taken (worker metric "
        "referral_worker_dropped, customer_fact_cap). Signups (10), refunds per order (5) and refunds waiting for "
        "their order (20) are kept the same way (streams.referee_ledger.Limits)",
    )
    cython_optimizations: bool = Field(
        False, description="faust-streaming's opt-in repaired Cython fast paths (its stream iterator and "
        "conductor); measured in `make bench` (docs/performance.md)",
    )
    gc_freeze: bool = Field(
        False, description="move the objects alive after the tables' recovery out of the garbage collector's "
        "reach (gc.freeze), so that full collections do not walk the recovered state; measured in `make bench`",
    )
    gc_freeze_survivors: bool = Field(
        True, description="after every full garbage collection, move the objects that survived it out of the "
        "collector's reach (gc.freeze) at the end of the batch: a full collection then walks what came since the "
        "last one, not the whole state (it held the event loop for seconds with a large state); cyclic garbage "
        "among frozen objects is never collected; measured better in `make bench` (docs/performance.md): on",
    )
    trim_after_gc: bool = Field(
        True, description="after every full garbage collection, at the end of the batch, give the memory the "
        "process freed back to the system (glibc's malloc_trim; nothing where the C library has none): the "
        "allocator otherwise keeps about half of a long-running worker's heap free; measured in `make bench` "
        "(docs/performance.md): on",
    )
    records_on_disk: bool = Field(
        True, description="keep the tables' records on local disk (RocksDB, scratch: rebuilt from the changelogs "
        "at every start), all but the `records_cached` most recently used of each table, so that the worker's "
        "memory does not grow with the number of keys (streams.record_store); off: every record in memory, as "
        "Faust's memory store keeps them; measured in `make bench` (docs/performance.md)",
    )
    records_cached: int = Field(
        20_000, ge=1, description="referrer records kept as objects when `records_on_disk` is on: the working set "
        "(the referrers of recent events) should fit; a record read back from disk costs its decoding and the "
        "rebuilding of its indexes, and every share, click and referral of the referrer reads it",
    )
    customer_records_cached: int = Field(
        5_000, ge=1, description="customer records kept as objects when `records_on_disk` is on: each is read only "
        "by that customer's own signups, orders and refunds, and read back from disk cheaply (no indexes to "
        "rebuild); measured in `make bench` (docs/performance.md)",
    )
    visitor_records_cached: int = Field(
        5_000, ge=1, description="visitor records kept as objects when `records_on_disk` is on: each is read only "
        "by that visitor's clicks and signups (as the customer records are)",
    )
    fault_kill_rate: float = Field(
        0.0, ge=0, le=1,
        description="fault injection for tests: the chance that the worker SIGKILLs itself at a batch's worst "
        "moments (outputs half sent; outputs acknowledged but Redis not written). Never set it in production",
    )


class ExporterSettings(BaseModel):
    """``referrals exporter``: the pipeline's global state (Redis, Kafka) for Prometheus."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="address of the exporter's /metrics")
    port: int = Field(9108, ge=1, le=65535, description="port of the exporter's /metrics")
    redis_timeout_s: float = Field(5.0, gt=0, description="a scrape gives up on Redis after this long")


WebhookType = Literal["reward.pending", "reward.confirmed", "reward.revoked", "reward.capped",
                      "reward.held_for_review", "referral.attributed"]


def _webhook_secret_bytes(secret: str) -> bytes:
    """The key of a Standard Webhooks secret: ``whsec_`` and 24 to 64 bytes in base64."""
    if not secret.startswith("whsec_"):
        raise ValueError("a webhook secret has the form whsec_<base64>")
    try:
        key = base64.b64decode(secret[len("whsec_"):], validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret's part after whsec_ is not base64") from exc
    if not 24 <= len(key) <= 64:
        raise ValueError(f"a webhook secret holds 24 to 64 bytes, this one {len(key)}")
    return key


class WebhookEndpoint(BaseModel):
    """A receiver of the shop: where the dispatcher POSTs the changes it subscribed to, signed with ``secret``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$",
                      description="names the endpoint in metrics, logs, dead deliveries and its consumer group")
    url: str = Field(pattern=r"^https?://[^\s]+$", description="where the changes are POSTed")
    secret: list[SecretStr] = Field(min_length=1, description="whsec_<base64> (Standard Webhooks); several "
                                    "while one is rotated: every one signs, the receiver accepts any")
    types: frozenset[WebhookType] = Field(min_length=1, description="the changes it receives")
    campaigns: frozenset[str] | None = Field(None, description="only these campaigns' changes (default: all)")

    @field_validator("secret", mode="before")
    @classmethod
    def _one_or_several(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | SecretStr) else value

    @field_validator("secret")
    @classmethod
    def _standard_webhooks_form(cls, secrets: list[SecretStr]) -> list[SecretStr]:
        for secret in secrets:
            _webhook_secret_bytes(secret.get_secret_value())
        return secrets

    def keys(self) -> list[bytes]:
        """The HMAC keys of its secrets, in the order given."""
        return [_webhook_secret_bytes(s.get_secret_value()) for s in self.secret]

    def revealed(self) -> dict[str, Any]:
        """The endpoint as its configuration is written, secrets included (for a child process's environment)."""
        return {"name": self.name, "url": self.url, "secret": [s.get_secret_value() for s in self.secret],
                "types": sorted(self.types), "campaigns": sorted(self.campaigns) if self.campaigns else None}


class WebhookSettings(BaseModel):
    """Outbound webhooks (``referrals dispatcher``): the shop's endpoints, and how deliveries are retried."""

    model_config = ConfigDict(extra="forbid")

    endpoints: list[WebhookEndpoint] = Field(
        default_factory=list, description='the receivers, a JSON list of {"name", "url", "secret", "types", '
        '"campaigns"} (docs/webhooks.md)')
    retry_for_s: float = Field(86400.0, gt=0, description="how long a failing delivery is retried, from its first "
                               "attempt; then it is a dead delivery")
    timeout_s: float = Field(10.0, gt=0, description="longest wait for an endpoint's answer; then the attempt "
                             "counts as failed and is retried")
    backoff_first_s: float = Field(5.0, gt=0, description="the wait after a first failed attempt; it doubles with "
                                   "every further one (with jitter)")
    backoff_max_s: float = Field(3600.0, gt=0, description="the longest wait between two attempts, a Retry-After "
                                 "included")
    lane_buffer: int = Field(200, ge=1, description="changes read ahead per endpoint and partition; the partition "
                             "is paused while that many wait")
    lane_retrying: int = Field(10, ge=0, description="rewards being retried at once per endpoint and partition, "
                               "each on its own schedule while the partition's other changes go on; with this many, "
                               "the next change that fails is retried in line and holds the partition (so a dead "
                               "endpoint gets at most partitions x (this + 1) retries at a time). 0: every change "
                               "being retried holds its partition")
    metrics_host: str = Field("127.0.0.1", description="address of the dispatcher's Prometheus endpoint")
    metrics_port: int = Field(9111, ge=0, le=65535, description="port of the dispatcher's /metrics; 0: off")

    @model_validator(mode="after")
    def _names_unique(self) -> WebhookSettings:
        names = [e.name for e in self.endpoints]
        if len(names) != len(set(names)):
            raise ValueError(f"webhook endpoint names must be unique: {sorted(names)}")
        return self

    def endpoint(self, name: str) -> WebhookEndpoint:
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        known = ", ".join(e.name for e in self.endpoints) or "none configured"
        raise KeyError(f"no webhook endpoint {name!r} (known: {known})")


class PrivacySettings(BaseModel):
    """How personal data is kept out of views and answers."""

    model_config = ConfigDict(extra="forbid")

    pseudonym_key: SecretStr = Field(
        SecretStr("local-development-pseudonym-key-change-me"), min_length=16,
        description="HMAC key of the pseudonymous ids the read API shows for other customers and erasure keeps; "
        "set your own in production (changing it changes every pseudonym)",
    )


class StorySettings(BaseModel):
    """A customer's referral story (``consumers.story_store``): kept by ``referrals dispatcher``, read by the read
    API and ``referrals explain``."""

    max_steps: int = Field(1000, ge=10, le=100_000, description="steps a customer's story keeps, the newest by "
                           "event time; older ones are folded into counts (docs/operations.md, the story)")


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
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    streams: StreamSettings = Field(default_factory=StreamSettings)
    exporter: ExporterSettings = Field(default_factory=ExporterSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    story: StorySettings = Field(default_factory=StorySettings)
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


Model = TypeVar("Model", bound=BaseModel)


def changed(model: Model, **changes: Any) -> Model:
    """A copy of ``model`` (``Settings`` or one of its sections) with ``changes``, validated as a new one is
    (pydantic's ``model_copy(update=...)`` does not validate). A section's changes may be given as a dict:
    ``changed(settings, kafka={"topic_prefix": "t."}, state_dir=path)`` keeps the section's other values."""
    return type(model).model_validate(_merged(model.model_dump(), changes, type(model)))


def _merged(values: dict[str, Any], changes: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    for name, change in changes.items():  # an unknown name stays in: validation refuses it (extra="forbid")
        field = model.model_fields.get(name)
        section = field.annotation if field else None
        if isinstance(change, dict) and isinstance(section, type) and issubclass(section, BaseModel):
            change = _merged(values[name], change, section)
        values[name] = change
    return values


def worker_environment(settings: Settings,
                       sections: tuple[str, ...] = ("kafka", "redis", "streams")) -> dict[str, str]:
    """The variables that make a `referrals worker` child process run with ``settings``: how it reaches Kafka
    and Redis (with credentials), its topics, keys and state folder, and every stream setting (for the tests'
    and the benchmark's own workers); ``sections`` names the settings' sections to pass on (the dispatcher adds
    ``webhooks``, its endpoints' secrets included)."""
    env = {"REFERRALS_STATE_DIR": str(settings.state_dir)}
    for section in sections:
        model = getattr(settings, section)
        dumped = model.model_dump(mode="json")
        for name, value in model:
            if value is None:
                continue
            if name == "endpoints" and isinstance(model, WebhookSettings):
                text = json.dumps([endpoint.revealed() for endpoint in value])
            elif isinstance(value, SecretStr):
                text = value.get_secret_value()
            elif isinstance(value, dict | list | bool):
                text = json.dumps(dumped[name])
            else:
                text = str(value)
            env[f"REFERRALS_{section.upper()}__{name.upper()}"] = text
    return env
