"""Writing counter snapshots to Redis exactly once, although Kafka delivers at least once.

Kafka does not cover Redis, so every write is a snapshot of one referrer's record
(``streams.counters.CounterSnapshot``) applied by one Lua script that, atomically:

1. compares the snapshot's ``seq`` with the ``_seq`` stored in the referrer's hash and
   does nothing unless it is newer (a snapshot written twice, or an older one written
   late after a crash, changes nothing);
2. checks every value before writing any (Redis does not roll back a failing script);
3. adds to each campaign funnel and ledger field the *difference* between the referrer's new
   contribution and the one it applied last (stored in ``_funnel`` in the compact form of
   ``streams.counters.contribution``: per campaign and day, the totals implied; it is most of a
   referrer's bytes), sets the referrer's absolute values and the summaries of the referrals it
   carries (a partial snapshot carries those a batch changed; a complete one, all, and removes the
   rest), and the
   leaderboard scores;
4. stores the new ``_seq`` and ``_funnel``.

Every key is passed as KEYS and all share the referrer's hash tag, so the script is
valid on Redis Cluster (the referee's welcome rewards, in the referee's slot, go by a
script of their own). Snapshots of many referrers go in one pipeline: one round trip
per batch of events, not per event.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis

from streams.counters import CounterSnapshot
from streams.redis_layout import RedisLayout, partition_of

# The cells a referrer's ``_funnel`` names, as cells[key][field] = n with whole key names: the JSON
# ``{campaign: {day: {field: n}}}`` of ``streams.counters.contribution`` (day "" the ledger; a campaign's total
# funnel is the sum of its days), or, as written before, ``{"<key>\t<field>": n}`` with keys whole or relative
# to the slot's tag. The key names are ``streams.redis_layout``'s; every one must be declared by the caller.
_CELLS = """
local function bump(key, field, d)  -- a shared counter moved by d; back at 0 it is no field, as any counter at 0
  if d ~= 0 and redis.call('HINCRBY', key, field, d) == 0 then redis.call('HDEL', key, field) end
end
local function cells_of(text, tag)
  local cells = {}
  local function add(key, field, n)
    if type(n) ~= 'number' or n % 1 ~= 0 then error('bad count ' .. key .. ' ' .. tostring(field)) end
    local c = cells[key]
    if not c then c = {}; cells[key] = c end
    c[field] = (c[field] or 0) + n
  end
  for name, value in pairs(cjson.decode(text)) do
    if type(value) == 'number' then
      local key, field = string.match(name, '^(.*)\\t(.*)$')
      if not key then error('bad funnel cell ' .. name) end
      if string.sub(key, 1, #tag) ~= tag then key = tag .. key end
      add(key, field, value)
    elseif type(value) == 'table' then
      for day, fields in pairs(value) do
        for field, n in pairs(fields) do
          if day == '' then
            add(tag .. 'ledger:' .. name, field, n)
          else
            add(tag .. 'funnel:' .. name .. ':' .. day, field, n)
            add(tag .. 'funnel:' .. name, field, n)
          end
        end
      end
    else
      error('bad contribution ' .. name)
    end
  end
  return cells
end
"""

_APPLY = _CELLS + """
local seq = tonumber(ARGV[1])
local stored = tonumber(redis.call('HGET', KEYS[1], '_seq') or '-1')
if seq <= stored then return 0 end
local declared = {}
for i = 4, #KEYS do declared[KEYS[i]] = true end
local tag = ARGV[8]
local fields = cjson.decode(ARGV[2])
local referrals = cjson.decode(ARGV[3])
local new = cells_of(ARGV[4], tag)
local old = cells_of(redis.call('HGET', KEYS[1], '_funnel') or '{}', tag)
local board = cjson.decode(ARGV[5])
-- check everything before writing anything
for key, counts in pairs(new) do
  if not declared[key] then error('funnel key not declared: ' .. key) end
  for f, n in pairs(counts) do if n < 0 then error('bad count ' .. key .. ' ' .. f) end end
end
for key, _ in pairs(old) do if not declared[key] then error('funnel key not declared: ' .. key) end end
for f, v in pairs(fields) do if type(v) ~= 'number' or v % 1 ~= 0 then error('bad field ' .. f) end end
for key, n in pairs(board) do
  if not declared[key] or type(n) ~= 'number' then error('bad leaderboard ' .. key) end
end
for key, counts in pairs(new) do
  local before = old[key] or {}
  for f, n in pairs(counts) do
    local d = n - (before[f] or 0)
    bump(key, f, d)
  end
end
for key, counts in pairs(old) do
  local after = new[key] or {}
  for f, n in pairs(counts) do
    if after[f] == nil then bump(key, f, -n) end
  end
end
for f, v in pairs(fields) do  -- a 0 is no field (readers take a missing field as 0): fewer bytes per referrer
  if v == 0 then redis.call('HDEL', KEYS[1], f) else redis.call('HSET', KEYS[1], f, v) end
end
for id, summary in pairs(referrals) do
  if summary == false then redis.call('HDEL', KEYS[2], id) else redis.call('HSET', KEYS[2], id, summary) end
end
if ARGV[9] == '1' then  -- a complete snapshot: the list is the snapshot's, ids it lacks (renamed) go
  for _, id in ipairs(redis.call('HKEYS', KEYS[2])) do
    if referrals[id] == nil then redis.call('HDEL', KEYS[2], id) end
  end
end
for key, n in pairs(board) do
  if n > 0 then redis.call('ZADD', key, n, ARGV[6]) else redis.call('ZREM', key, ARGV[6]) end
end
local campaigns = cjson.decode(ARGV[7])
if #campaigns > 0 then redis.call('SADD', KEYS[3], unpack(campaigns)) end
redis.call('HSET', KEYS[1], '_seq', ARGV[1], '_funnel', ARGV[4])
return 1
"""


# One referee's welcome rewards (KEYS[1]); ARGV: seq, then field/value pairs. A field is written only if
# its fence ``_seq:<field>`` is older: a late or repeated snapshot never winds a reward back.
_WELCOME = """
local seq = tonumber(ARGV[1])
local written = 0
for i = 2, #ARGV, 2 do
  local fence = '_seq:' .. ARGV[i]
  local old = tonumber(redis.call('HGET', KEYS[1], fence) or '-1')
  if old < seq then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1], fence, seq)
    written = written + 1
  end
