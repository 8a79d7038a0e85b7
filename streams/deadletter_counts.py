"""Dead letters counted in Redis, once per source record, however often a record is delivered.

    <key_prefix>{dl}:index                 set  "<source topic>\t<reason>" of every count below
    <key_prefix>{dl}:<source topic>:<reason>  set  "<partition>:<offset>" of each dead letter

A record delivered again (at least once) adds the same member: counted once. The exporter
reads the index and the sets' sizes (``referral_deadletter_total``); the records themselves
are in the dead-letter topic (``referrals deadletter list``).
"""

from __future__ import annotations

from collections.abc import Iterable

import redis


def index_key(key_prefix: str) -> str:
    return f"{key_prefix}{{dl}}:index"


def count_key(key_prefix: str, topic: str, reason: str) -> str:
    return f"{key_prefix}{{dl}}:{topic}:{reason}"


def record(client: redis.Redis, key_prefix: str, letters: Iterable[tuple[str, str, int, int]]) -> None:
    """Count dead letters given as (source topic, reason, partition, offset); one transaction."""
    pipe = client.pipeline(transaction=True)
    for topic, reason, partition, offset in letters:
        pipe.sadd(index_key(key_prefix), f"{topic}\t{reason}")
        pipe.sadd(count_key(key_prefix, topic, reason), f"{partition}:{offset}")
    pipe.execute()


def counts(client: redis.Redis, key_prefix: str) -> dict[tuple[str, str], int]:
    """(source topic, reason) -> dead letters."""
    entries = sorted(m.decode() if isinstance(m, bytes) else m for m in client.smembers(index_key(key_prefix)))
    pipe = client.pipeline(transaction=False)
    pairs = [tuple(e.split("\t", 1)) for e in entries]
    for topic, reason in pairs:
        pipe.scard(count_key(key_prefix, topic, reason))
    return {(topic, reason): int(n) for (topic, reason), n in zip(pairs, pipe.execute(), strict=True)}
