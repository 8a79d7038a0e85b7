"""Which Redis view is live: the key prefix every counter reader and writer uses.

The views (``streams.redis_layout``) live under a *view prefix*. ``<key_prefix>view``
names the active one; without it the view prefix is ``key_prefix`` itself. ``referrals
rebuild`` computes a new view under ``<key_prefix>v<n>:`` and then switches this pointer,
so readers see the old view or the new one, never half of one. The worker reads the
pointer before every batch it writes, so its writes follow the switch.

Keys that are not views (referral codes, click de-duplication, dead-letter counts) stay
under ``key_prefix``.
"""

from __future__ import annotations

import re

import redis

from streams.redis_layout import RedisLayout


def pointer_key(key_prefix: str) -> str:
    return f"{key_prefix}view"


def active_prefix(client: redis.Redis, key_prefix: str) -> str:
    value = client.get(pointer_key(key_prefix))
    if value is None:
        return key_prefix
    return value.decode() if isinstance(value, bytes) else value


def active_layout(client: redis.Redis, key_prefix: str, partitions: int) -> RedisLayout:
    return RedisLayout(active_prefix(client, key_prefix), partitions)


def next_prefix(key_prefix: str, active: str) -> str:
    """The prefix of the view after ``active``: ``<key_prefix>v<n+1>:``."""
    found = re.fullmatch(re.escape(key_prefix) + r"v(\d+):", active)
    return f"{key_prefix}v{int(found.group(1)) + 1 if found else 1}:"


def switch(client: redis.Redis, key_prefix: str, prefix: str) -> None:
    client.set(pointer_key(key_prefix), prefix)