end
return written
"""


# An erased referrer's counters go (streams.erasure): its contributions are taken back from the
# funnels and ledgers (as its ``_funnel`` names them), it leaves the leaderboards of its shard's
# campaigns, its keys are deleted. Running it again changes nothing. KEYS[1] referrer hash, KEYS[2]
# referrals hash, KEYS[3] welcome hash, KEYS[4] the shard's campaigns (all one slot); ARGV[1] the
# referrer id, ARGV[2] the shard's leaderboard key prefix. The funnel and leaderboard keys are in the
# same slot but found here, not declared. ARGV[3]: the slot's tag, which ``_funnel``'s names are relative to.
_RETIRE = _CELLS + """
for key, counts in pairs(cells_of(redis.call('HGET', KEYS[1], '_funnel') or '{}', ARGV[3])) do
  for field, n in pairs(counts) do
    bump(key, field, -n)
  end
end
for _, campaign in ipairs(redis.call('SMEMBERS', KEYS[4])) do redis.call('ZREM', ARGV[2] .. campaign, ARGV[1]) end
return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
"""


def slot_tag(key: str) -> str:
    """``<prefix>{ref:<p>}:`` of a counter key: what ``_funnel`` names its keys relative to."""
    return key[:key.index("}:") + 2]


class SnapshotWriter:
    def __init__(self, client: redis.Redis):
        self.client = client
        self._apply = client.register_script(_APPLY)
        self._welcome = client.register_script(_WELCOME)
        self._retire = client.register_script(_RETIRE)

    def _call(self, snap: CounterSnapshot, client) -> object:
        tag = slot_tag(snap.referrer_key)
        keys = [snap.referrer_key, snap.referrals_key, snap.campaigns_key]
        keys += sorted({key for key, _ in snap.sums} | set(snap.leaderboard))
        args = [
            snap.seq,
            json.dumps(snap.fields, sort_keys=True),
            json.dumps({k: (v if v is not None else False) for k, v in snap.referrals.items()}, sort_keys=True),
            snap.contribution,
            json.dumps(snap.leaderboard, sort_keys=True),
            snap.referrer_id,
            json.dumps(list(snap.campaigns)),
            tag,
            "1" if snap.complete else "0",
        ]
        return self._apply(keys=keys, args=args, client=client)

    def apply(self, snapshots: Sequence[CounterSnapshot]) -> int:
        """Apply every snapshot (one pipeline, each snapshot atomic); the number that were newer than Redis.

        A referee's welcome rewards live in the referee's slot, so they are written by a script of their
        own per referee key, in the same pipeline, fenced field by field."""
        snapshots = [s for s in snapshots if not s.blank]  # a customer with nothing to show takes no memory
        if not snapshots:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for snap in snapshots:
            self._call(snap, pipe)
        for snap in snapshots:
            for key, fields in sorted(snap.welcome.items()):
                self._welcome(keys=[key], args=[snap.seq, *(x for f, v in sorted(fields.items()) for x in (f, v))],
                              client=pipe)
        results = pipe.execute()
        return sum(int(r) for r in results[:len(snapshots)])

    def retire(self, layout: RedisLayout, referrer_ids: Sequence[str]) -> None:
        """Remove erased referrers' counters (idempotent)."""
        pipe = self.client.pipeline(transaction=False)
        for referrer_id in referrer_ids:
            p = partition_of(referrer_id, layout.partitions)
            keys = [layout.referrer(referrer_id), layout.referrals(referrer_id), layout.welcome(referrer_id),
                    layout.campaigns(p)]
            self._retire(keys=keys, args=[referrer_id, layout.leaderboard(p, ""), slot_tag(keys[0])], client=pipe)
        pipe.execute()

    def seq(self, referrer_key: str) -> int:
        value = self.client.hget(referrer_key, "_seq")
        return int(value) if value is not None else -1
