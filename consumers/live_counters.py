"""Reading the live counters the stream worker keeps in Redis (layout: ``streams.redis_layout``)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import redis

from streams.redis_layout import RedisLayout

FUNNEL_STAGES = ("share", "click", "signup", "conversion")


def funnel(client: redis.Redis, layout: RedisLayout, campaign_id: str, day: str | None = None) -> Counter:
    """``<stage>:<channel>`` -> count for the campaign, the shards of every partition added up."""
    pipe = client.pipeline(transaction=False)
    for key in layout.all_funnels(campaign_id, day):
        pipe.hgetall(key)
    total: Counter = Counter()
    for shard in pipe.execute():
        for field, value in shard.items():
            total[field.decode() if isinstance(field, bytes) else field] += int(value)
    return +total


def funnel_by_stage(counts: Counter) -> dict[str, dict[str, int]]:
    """{stage: {channel: count}} in funnel order."""
    out: dict[str, dict[str, int]] = {stage: {} for stage in FUNNEL_STAGES}
    for field, n in sorted(counts.items()):
        stage, _, channel = field.partition(":")
        out.setdefault(stage, {})[channel] = n
    return out


@dataclass(frozen=True, slots=True)
class ReferrerLine:
    referrer_id: str
    confirmed_referrals: int
    signups: int
    conversions: int
    points: dict[str, int]
    withheld: dict[str, int]  # reason code -> referrals whose reward is withheld for it


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def top_referrers(client: redis.Redis, layout: RedisLayout, campaign_id: str, n: int = 10) -> list[ReferrerLine]:
    """The leaderboard (confirmed referrals) merged over the shards, then by conversions among the rest."""
    pipe = client.pipeline(transaction=False)
    for key in layout.all_leaderboards(campaign_id):
        pipe.zrange(key, 0, -1, withscores=True)
    confirmed = {_text(member): int(score) for shard in pipe.execute() for member, score in shard}
    lines = []
    for cursor_key in client.scan_iter(match=f"{layout.prefix}{{ref:*}}:referrer:*", count=1000):
        referrer_id = _text(cursor_key).split(":referrer:", 1)[1]
        h = {_text(k): _text(v) for k, v in client.hgetall(cursor_key).items()}
        withheld: Counter = Counter()
        for summary in client.hvals(layout.referrals(referrer_id)):
            r = json.loads(summary)
            if r.get("campaign_id") != campaign_id:
                continue
            reason = r.get("reward_reason") or (r.get("reason") if r.get("status") == "rejected" else None)
            if reason:
                withheld[reason] += 1
        lines.append(ReferrerLine(
            referrer_id, confirmed.get(referrer_id, 0), int(h.get("signups", 0)), int(h.get("conversions", 0)),
            {s: int(h.get(f"points:{s}", 0)) for s in ("pending", "confirmed", "revoked")}, dict(withheld)))
    lines.sort(key=lambda x: (-x.confirmed_referrals, -x.conversions, -x.signups, x.referrer_id))
    return lines[:n]
