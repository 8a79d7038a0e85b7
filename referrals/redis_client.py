"""The one place a Redis client is built from ``Settings`` (address, database, ACL credentials)."""

from __future__ import annotations

import redis

from referrals.settings import Settings


def redis_client(settings: Settings, timeout_s: float = 2.0, decode_responses: bool = False) -> redis.Redis:
    """``decode_responses``: answers as ``str`` instead of ``bytes``."""
    cfg = settings.redis
    password = cfg.password.get_secret_value() if cfg.password else None
    return redis.Redis(host=cfg.host, port=cfg.port, db=cfg.db, username=cfg.username, password=password,
                       socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=decode_responses)
