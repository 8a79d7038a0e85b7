"""A token bucket per client name. Pure: the caller passes the time.

Limits are per gateway process; with several gateway processes behind a balancer, each
allows the configured rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int):
        self.rate = rate_per_s
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, name: str, now: float) -> tuple[bool, int]:
        """(allowed, seconds to wait before retrying)."""
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True, 0
        return False, max(1, math.ceil((1 - bucket.tokens) / self.rate))
