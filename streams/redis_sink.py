"""Writing counter snapshots to Redis exactly once, although Kafka delivers at least once.

Kafka does not cover Redis, so every write is a snapshot of one referrer's record
(``streams.counters.CounterSnapshot``) applied by one Lua script that, atomically:

1. compares the snapshot's ``seq`` with the ``_seq`` stored in the referrer's hash and
   does nothing unless it is newer (a snapshot written twice, or an older one written
   late after a crash, changes nothing);
2. checks every value before writing any (Redis does not roll back a failing script);
3. adds to each funnel and ledger cell the snapshot names the *difference* between the
   referrer's contribution to it now and the one it applied last (kept per cell in the
   referrer's cells hash, ``RedisLayout.cells``): a partial snapshot names the cells its batch
   touched, so it reads and writes those only; a complete one names every cell the referrer
   counts in now and takes back any it applied before that it no longer names (a cell that went to 0
   since the last snapshot Redis saw: the record does not remember cells at 0). It sets the
   referrer's absolute values and the summaries of the referrals it carries (a partial snapshot
   carries those a batch changed; a complete one, all, and removes the rest), and the
   leaderboard scores;
4. stores the new ``_seq``.

A referrer written by the version before kept its whole contribution in one ``_funnel`` field,
diffed whole on every snapshot (the cost grew with the days the referrer was active): the first
snapshot after it, always complete (the worker's first for every referrer it touches), takes
that contribution back and adds every cell again, one by one.

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
local function keys_of(campaign, day, tag)  -- the counters a cell adds to: a day's funnel and the campaign's, or the ledger
  if day == '' then return {tag .. 'ledger:' .. campaign} end
  return {tag .. 'funnel:' .. campaign .. ':' .. day, tag .. 'funnel:' .. campaign}
end
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
          for _, key in ipairs(keys_of(name, day, tag)) do add(key, field, n) end
        end
      end
    else
      error('bad contribution ' .. name)
    end
  end
  return cells
end
"""

# The cells of a snapshot's contribution (``streams.counters.contribution``), one entry each: its name in the
# cells hash (``<campaign>\t<day>\t<field>``), the counter keys it adds to (a day's funnel and the campaign's, or
# the campaign's ledger for the day ""), its field and count.
_ENTRIES = """
local function entries_of(text, tag)
  local out = {}
  for campaign, days in pairs(cjson.decode(text)) do
    if type(days) ~= 'table' then error('bad contribution ' .. tostring(campaign)) end
    for day, fields in pairs(days) do
      for field, n in pairs(fields) do
        if type(n) ~= 'number' or n % 1 ~= 0 or n < 0 then error('bad count ' .. campaign .. ' ' .. day) end
        out[#out + 1] = {campaign .. '\t' .. day .. '\t' .. field, keys_of(campaign, day, tag), field, n}
      end
    end
  end
  return out
end
local function entry_of(name, n, tag)  -- a stored cell back as an entry
  local campaign, day, field = string.match(name, '^(.-)\t(.-)\t(.*)$')
  if not campaign then error('bad cell ' .. name) end
  return {name, keys_of(campaign, day, tag), field, tonumber(n)}
end
"""

