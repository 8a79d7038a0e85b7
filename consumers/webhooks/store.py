"""What the dispatcher keeps in Redis so that a restart or a SIGKILL changes nothing: the retry schedule of the
deliveries being retried, and which rewards have a dead delivery not yet replayed. The first is bounded; the
other two grow with an endpoint's dead deliveries (see each).

    <prefix>{wh}:attempts:<endpoint>   hash  webhook id -> JSON {first, count, next}: a delivery being retried
                                             (at most ``lane_retrying`` + 1 per partition and endpoint); removed
                                             when it is delivered or dead
    <prefix>{wh}:dead:<endpoint>       hash  ordering key (a reward, a referee) -> how many of its changes are
                                             dead and not yet replayed; a later change of it is dead-lettered
                                             behind them (so a replay keeps their order); removed by replay.
                                             One field per reward with dead deliveries waiting for a replay: an
                                             endpoint that refuses everything and is never replayed grows it
    <prefix>{wh}:replayed:<endpoint>   set   the dead deliveries (partition:offset in the dead-letter topic)
                                             that `webhooks replay` delivered; one id per replayed delivery,
                                             not pruned when the topic's records expire (as `referrals
                                             deadletter`'s replayed set is not)
"""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from consumers.webhooks.retry import Attempts


def attempts_key(prefix: str, endpoint: str) -> str:
    return f"{prefix}{{wh}}:attempts:{endpoint}"


def dead_key(prefix: str, endpoint: str) -> str:
    return f"{prefix}{{wh}}:dead:{endpoint}"


def replayed_key(prefix: str, endpoint: str) -> str:
    return f"{prefix}{{wh}}:replayed:{endpoint}"


class DeliveryStore:
    """One endpoint's part of it, on an asyncio Redis client."""

    def __init__(self, client: aioredis.Redis, prefix: str, endpoint: str):
        self.client = client
        self.attempts_key = attempts_key(prefix, endpoint)
        self.dead_key = dead_key(prefix, endpoint)

    async def attempts(self, webhook_id: str) -> tuple[Attempts, float] | None:
        """The delivery's attempts so far and when the next is due, if it is being retried."""
        raw = await self.client.hget(self.attempts_key, webhook_id)
        if raw is None:
            return None
        state = json.loads(raw)
        return Attempts(first_at=float(state["first"]), count=int(state["count"])), float(state["next"])

    async def remember(self, webhook_id: str, attempts: Attempts, next_at: float) -> None:
        await self.client.hset(self.attempts_key, webhook_id,
                               json.dumps({"first": attempts.first_at, "count": attempts.count, "next": next_at}))

    async def forget(self, webhook_id: str) -> None:
        await self.client.hdel(self.attempts_key, webhook_id)

    async def is_behind_dead(self, ordering_key: str) -> bool:
        return bool(await self.client.hexists(self.dead_key, ordering_key))

    async def died(self, ordering_key: str, webhook_id: str) -> None:
        """One more dead change of ``ordering_key``; the delivery's retry schedule goes (one transaction)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hincrby(self.dead_key, ordering_key, 1)
        pipe.hdel(self.attempts_key, webhook_id)
        await pipe.execute()
