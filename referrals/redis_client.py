"""The one place a Redis client is built from ``Settings`` (address, database, ACL credentials)."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

from referrals.settings import Settings


def _options(settings: Settings, timeout_s: float, decode_responses: bool) -> dict[str, Any]:
    cfg = settings.redis
    password = cfg.password.get_secret_value() if cfg.password else None
    return {"host": cfg.host, "port": cfg.port, "db": cfg.db, "username": cfg.username, "password": password,
            "socket_timeout": timeout_s, "socket_connect_timeout": timeout_s, "decode_responses": decode_responses}


def redis_client(settings: Settings, timeout_s: float = 2.0, decode_responses: bool = False) -> redis.Redis:
    """``decode_responses``: answers as ``str`` instead of ``bytes``."""
    return redis.Redis(**_options(settings, timeout_s, decode_responses))


def async_redis_client(settings: Settings, timeout_s: float = 2.0, decode_responses: bool = False,
                       max_connections: int | None = None) -> aioredis.Redis:
    """The same, for an event loop (the gateway's rate limits). ``max_connections``: at most that many, and a
    command waits (up to ``timeout_s``) for a free one rather than failing (the webhook dispatcher's many tasks);
    default: redis-py's pool, which fails past its 100."""
    if max_connections is None:
        return aioredis.Redis(**_options(settings, timeout_s, decode_responses))
    options = _options(settings, timeout_s, decode_responses)
    pool = aioredis.BlockingConnectionPool(max_connections=max_connections, timeout=timeout_s, **options)
    return aioredis.Redis(connection_pool=pool)


def delete_matching(client: redis.Redis, pattern: str, batch: int = 1000) -> int:
    """Delete every key matching ``pattern`` (SCAN, then DEL in batches: no blocking KEYS); how many went."""
    deleted = 0
    keys: list = []
    for key in client.scan_iter(match=pattern, count=batch):
        keys.append(key)
        if len(keys) >= batch:
            deleted += int(client.delete(*keys))
            keys = []
    return deleted + (int(client.delete(*keys)) if keys else 0)