# KEYS: the referrer's hash, its referrals, the shard's campaigns, its cells (``RedisLayout.cells``), then every
# funnel, ledger and leaderboard key the snapshot names. ARGV: seq, fields, referrals, the cells (contribution
# JSON), leaderboard, referrer id, campaigns, the slot's tag, "1" for a complete snapshot.
_APPLY = _CELLS + _ENTRIES + """
local seq = tonumber(ARGV[1])
local stored = tonumber(redis.call('HGET', KEYS[1], '_seq') or '-1')
if seq <= stored then return 0 end
local complete = ARGV[9] == '1'
local declared = {}
for i = 5, #KEYS do declared[KEYS[i]] = true end
local tag = ARGV[8]
local fields = cjson.decode(ARGV[2])
local referrals = cjson.decode(ARGV[3])
local new = entries_of(ARGV[4], tag)
local board = cjson.decode(ARGV[5])
-- the contribution written by a version before cells were kept one by one: taken back whole, then the snapshot
-- (which must be complete) adds every cell again
local legacy = redis.call('HGET', KEYS[1], '_funnel')
local legacy_cells = {}
if legacy then
  if not complete then error('a partial snapshot on a contribution of the previous format') end
  legacy_cells = cells_of(legacy, tag)
end
-- what the cells hash holds of the cells that matter: those named (all of them, for a complete snapshot); with a
-- contribution of the previous format, nothing is applied cell by cell yet
local applied = {}
local gone = {}
if legacy then
  applied = {}
elseif complete then
  local all = redis.call('HGETALL', KEYS[4])
  for i = 1, #all, 2 do applied[all[i]] = tonumber(all[i + 1]) end
elseif #new > 0 then
  local names = {}
  for i, e in ipairs(new) do names[i] = e[1] end
  local values = redis.call('HMGET', KEYS[4], unpack(names))
  for i, e in ipairs(new) do applied[e[1]] = tonumber(values[i] or '0') end
end
if complete then  -- cells applied before that the snapshot no longer names go back to 0
  local named = {}
  for _, e in ipairs(new) do named[e[1]] = true end
  for name, n in pairs(applied) do
    if not named[name] then gone[#gone + 1] = entry_of(name, n, tag) end
  end
end
-- check everything before writing anything; the keys of cells taken back are the referrer's slot's (their names
-- are relative to its tag) but found here, not declared, as ``_RETIRE`` finds them
for _, e in ipairs(new) do
  for _, key in ipairs(e[2]) do
    if not declared[key] then error('funnel key not declared: ' .. key) end
  end
end
for key, _ in pairs(legacy_cells) do if not declared[key] then error('funnel key not declared: ' .. key) end end
for f, v in pairs(fields) do if type(v) ~= 'number' or v % 1 ~= 0 then error('bad field ' .. f) end end
for key, n in pairs(board) do
  if not declared[key] or type(n) ~= 'number' then error('bad leaderboard ' .. key) end
end
for key, counts in pairs(legacy_cells) do
  for f, n in pairs(counts) do bump(key, f, -n) end
end
if legacy then redis.call('HDEL', KEYS[1], '_funnel'); redis.call('DEL', KEYS[4]) end  -- cells: only the new
for _, e in ipairs(new) do
  local d = e[4] - (applied[e[1]] or 0)
  if d ~= 0 then
    for _, key in ipairs(e[2]) do bump(key, e[3], d) end
    if e[4] == 0 then redis.call('HDEL', KEYS[4], e[1]) else redis.call('HSET', KEYS[4], e[1], e[4]) end
  end
end
for _, e in ipairs(gone) do
  for _, key in ipairs(e[2]) do bump(key, e[3], -e[4]) end
  redis.call('HDEL', KEYS[4], e[1])
end
for f, v in pairs(fields) do  -- a 0 is no field (readers take a missing field as 0): fewer bytes per referrer
  if v == 0 then redis.call('HDEL', KEYS[1], f) else redis.call('HSET', KEYS[1], f, v) end
end
for id, summary in pairs(referrals) do
  if summary == false then redis.call('HDEL', KEYS[2], id) else redis.call('HSET', KEYS[2], id, summary) end
end
if complete then  -- the list is the snapshot's, ids it lacks (renamed) go
  for _, id in ipairs(redis.call('HKEYS', KEYS[2])) do
    if referrals[id] == nil then redis.call('HDEL', KEYS[2], id) end
  end
end
for key, n in pairs(board) do
  if n > 0 then redis.call('ZADD', key, n, ARGV[6]) else redis.call('ZREM', key, ARGV[6]) end
end
local campaigns = cjson.decode(ARGV[7])
if #campaigns > 0 then redis.call('SADD', KEYS[3], unpack(campaigns)) end
redis.call('HSET', KEYS[1], '_seq', ARGV[1])
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
# same slot but found here, not declared. KEYS[5]: its cells (``RedisLayout.cells``). ARGV[3]: the slot's tag,
# which the cells' keys (and a ``_funnel`` of the previous format) are relative to.
_RETIRE = _CELLS + _ENTRIES + """
for key, counts in pairs(cells_of(redis.call('HGET', KEYS[1], '_funnel') or '{}', ARGV[3])) do
  for field, n in pairs(counts) do
    bump(key, field, -n)
  end
end
local all = redis.call('HGETALL', KEYS[5])
for i = 1, #all, 2 do
  local e = entry_of(all[i], all[i + 1], ARGV[3])
  for _, key in ipairs(e[2]) do bump(key, e[3], -e[4]) end
end
for _, campaign in ipairs(redis.call('SMEMBERS', KEYS[4])) do redis.call('ZREM', ARGV[2] .. campaign, ARGV[1]) end
return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[5])
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
        keys = [snap.referrer_key, snap.referrals_key, snap.campaigns_key, snap.cells_key]
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
                    layout.campaigns(p), layout.cells(referrer_id)]
            self._retire(keys=keys, args=[referrer_id, layout.leaderboard(p, ""), slot_tag(keys[0])], client=pipe)
        pipe.execute()

    def seq(self, referrer_key: str) -> int:
        value = self.client.hget(referrer_key, "_seq")
        return int(value) if value is not None else -1
