"""Who was erased, in Redis: pseudonyms only (``referrals erase`` writes, the worker reads).

    <key_prefix>erased            set     pseudonyms of erased customers
    <key_prefix>audit:erasures    stream  one entry per erasure: id, pseudonym, when requested and
                                          finished, what was removed (no customer id)
"""

from __future__ import annotations

from typing import Any

import redis


def erased_key(key_prefix: str) -> str:
    return f"{key_prefix}erased"


def audit_key(key_prefix: str) -> str:
    return f"{key_prefix}audit:erasures"


def pseudonyms(client: redis.Redis, key_prefix: str) -> set[str]:
    return {m.decode() if isinstance(m, bytes) else m for m in client.smembers(erased_key(key_prefix))}


def mark(client: redis.Redis, key_prefix: str, pseudonym: str) -> None:
    client.sadd(erased_key(key_prefix), pseudonym)


def audit(client: redis.Redis, key_prefix: str, entry: dict[str, Any]) -> str:
    return client.xadd(audit_key(key_prefix), {k: str(v) for k, v in entry.items()}).decode()
