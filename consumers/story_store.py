"""Where a customer's story lives in Redis, and its bound.

    <prefix>{st:<p>}:story:<customer>           hash  step key -> step JSON (``consumers.story``, with ``step``,
                                                      its name, and ``v``, the version of its referral fact)
    <prefix>{st:<p>}:story:<customer>:order     zset  step key -> event time (ms): the story's order
    <prefix>{st:<p>}:story:<customer>:earlier   hash  the steps folded out: ``referral:<step>`` and
                                                      ``reward:<status>`` -> how many; ``horizon`` -> the event
                                                      time (ms) of the newest one folded

``p`` is the customer's partition (``streams.redis_layout``), so one customer's keys share a hash slot and one
script writes them; the tag is not the live view's (``{ref:p}``), so rebuilding or deleting a view leaves the
stories alone. A step key is ``<pseudonym of the referral>:<step>`` (a referral's current decisions: a newer
version of the referral replaces them all) or the pseudonym of a reward change's event id (a reward's history,
one per change). Written with scripts: a referral's steps only from a newer version than the one they came from, a
reward's step once; a step written twice changes nothing.

**The bound**: a story keeps its newest ``max_steps`` steps by event time (``StorySettings.max_steps``, 1,000 by
default: about 500 KB in Redis for a story of 10,000 referrals, measured by ``make bench``). Older ones are folded: counted in ``earlier`` and removed, and the
horizon moves to the newest folded. A step at or before the horizon is not written (it would be folded at once,
and counted twice): a decision that old, arriving late, shows only in what it changed later.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import redis
import redis.asyncio as aioredis

from consumers.live_counters import as_text
from consumers.story import STEP_NAMES, Step
from referrals.redis_client import delete_matching
from streams.redis_layout import partition_of

# KEYS: story, order, earlier. ARGV: max_steps, then what the caller writes (below).
_TRIM = """
local function trim(story, order, earlier, max_steps)
  local over = redis.call('ZCARD', order) - max_steps
  if over <= 0 then return end
  local horizon = tonumber(redis.call('HGET', earlier, 'horizon') or '-1')
  local gone = redis.call('ZPOPMIN', order, over)
  for i = 1, #gone, 2 do
    local raw = redis.call('HGET', story, gone[i])
    redis.call('HDEL', story, gone[i])
    if raw then
      local s = cjson.decode(raw)
      local name = s['kind'] == 'reward' and s['status'] or s['step']
      redis.call('HINCRBY', earlier, s['kind'] .. ':' .. name, 1)
    end
    horizon = math.max(horizon, tonumber(gone[i + 1]))
  end
  redis.call('HSET', earlier, 'horizon', tostring(horizon))
end
"""

# ARGV: max_steps, referral key, version, n, then n times (step name, JSON, score), then every step name
_PUT_REFERRAL = _TRIM + """
local story, order, earlier = KEYS[1], KEYS[2], KEYS[3]
local ref, version, n = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local names = {}
for i = 5 + 3 * n, #ARGV do names[#names + 1] = ARGV[i] end
for _, name in ipairs(names) do
  local old = redis.call('HGET', story, ref .. ':' .. name)
  if old and tonumber(cjson.decode(old)['v']) >= version then return 0 end
end
for _, name in ipairs(names) do
  redis.call('HDEL', story, ref .. ':' .. name)
  redis.call('ZREM', order, ref .. ':' .. name)
end
local horizon = tonumber(redis.call('HGET', earlier, 'horizon') or '-1')
for i = 0, n - 1 do
  local score = tonumber(ARGV[7 + 3 * i])
  if score > horizon then
    local key = ref .. ':' .. ARGV[5 + 3 * i]
    redis.call('HSET', story, key, ARGV[6 + 3 * i])
    redis.call('ZADD', order, score, key)
  end
