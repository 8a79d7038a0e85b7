"""``referrals erase <customer_id>``: GDPR erasure, carried out by the worker (``streams.erasure``).

1. The customer's pseudonym is noted as erased (``streams.erasure_registry``) and their
   referral codes are removed from the registry (their links lead nowhere any more).
2. ``Erase`` goes to the referrer stage (which hands it on to the customer stage once the
   customer's referrer record is adopted by the pseudonym). The worker renames the
   customer to the pseudonym in every record that mentions them, drops their e-mail hash
   and device id, deletes their own records (tombstones in the compacted changelogs) and
   their Redis views, and keeps their points and referrals under the pseudonym.
3. This command waits until the worker group has processed everything that follows from
   it (six rounds of "every input topic committed up to where it ended"; each round covers
   one step of the spread, and it takes up to six: erase, continue, the customer stage's
   erasure, the visitors and referees it tells, their re-sends, the re-sends' referrals to
   the pseudonym), removes the customer's welcome-reward hash and their story, and writes an
   audit record (pseudonym, times, what was removed: never the customer id).

If no worker runs, the erasure waits in Kafka and is carried out when one does; the audit
record then says ``pending``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from kafka import KafkaProducer

from consumers import story_store
from consumers.story_keeper import ERASED_TTL_S
from consumers.story_store import StoryKeys
from referrals.code_registry import CodeRegistry
from referrals.kafka_admin import group_positions
from referrals.privacy import pseudonym
from referrals.redis_client import redis_client
from referrals.settings import Settings
from schemas.topics import REFERRER_FACTS
from streams import erasure_registry, record_codec, redis_views
from streams.erasure import Erase
from streams.topology import input_topics


@dataclass(frozen=True, slots=True)
class ErasureResult:
    erasure_id: str
    pseudonym: str
    codes_removed: int
    status: str  # complete, pending
    audit_id: str


def _caught_up(settings: Settings, timeout_s: float) -> bool:
    """Whether the worker group committed every input partition up to its end as of now, within the time."""
    topics = input_topics(settings)
    ends = {tp: end for tp, (_, end) in group_positions(settings, settings.streams.app_id, topics).items()}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        positions = group_positions(settings, settings.streams.app_id, topics)
        if all(positions[tp][0] >= end for tp, end in ends.items()):
            return True
        time.sleep(0.5)
    return False


def _sweep_welcome(client, layout, customer_id: str, alias: str) -> None:
    """The welcome-reward hashes are written by the referrers into the referees' slots, each field by its
    reward id: the fields the erased customer's ids named are not the renamed records' any more. Remove
    the customer's own hash, and their old fields in the hashes of the customers they referred."""
    part = re.compile(r"(?<![^:])" + re.escape(customer_id) + r"(?![^:])")
    client.delete(layout.welcome(customer_id))
    referees = {json.loads(v)["referee_id"] for v in client.hvals(layout.referrals(alias))}
    for referee in sorted(referees):
        key = layout.welcome(referee)
        stale = [f for f in (x.decode() if isinstance(x, bytes) else x for x in client.hkeys(key)) if part.search(f)]
        if stale:
            client.hdel(key, *stale)


def erase(settings: Settings, customer_id: str, *, wait_s: float = 120.0, rounds: int = 6) -> ErasureResult:
    client = redis_client(settings)
    registry = CodeRegistry(client, settings.redis.key_prefix)
    key_prefix = settings.redis.key_prefix
    requested = datetime.now(UTC)
    alias = pseudonym(settings.privacy.pseudonym_key.get_secret_value(), customer_id)
    erasure_id = f"erasure-{uuid.uuid4()}"
    erasure_registry.mark(client, key_prefix, alias)
    marked = time.monotonic()
    stories = StoryKeys(key_prefix, settings.kafka.partitions)
    story_store.delete(client, stories, [customer_id])
    codes = registry.forget(customer_id)
    fact = record_codec.encode(Erase(customer_id, alias, erasure_id, requested))
    producer = KafkaProducer(**settings.kafka.client_options(), acks="all", client_id="referrals-erase")
    try:
        producer.send(settings.kafka.topic_prefix + REFERRER_FACTS.name, key=customer_id.encode(), value=fact).get(
            timeout=30)
    finally:
        producer.close()
    deadline = time.monotonic() + wait_s
    done = all(_caught_up(settings, max(0.0, deadline - time.monotonic())) for _ in range(rounds))
    layout = redis_views.active_layout(client, key_prefix, settings.kafka.partitions)
    if done:
        _sweep_welcome(client, layout, customer_id, alias)
    # the story keeper trusts its copy of the erased set for ERASED_TTL_S: a write it had under way is gone then
    time.sleep(max(0.0, ERASED_TTL_S + 0.5 - (time.monotonic() - marked)))
    story_store.delete(client, stories, [customer_id])
    status = "complete" if done else "pending"
    audit_id = erasure_registry.audit(client, key_prefix, {
        "erasure_id": erasure_id, "pseudonym": alias, "requested_at": requested.isoformat(),
        "finished_at": datetime.now(UTC).isoformat() if done else "", "status": status,
        "codes_removed": codes})
    return ErasureResult(erasure_id, alias, codes, status, audit_id)
