"""Writing counter changes to Redis exactly once, although Kafka delivers at least once.

Kafka transactions cover the stage's state and outputs, not Redis. So every batch of
counter changes is applied by one Lua script that first compares the batch's source
offset with the fence stored for that source partition, and in the same atomic step
applies the changes and moves the fence:

- a batch whose offset is at or below the fence was applied before (a replay after a
  crash, a rewind, a duplicate delivery): nothing changes;
- otherwise every change and the new fence are written together, or none is.

Because a stage's state is restored with its input offsets (Faust's exactly-once
changelog), the batch for an offset is the same on every replay, so skipping it is
right, and the counters end as in an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import redis

Op = Literal["hincrby", "hset", "zincrby", "zadd", "hdel"]

_APPLY = """
local fence = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
local offset = tonumber(ARGV[2])
if offset <= fence then return 0 end
-- Redis does not roll a script back when it fails half-way: check every change before writing any.
local i = 3
while i <= #ARGV do
  local op, value = ARGV[i], ARGV[i + 3]
  if op == 'hincrby' and not string.match(value, '^-?%d+$') then return redis.error_reply('bad integer ' .. value) end
  if (op == 'zincrby' or op == 'zadd') and not tonumber(value) then
    return redis.error_reply('bad number ' .. value)
  end
  if op ~= 'hincrby' and op ~= 'hset' and op ~= 'hdel' and op ~= 'zincrby' and op ~= 'zadd' then
    return redis.error_reply('unknown op ' .. op)
  end
  if not KEYS[tonumber(ARGV[i + 1])] then return redis.error_reply('bad key index') end
  i = i + 4
end
i = 3
while i <= #ARGV do
  local op, key, field, value = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
  if op == 'hincrby' then redis.call('HINCRBY', key, field, value)
  elseif op == 'hset' then redis.call('HSET', key, field, value)
  elseif op == 'hdel' then redis.call('HDEL', key, field)
  elseif op == 'zadd' then redis.call('ZADD', key, value, field)
  else redis.call('ZINCRBY', key, value, field) end
  i = i + 4
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class Change:
    op: Op
    key: str
    field: str
    value: str | int = ""


class FencedWriter:
    def __init__(self, client: redis.Redis):
        self.client = client
        self._apply = client.register_script(_APPLY)

    def apply(self, fence_key: str, source: str, offset: int, changes: Sequence[Change]) -> bool:
        """Apply ``changes`` unless ``offset`` of ``source`` was applied already. True if applied.

        All keys are passed as KEYS (the fence first), so the script is valid on Redis
        Cluster when they share a hash tag.
        """
        keys = [fence_key]
        index: dict[str, int] = {}
        args: list[str | int] = [source, offset]
        for change in changes:
            if change.key not in index:
                keys.append(change.key)
                index[change.key] = len(keys)
            args += [change.op, index[change.key], change.field, change.value]
        return bool(self._apply(keys=keys, args=args))

    def fence(self, fence_key: str, source: str) -> int:
        value = self.client.hget(fence_key, source)
        return int(value) if value is not None else -1
