"""The shared rate limit's leases over a stand-in for the Redis bucket (the bucket's Lua script runs against
the real Redis in tests/integration/producers/test_gateway_processes.py)."""

from __future__ import annotations

import asyncio

import pytest
import redis

from producers.gateway.rate_limit import LEASE_S, RETRY_REDIS_S, RateLimiter, SharedRateLimiter, lease


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Bucket:
    """The shared bucket as the Lua script keeps it, on the stand-in clock; ``down``: Redis unreachable."""

    def __init__(self, clock: Clock) -> None:
        self.clock, self.bucket, self.calls, self.down = clock, RateLimiter(0, 0), 0, False
        self.buckets: dict[str, list[float]] = {}

    async def take(self, name: str, rate: float, burst: int, wanted: int) -> tuple[int, int]:
        self.calls += 1
        if self.down:
            raise redis.ConnectionError("refused")
        tokens, at = self.buckets.get(name, [float(burst), self.clock()])
        tokens = min(burst, tokens + (self.clock() - at) * rate)
        granted = min(wanted, int(tokens))
        self.buckets[name] = [tokens - granted, self.clock()]
        return granted, 0 if granted else -(-(1 - (tokens - granted)) // rate)


def allowed(limiter: SharedRateLimiter, n: int, name: str = "app") -> int:
    async def run() -> int:
        return sum([(await limiter.allow(name))[0] for _ in range(n)])

    return asyncio.run(run())


def test_processes_together_allow_the_burst_and_then_the_rate_not_more():
    clock = Clock()
    bucket = Bucket(clock)
    processes = [SharedRateLimiter(bucket.take, 100, 200, processes=3, clock=clock) for _ in range(3)]
    assert sum(allowed(p, 150) for p in processes) == 200  # 450 asked at once: the burst
    clock.now += 0.5  # half a second: 50 tokens more in the shared bucket
    got = sum(allowed(p, 100) for p in processes)
    assert got <= 50 and got >= 50 - 3 * lease(100, 200, 3)  # a lease still held elsewhere lapses unused
    assert bucket.calls < 150  # most requests cost no round trip to Redis


def test_unspent_tokens_of_a_lease_lapse():
    clock = Clock()
    bucket = Bucket(clock)
    limiter = SharedRateLimiter(bucket.take, 1000, 10_000, processes=2, clock=clock)
    assert allowed(limiter, 1) == 1 and limiter._leases["app"].tokens == limiter.lease - 1
    clock.now += LEASE_S
    calls = bucket.calls
    assert allowed(limiter, 1) == 1 and bucket.calls == calls + 1  # a new lease, not the old one's tokens


def test_refused_with_the_wait_and_names_have_their_own_buckets():
    clock = Clock()
    bucket = Bucket(clock)
    limiter = SharedRateLimiter(bucket.take, 0.5, 2, processes=2, clock=clock)
    answers = [asyncio.run(limiter.allow("app")) for _ in range(3)]
    assert answers[:2] == [(True, 0), (True, 0)] and answers[2][0] is False and answers[2][1] >= 1
    assert asyncio.run(limiter.allow("shop")) == (True, 0)


def test_while_redis_is_down_each_process_limits_by_its_share_and_asks_again_later():
    clock = Clock()
    bucket = Bucket(clock)
    bucket.down = True
    limiter = SharedRateLimiter(bucket.take, 10, 40, processes=4, clock=clock)
    assert allowed(limiter, 30) == 10  # its share of the burst: 40 / 4
    assert bucket.calls == 1  # not asked again within RETRY_REDIS_S
    clock.now += RETRY_REDIS_S
    bucket.down = False
    assert allowed(limiter, 5) == 5 and bucket.calls > 1  # the shared bucket again


@pytest.mark.parametrize("rate, burst, processes, expected", [
    (200, 400, 2, 20), (0.5, 2, 2, 1), (1_000_000, 1_000_000, 2, 100_000), (100, 10, 1, 2)])
def test_a_lease_is_a_tenth_of_a_seconds_rate_at_most_a_quarter_of_the_burst_shared_out(rate, burst, processes,
                                                                                        expected):
    assert lease(rate, burst, processes) == expected


def test_requests_that_find_the_lease_spent_together_share_one_refill():
    """Seen in the bench: 2,600 req/s under a limit of 1,000,000/s got 429s, because every request in flight
    at a lease's end took a lease of its own and together they drained the shared bucket."""
    clock = Clock()
    bucket = Bucket(clock)
    slow = asyncio.Event()

    async def take(name: str, rate: float, burst: int, wanted: int) -> tuple[int, int]:
        await slow.wait()  # the round trip to Redis: every other request arrives meanwhile
        return await bucket.take(name, rate, burst, wanted)

    limiter = SharedRateLimiter(take, 100, 400, processes=2, clock=clock)  # leases of 10

    async def run() -> list[tuple[bool, int]]:
        asked = [asyncio.create_task(limiter.allow("app")) for _ in range(25)]
        await asyncio.sleep(0)
        slow.set()
        return await asyncio.gather(*asked)

    answers = asyncio.run(run())
    assert answers == [(True, 0)] * 25
    assert bucket.calls == 3  # 25 requests, leases of 10: three round trips, one at a time
    assert bucket.buckets["app"][0] == 400 - 30  # the third lease's 5 unspent tokens lapse, no more is taken


def test_a_refill_that_fails_lets_the_waiting_requests_fall_back():
    clock = Clock()
    bucket = Bucket(clock)
    bucket.down = True
    limiter = SharedRateLimiter(bucket.take, 100, 400, processes=2, clock=clock)

    async def run() -> list[tuple[bool, int]]:
        return await asyncio.gather(*(limiter.allow("app") for _ in range(10)))

    assert asyncio.run(run()) == [(True, 0)] * 10  # the per-process share: 200 at once
    assert bucket.calls == 1


def test_a_waiting_request_cancelled_does_not_cancel_the_refill_the_others_wait_for():
    clock = Clock()
    bucket = Bucket(clock)
    slow = asyncio.Event()

    async def take(name: str, rate: float, burst: int, wanted: int) -> tuple[int, int]:
        await slow.wait()
        return await bucket.take(name, rate, burst, wanted)

    limiter = SharedRateLimiter(take, 100, 400, processes=2, clock=clock)

    async def run() -> list[tuple[bool, int]]:
        asking, gone, waiting = (asyncio.create_task(limiter.allow("app")) for _ in range(3))
        await asyncio.sleep(0)
        gone.cancel()  # its client went away while the lease was being taken
        await asyncio.sleep(0)
        slow.set()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return [await asking, await waiting]

    assert asyncio.run(run()) == [(True, 0), (True, 0)]
    assert bucket.calls == 1


def test_200_000_names_once_each_leave_a_process_with_about_the_names_of_the_last_second():
    """One bucket per customer token: the process forgets the lapsed ones, and the limits hold as before."""
    clock = Clock()
    bucket = Bucket(clock)
    limiter = SharedRateLimiter(bucket.take, 1, 3, processes=2, clock=clock)
    largest = 0

    async def run() -> None:
        nonlocal largest
        for i in range(200_000):
            if i % 1000 == 0:
                clock.now += 0.5  # 2,000 new names a second
            assert await limiter.allow(f"token-{i}") == (True, 0)
            largest = max(largest, len(limiter._leases) + len(limiter._refused))
        for _ in range(3):
            await limiter.allow("token-199999")
        assert (await limiter.allow("token-199999"))[0] is False  # a name still limited after every pruning

    asyncio.run(run())
    assert largest <= 2 * 4096 + 2000


def test_while_redis_is_down_the_local_buckets_forget_the_refilled_names():
    limiter = RateLimiter(10, 20)
    for i in range(100_000):
        assert limiter.allow(f"token-{i}", now=i / 1000)[0]  # 1,000 names a second; full again after 2 s
    assert len(limiter._buckets) <= 2 * 4096
    for _ in range(20):
        limiter.allow("token-99999", now=100)
    assert limiter.allow("token-99999", now=100) == (False, 1)
