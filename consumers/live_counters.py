"""Reading the live counters the stream worker keeps in Redis (layout: ``streams.redis_layout``)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import redis

from streams.counters import read_referral_summary
from streams.redis_layout import RedisLayout

FUNNEL_STAGES = ("share", "click", "signup", "conversion")


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def summed(client: redis.Redis, keys: list[str]) -> Counter:
    """Field -> value, the hashes of every shard added up (one round trip)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    total: Counter = Counter()
    for shard in pipe.execute():
        for field, value in shard.items():
            total[as_text(field)] += int(value)
    return total


def funnel(client: redis.Redis, layout: RedisLayout, campaign_id: str, day: str | None = None) -> Counter:
    """``<stage>:<channel>`` -> count for the campaign, the shards of every partition added up."""
    return +summed(client, layout.all_funnels(campaign_id, day))


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


def top_referrers(client: redis.Redis, layout: RedisLayout, campaign_id: str, n: int = 10) -> list[ReferrerLine]:
    """The leaderboard (confirmed referrals) merged over the shards, then by conversions among the rest."""
    pipe = client.pipeline(transaction=False)
    for key in layout.all_leaderboards(campaign_id):
        pipe.zrange(key, 0, -1, withscores=True)
    confirmed = {as_text(member): int(score) for shard in pipe.execute() for member, score in shard}
    lines = []
    for cursor_key in client.scan_iter(match=f"{layout.prefix}{{ref:*}}:referrer:*", count=1000):
        referrer_id = as_text(cursor_key).split(":referrer:", 1)[1]
        h = {as_text(k): as_text(v) for k, v in client.hgetall(cursor_key).items()}
        withheld: Counter = Counter()
        for summary in client.hvals(layout.referrals(referrer_id)):
            r = read_referral_summary(summary)
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


@dataclass(frozen=True, slots=True)
class ReferrerView:
    """One referrer's live counters and referrals, as the referrer stage last wrote them."""

    shares: dict[str, int]  # channel -> shares
    clicks: int
    signups: int
    conversions: int
    points: dict[str, int]  # pending, confirmed, revoked: as a referrer and as a referee
    referrals: list[dict]  # the summaries (streams.counters.snapshot), by attribution time
    welcome: list[dict]  # the customer's own rewards for being referred (the referee side)

    @property
    def empty(self) -> bool:
        return not (self.shares or self.clicks or self.signups or self.conversions or self.referrals
                    or self.welcome or any(self.points.values()))


def referrer_view(client: redis.Redis, layout: RedisLayout, referrer_id: str) -> ReferrerView:
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(layout.referrer(referrer_id))
    pipe.hvals(layout.referrals(referrer_id))
    pipe.hgetall(layout.welcome(referrer_id))
    fields, summaries, welcome_fields = pipe.execute()
    h = {as_text(k): int(v) for k, v in fields.items() if not as_text(k).startswith("_")}
    referrals = sorted((read_referral_summary(s) for s in summaries), key=lambda r: (r["attributed_at"], r["referee_id"]))
    points = {s: h.get(f"points:{s}", 0) for s in ("pending", "confirmed", "revoked")}
    welcome = []
    for reward_id, value in sorted(welcome_fields.items()):
        if as_text(reward_id).startswith("_"):
            continue  # the writer's fences
        w = json.loads(value)
        if w["status"] == "revoked" and w["points"] == 0:
            continue  # announced, then voided by a late event (a reattribution): the other referrer's holds
        welcome.append({"reward_id": as_text(reward_id), **w})
        if w["status"] in points:
            points[w["status"]] += w["points"]
    return ReferrerView(
        shares={k.split(":", 1)[1]: n for k, n in sorted(h.items()) if k.startswith("shares:") and n},
        clicks=h.get("clicks", 0), signups=h.get("signups", 0), conversions=h.get("conversions", 0),
        points=points, referrals=referrals, welcome=welcome)


def leaderboard(client: redis.Redis, layout: RedisLayout, campaign_id: str, limit: int) -> list[tuple[str, int]]:
    """(referrer id, confirmed referrals), most first (ties by id), merged over the shards."""
    keys = layout.all_leaderboards(campaign_id)
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.zrevrange(key, 0, limit - 1, withscores=True)  # a shard's top ``limit`` holds every global top one
    shards = pipe.execute()
    pipe = client.pipeline(transaction=False)
    full = [(key, shard[-1][1]) for key, shard in zip(keys, shards, strict=True) if len(shard) == limit]
    for key, lowest in full:  # ... but for ties with its last one, which may sort first by id
        pipe.zrangebyscore(key, lowest, lowest, withscores=True)
    ties = pipe.execute() if full else []
    merged = {as_text(member): int(score) for shard in [*shards, *ties] for member, score in shard}
    return sorted(merged.items(), key=lambda x: (-x[1], x[0]))[:limit]
