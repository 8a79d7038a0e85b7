"""The Redis key layout: one hash tag per referrer-stage partition."""

from __future__ import annotations

import re

from streams.redis_layout import RedisLayout, partition_of


def tag(key: str) -> str:
    return re.search(r"\{[^}]*\}", key).group(0)


def test_a_referrers_keys_share_the_hash_tag_of_its_partition():
    layout = RedisLayout(prefix="rp:", partitions=6)
    for referrer in ("anna", "ben", "cust-829", "ü-ñ"):
        p = partition_of(referrer, 6)
        keys = [layout.referrer(referrer), layout.referrals(referrer), layout.funnel(p, "spring"),
                layout.funnel(p, "spring", "2026-05-01"), layout.leaderboard(p, "spring")]
        assert {tag(k) for k in keys} == {f"{{ref:{p}}}"}
        assert all(k.startswith("rp:") for k in keys)


def test_partitions_spread_and_stay_in_range():
    seen = {partition_of(f"cust-{i}", 6) for i in range(200)}
    assert seen == set(range(6))


def test_readers_know_every_shard():
    layout = RedisLayout(partitions=3)
    assert layout.all_funnels("spring") == ["rp:{ref:0}:funnel:spring", "rp:{ref:1}:funnel:spring",
                                            "rp:{ref:2}:funnel:spring"]
    assert len(layout.all_leaderboards("spring")) == 3
