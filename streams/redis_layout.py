"""Where the live counters live in Redis. Pure: names only.

Every counter is written by the referrer stage, which is keyed by ``referrer_id``; the
keys of one Kafka partition ``p`` of that stage share the hash tag ``{ref:p}``, so one
atomic script per batch touches one Redis Cluster slot. Readers that need a campaign
total add up the ``partitions`` shards (six by default).

    <prefix>{ref:<p>}:referrer:<referrer_id>     hash  shares:<channel>, clicks, signups, conversions,
                                                       points:pending|confirmed|revoked; and the writer's
                                                       _seq (snapshot fence)
    <prefix>{ref:<p>}:cells:<referrer_id>        hash  the writer's bookkeeping: <campaign>\t<day>\t<field> ->
                                                       the referrer's contribution to that funnel cell (day
                                                       "": the campaign's ledger) as last applied
    <prefix>{ref:<p>}:referrals:<referrer_id>    hash  referral id -> JSON {referee_id, status, reason, channel,
                                                       attributed_at, reward_status, reward_reason, reward_points};
                                                       a field at its default left out (streams.counters)
    <prefix>{ref:<p>}:funnel:<campaign>          hash  <stage>:<channel> -> count (stage: share, click,
                                                       signup, conversion)
    <prefix>{ref:<p>}:funnel:<campaign>:<day>    hash  the same per UTC day (YYYY-MM-DD)
    <prefix>{ref:<p>}:leaderboard:<campaign>     zset  referrer_id -> confirmed referrals
    <prefix>{ref:<p>}:ledger:<campaign>          hash  rewards:<role>:<status> -> rewards that reached the
                                                       status, points:<role>:<status> -> their points,
                                                       rejections:<reason> -> referrals withheld for it
    <prefix>{ref:<p>}:campaigns                  set   the campaigns the shard has counters for
    <prefix>{ref:<q>}:welcome:<referee_id>       hash  reward id -> JSON {status, points, reason, campaign_id,
                                                       referrer_id}: the rewards a referee gets for being
                                                       referred (``q``: the referee's partition; written by
                                                       the referrer's stage, each field fenced by the
                                                       referrer's seq in ``_seq:<reward id>``)

``p`` is the partition Kafka's default partitioner gives the referrer id (murmur2, as
kafka-python, aiokafka and the Java client compute it), so a reader finds a referrer's
keys without asking anyone.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from kafka.partitioner.default import murmur2


@functools.lru_cache(maxsize=1 << 16)
def partition_of(key: str, partitions: int) -> int:
    """Kafka's default partition for a record key (positive murmur2 modulo the partition count). kafka-python's
    murmur2 is pure Python (2.8 µs a call, measured); the last 65,536 keys asked are remembered (0.1 µs a call;
    at most a few MiB)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class RedisLayout:
    prefix: str = "rp:"
    partitions: int = 6

    def tag(self, partition: int) -> str:
        return f"{self.prefix}{{ref:{partition}}}"

    def referrer(self, referrer_id: str) -> str:
        return f"{self.tag(partition_of(referrer_id, self.partitions))}:referrer:{referrer_id}"

    def referrals(self, referrer_id: str) -> str:
        return f"{self.tag(partition_of(referrer_id, self.partitions))}:referrals:{referrer_id}"

    def cells(self, referrer_id: str) -> str:
        return f"{self.tag(partition_of(referrer_id, self.partitions))}:cells:{referrer_id}"

    def welcome(self, referee_id: str) -> str:
        return f"{self.tag(partition_of(referee_id, self.partitions))}:welcome:{referee_id}"

    def funnel(self, partition: int, campaign_id: str, day: str | None = None) -> str:
        base = f"{self.tag(partition)}:funnel:{campaign_id}"
        return f"{base}:{day}" if day else base

    def leaderboard(self, partition: int, campaign_id: str) -> str:
        return f"{self.tag(partition)}:leaderboard:{campaign_id}"

    def ledger(self, partition: int, campaign_id: str) -> str:
        return f"{self.tag(partition)}:ledger:{campaign_id}"

    def campaigns(self, partition: int) -> str:
        return f"{self.tag(partition)}:campaigns"

    def all_ledgers(self, campaign_id: str) -> list[str]:
        return [self.ledger(p, campaign_id) for p in range(self.partitions)]

    def all_campaign_sets(self) -> list[str]:
        return [self.campaigns(p) for p in range(self.partitions)]

    def all_funnels(self, campaign_id: str, day: str | None = None) -> list[str]:
        """The shards a reader adds up for a campaign total."""
        return [self.funnel(p, campaign_id, day) for p in range(self.partitions)]

    def all_leaderboards(self, campaign_id: str) -> list[str]:
        return [self.leaderboard(p, campaign_id) for p in range(self.partitions)]