end
trim(story, order, earlier, tonumber(ARGV[1]))
return 1
"""

# ARGV: max_steps, step key, JSON, score
_PUT_REWARD = _TRIM + """
local story, order, earlier = KEYS[1], KEYS[2], KEYS[3]
local horizon = tonumber(redis.call('HGET', earlier, 'horizon') or '-1')
local score = tonumber(ARGV[4])
if score <= horizon or redis.call('HSETNX', story, ARGV[2], ARGV[3]) == 0 then return 0 end
redis.call('ZADD', order, score, ARGV[2])
trim(story, order, earlier, tonumber(ARGV[1]))
return 1
"""


def _ms(step: Step) -> int:
    return int(datetime.fromisoformat(step["at"]).timestamp() * 1000)


def _json(step: Step) -> str:
    return json.dumps(step, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class StoryKeys:
    prefix: str
    partitions: int

    def of(self, customer_id: str) -> list[str]:
        base = f"{self.prefix}{{st:{partition_of(customer_id, self.partitions)}}}:story:{customer_id}"
        return [base, f"{base}:order", f"{base}:earlier"]


class StoryWriter:
    """The keeper's writes (asyncio Redis)."""

    def __init__(self, client: aioredis.Redis, keys: StoryKeys, max_steps: int):
        self.keys, self.max_steps = keys, max_steps
        self._referral = client.register_script(_PUT_REFERRAL)
        self._reward = client.register_script(_PUT_REWARD)

    async def put_referral(self, customer_id: str, referral_key: str, version: int, steps: dict[str, Step]) -> bool:
        """A referral's steps in the customer's story, replacing the ones of an older version; False if the story
        has these or a newer version's."""
        args: list[str | int] = [self.max_steps, referral_key, version, len(steps)]
        for name, step in sorted(steps.items()):
            args += [name, _json({**step, "step": name, "v": version}), _ms(step)]
        return bool(await self._referral(keys=self.keys.of(customer_id), args=[*args, *STEP_NAMES]))

    async def put_reward(self, customer_id: str, step_key: str, step: Step) -> bool:
        return bool(await self._reward(keys=self.keys.of(customer_id),
                                       args=[self.max_steps, step_key, _json({**step, "step": "reward"}), _ms(step)]))


@dataclass(frozen=True, slots=True)
class Page:
    steps: list[Step]
    next_cursor: str | None  # where the next page starts; None: this was the last
    earlier: dict[str, int]  # what was folded: ``referral:<step>`` / ``reward:<status>`` -> how many
    horizon_ms: int | None  # the newest folded step's event time


def read_page(client: redis.Redis, keys: StoryKeys, customer_id: str, limit: int, cursor: str | None) -> Page:
    """Up to ``limit`` steps in event-time order from ``cursor`` (``<ms>:<offset>``: the page starts at the
    offset-th step with that time), and what was folded. Costs the page, not the story (a sorted-set range)."""
    story, order, earlier = keys.of(customer_id)
    start_ms, skip = (int(part) for part in cursor.split(":")) if cursor else (0, 0)
    keys_scores = client.zrangebyscore(order, start_ms, "+inf", start=skip, num=limit + 1, withscores=True)
    page, more = keys_scores[:limit], keys_scores[limit:]
    raw = client.hmget(story, [k for k, _ in page]) if page else []
    folded = {as_text(k): int(v) for k, v in client.hgetall(earlier).items()}
    horizon = folded.pop("horizon", None)
    next_cursor = None
    if more:
        last_ms = int(more[0][1])
        same = sum(1 for _, score in page if int(score) == last_ms)  # steps of that time already shown
        next_cursor = f"{last_ms}:{same + (skip if last_ms == start_ms else 0)}"
    return Page([json.loads(r) for r in raw if r is not None], next_cursor, folded, horizon)


def delete(client: redis.Redis, keys: StoryKeys, customer_ids: Iterable[str]) -> int:
    """Remove the stories of ``customer_ids`` (erasure)."""
    names = [k for c in customer_ids for k in keys.of(c)]
    return int(client.delete(*names)) if names else 0


def delete_all(client: redis.Redis, keys: StoryKeys) -> int:
    """Remove every story (``referrals rebuild`` writes them again)."""
    return delete_matching(client, f"{keys.prefix}{{st:*}}:story:*")
