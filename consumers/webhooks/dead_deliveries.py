"""``referrals webhooks list|replay|test``: the dead deliveries, sent again once the endpoint is fixed, and a
signed test event.

``replay`` sends one endpoint's dead deliveries again, in the order they died (so a reward's changes arrive in
their order), to the endpoint as it is configured now (its URL, its secrets), each with its own ``webhook-id``
and body. One that is delivered is noted as replayed (a second replay skips it, unless ``again``) and no longer
holds back its reward's later changes; one that fails again stays dead, and the later dead changes of the same
reward wait behind it (``waiting``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from consumers import kafka_log
from consumers.webhooks import http_post
from consumers.webhooks.retry import cause_of
from consumers.webhooks.store import dead_key, replayed_key
from referrals.settings import Settings, WebhookEndpoint
from schemas.topics import WEBHOOK_DEADLETTER
from schemas.webhooks import DeadDelivery, probe_change

# one dead change of an ordering key replayed: the count goes down; at 0 the key is free (atomic: the dispatcher
# may count another one at the same moment)
_RELEASE = """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
"""


@dataclass(frozen=True, slots=True)
class Dead:
    id: str  # "<partition>:<offset>" in the dead-letter topic
    delivery: DeadDelivery


def read_dead(settings: Settings, endpoint: str | None = None) -> list[Dead]:
    topic = settings.kafka.topic_prefix + WEBHOOK_DEADLETTER.name
    until = kafka_log.end_offsets(settings, [topic])
    found = [Dead(f"{r.partition}:{r.offset}", DeadDelivery.model_validate_json(r.value))
             for r in kafka_log.read(settings, until)]
    # one endpoint's dead deliveries are in one partition (keyed by the endpoint), in the order they died
    return [d for d in found if endpoint is None or d.delivery.endpoint == endpoint]


def replayed_ids(settings: Settings, client: redis.Redis, endpoint: str) -> set[str]:
    return {m.decode() if isinstance(m, bytes) else m
            for m in client.smembers(replayed_key(settings.redis.key_prefix, endpoint))}


@dataclass(frozen=True, slots=True)
class Outcome:
    id: str
    result: str  # delivered, failed, waiting, skipped
    detail: str


async def _replay(settings: Settings, endpoint: WebhookEndpoint, client: redis.Redis, again: bool) -> list[Outcome]:
    prefix = settings.redis.key_prefix
    done = replayed_ids(settings, client, endpoint.name)
    release = client.register_script(_RELEASE)
    blocked: set[str] = set()
    outcomes = []
    async with http_post.client(settings.webhooks.timeout_s) as http:
        for dead in read_dead(settings, endpoint.name):
            d = dead.delivery
            if dead.id in done and not again:
                outcomes.append(Outcome(dead.id, "skipped", "replayed before (use --again to send it anyway)"))
                continue
            if d.ordering_key in blocked:
                outcomes.append(Outcome(dead.id, "waiting", "an earlier change of the same reward failed again"))
                continue
            answer = await http_post.post(http, endpoint.url, endpoint.keys(), d.change())
            if answer.status is not None and 200 <= answer.status < 300:
                if dead.id not in done:
                    client.sadd(replayed_key(prefix, endpoint.name), dead.id)
                    release(keys=[dead_key(prefix, endpoint.name)], args=[d.ordering_key])
                outcomes.append(Outcome(dead.id, "delivered", f"{d.event_type} {d.webhook_id}: {answer.status}"))
            else:
                blocked.add(d.ordering_key)
                outcomes.append(Outcome(dead.id, "failed", f"{d.event_type} {d.webhook_id}: {cause_of(answer)}"))
    return outcomes


def replay(settings: Settings, endpoint: WebhookEndpoint, client: redis.Redis, *, again: bool = False) -> list[Outcome]:
    return asyncio.run(_replay(settings, endpoint, client, again))


@dataclass(frozen=True, slots=True)
class Probe:
    webhook_id: str
    status: int | None
    detail: str
    seconds: float


def send_test(settings: Settings, endpoint: WebhookEndpoint) -> Probe:
    """A signed ``webhook.test`` event to ``endpoint``, whatever it subscribed to."""
    change = probe_change(f"test:{uuid.uuid4()}", datetime.now(UTC), endpoint.name)

    async def send() -> Probe:
        async with http_post.client(settings.webhooks.timeout_s) as http:
            started = time.perf_counter()
            answer = await http_post.post(http, endpoint.url, endpoint.keys(), change)
            took = time.perf_counter() - started
        detail = cause_of(answer) + (f": {answer.excerpt[:200]}" if answer.excerpt else "")
        return Probe(change.webhook_id, answer.status, detail, took)

    return asyncio.run(send())
