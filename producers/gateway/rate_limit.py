"""Rate limits per client name: a token bucket per name in Redis, shared by every gateway process.

``RateLimiter`` is the bucket itself, pure (the caller passes the time). ``SharedRateLimiter`` keeps the
bucket in Redis (one hash per client name, ``<prefix>ratelimit:<name>``, expiring once full again; a Lua
script refills and takes atomically, on Redis' clock), so a key's limit holds however many gateway
processes serve it. Each process takes tokens in small leases (``lease``: at most a tenth of a second's
rate, at most a quarter of the burst shared out over the processes) and spends them locally, so most
requests cost no round trip; a lease's unspent tokens lapse after ``LEASE_S``, so a process never holds
back more than one lease per key. A process asks for one lease per key at a time: the requests that find
the lease spent while it asks wait for that answer instead of each taking a lease (which would drain the
shared bucket at every lease's end and refuse requests well under the limit). A refusal is remembered for
the time the next token takes (at most a second), so a client over its limit costs no round trip per
request either. Tokens are only ever taken from the shared bucket: together the processes never allow
more than the configured rate and burst. A process's leases and refusals lapse within a second; the lapsed
ones are dropped now and then (``_Pruned``), so its memory holds about the names of the last second, not
every name it ever saw (a customer token's bucket is one name per customer: ``producers.gateway.browsers``).

While Redis is unreachable each process limits by itself, at its share of the rate and burst (rate and
burst divided by the number of processes), and asks Redis again after ``RETRY_REDIS_S``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis

log = logging.getLogger(__name__)

LEASE_S = 1.0
RETRY_REDIS_S = 1.0

# KEYS[1] the bucket; ARGV rate, burst, tokens wanted. Returns {tokens granted, seconds to wait if none}.
_TAKE = """
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(bucket[1]) or burst, tonumber(bucket[2]) or now
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
  at = now
end
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
local wait = 0
if granted == 0 then wait = math.ceil((1 - tokens) / rate) end
return {granted, wait}
"""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


PRUNE_AT = 4096  # a map of names is pruned when it holds this many (or twice as many as after the last pruning)


class _Pruned:
    """When to prune a map of names (a key's, or a customer token's: one per customer) so that it holds about
    the names seen recently, not every name ever seen: at ``PRUNE_AT`` entries, then at twice what the last
    pruning kept. Pruning costs one pass, and at least as many entries were added since: amortised O(1)."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = PRUNE_AT

    def due(self, size: int) -> bool:
        return size >= self.at

    def done(self, kept: int) -> None:
        self.at = max(PRUNE_AT, 2 * kept)


class RateLimiter:
    """A token bucket per client name, in this process. A bucket full again is the same as none, so the ones
    that refilled are dropped now and then: it holds the names that sent within the last ``burst / rate``
    seconds (about), whatever the number of names."""

    def __init__(self, rate_per_s: float, burst: int):
        self.rate = rate_per_s
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}
        self._pruned = _Pruned()

    def allow(self, name: str, now: float) -> tuple[bool, int]:
        """(allowed, seconds to wait before retrying)."""
        if self._pruned.due(len(self._buckets)):
            full_after = self.burst / self.rate
            self._buckets = {k: b for k, b in self._buckets.items() if now - b.at < full_after}
            self._pruned.done(len(self._buckets))
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True, 0
        return False, max(1, math.ceil((1 - bucket.tokens) / self.rate))


def lease(rate_per_s: float, burst: int, processes: int) -> int:
    """How many tokens a process takes from the shared bucket at once."""
    return max(1, min(burst // (4 * processes), int(rate_per_s / 10)))


# (bucket name, rate, burst, wanted) -> (granted, seconds to wait)
Take = Callable[[str, float, int, int], Awaitable[tuple[int, int]]]


def redis_take(client: aioredis.Redis, prefix: str) -> Take:
    script = client.register_script(_TAKE)

    async def take(name: str, rate: float, burst: int, wanted: int) -> tuple[int, int]:
        granted, wait = await script(keys=[f"{prefix}ratelimit:{name}"], args=[rate, burst, wanted])
        return int(granted), int(wait)

    return take


@dataclass(slots=True)
class _Lease:
    tokens: int
    until: float


class SharedRateLimiter:
    """The limit of each client name across every gateway process (``take``: the shared bucket)."""

    def __init__(self, take: Take, rate_per_s: float, burst: int, processes: int = 1,
                 clock: Callable[[], float] = time.monotonic):
        self.take, self.rate, self.burst, self.clock = take, rate_per_s, burst, clock
        self.lease = lease(rate_per_s, burst, processes)
        self.fallback = RateLimiter(rate_per_s / processes, max(1, burst // processes))
        self._leases: dict[str, _Lease] = {}
        self._refused: dict[str, tuple[float, int]] = {}  # name -> (until, wait): no token before it anywhere
        self._redis_down_until = 0.0
        self._refills: dict[str, asyncio.Future[None]] = {}  # name -> its lease being taken now
        self._pruned = _Pruned()

    def _prune(self, now: float) -> None:
        """Drop the lapsed leases and refusals: what is left is about the names of the last second."""
        self._leases = {k: held for k, held in self._leases.items() if now < held.until}
        self._refused = {k: refused for k, refused in self._refused.items() if now < refused[0]}
        self._pruned.done(len(self._leases) + len(self._refused))

    async def allow(self, name: str) -> tuple[bool, int]:
        """(allowed, seconds to wait before retrying)."""
        if self._pruned.due(len(self._leases) + len(self._refused)):
            self._prune(self.clock())
        while True:
            now = self.clock()
            held = self._leases.get(name)
            if held is not None and held.tokens > 0 and now < held.until:
                held.tokens -= 1
                return True, 0
            refused = self._refused.get(name)
            if refused is not None and now < refused[0]:
                return False, refused[1]
            if now < self._redis_down_until:
                return self.fallback.allow(name, now)
            refill = self._refills.get(name)
            if refill is None:
                return await self._refill(name, now)
            # another request of this process asks for the lease: share it, do not take one more (shielded: a
            # waiter cancelled must not cancel the answer the others wait for)
            await asyncio.shield(refill)

    async def _refill(self, name: str, now: float) -> tuple[bool, int]:
        """Take a new lease for ``name`` from the shared bucket; the one round trip in flight for it."""
        done = self._refills[name] = asyncio.get_running_loop().create_future()
        try:
            granted, wait = await self.take(name, self.rate, self.burst, self.lease)
        except (redis.RedisError, OSError) as exc:
            log.warning("rate limits per process while Redis is unreachable (%s)", type(exc).__name__)
            self._redis_down_until = now + RETRY_REDIS_S
            return self.fallback.allow(name, now)
        finally:
            del self._refills[name]
            done.set_result(None)
        if granted < 1:
            # the next token comes in 1/rate seconds at the earliest: until then a refusal needs no round trip
            self._refused[name] = (now + min(1.0, 1 / self.rate), max(1, wait))
            return False, max(1, wait)
        self._leases[name] = _Lease(granted - 1, now + LEASE_S)
        return True, 0
