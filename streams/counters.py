"""What a referrer-stage step changes in Redis. Pure: states in, ``Change``s out.

Per referrer, values derived from the state are written whole (``hset``, ``zadd``):
writing them again is harmless. Campaign funnel counters are sums over referrers, so a
step adds the difference between the state before and after (``hincrby``). The fenced
writer applies the list atomically, once per source offset.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime

from schemas.derived import RewardRole, RewardStatus
from schemas.events import ShareEvent
from streams.redis_layout import RedisLayout
from streams.redis_sink import Change
from streams.referrer_rewards import ReferrerState

NO_CHANNEL = "unknown"  # a referral attributed by a code, not by a click


def _day(at: datetime) -> str:
    return at.strftime("%Y-%m-%d")


def funnel_increments(layout: RedisLayout, partition: int, campaign_id: str, stage: str, channel: str,
                      at: datetime, n: int = 1) -> list[Change]:
    field = f"{stage}:{channel}"
    return [Change("hincrby", layout.funnel(partition, campaign_id), field, n),
            Change("hincrby", layout.funnel(partition, campaign_id, _day(at)), field, n)]


def share_changes(layout: RedisLayout, partition: int, share: ShareEvent) -> list[Change]:
    channel = share.channel.value
    return [Change("hincrby", layout.referrer(share.referrer_id), f"shares:{channel}", 1),
            *funnel_increments(layout, partition, share.campaign_id or "default", "share", channel,
                               share.occurred_at)]


def click_changes(layout: RedisLayout, partition: int, referrer_id: str, campaign_id: str, channel: str | None,
                  at: datetime) -> list[Change]:
    return [Change("hincrby", layout.referrer(referrer_id), "clicks", 1),
            *funnel_increments(layout, partition, campaign_id, "click", channel or NO_CHANNEL, at)]


def _funnel(state: ReferrerState) -> Counter:
    counts: Counter = Counter()
    for r in state.referrals.values():
        channel = r.channel or NO_CHANNEL
        if r.status in ("attributed", "qualified", "revoked"):
            counts[(r.campaign_id, "signup", channel, _day(r.attributed_at))] += 1
        if r.status in ("qualified", "revoked") and r.qualified_at is not None:
            counts[(r.campaign_id, "conversion", channel, _day(r.qualified_at))] += 1
    return counts


def referrer_changes(layout: RedisLayout, partition: int, referrer_id: str, before: ReferrerState,
                     after: ReferrerState) -> list[Change]:
    changes: list[Change] = []
    key = layout.referrer(referrer_id)
    live = [r for r in after.referrals.values() if r.status != "withdrawn"]
    points = {"pending": 0, "confirmed": 0, "revoked": 0}
    for w in after.rewards.values():
        if w.customer_id == referrer_id and w.status.value in points:
            points[w.status.value] += w.points
    changes += [
        Change("hset", key, "signups", sum(1 for r in live if r.status in ("attributed", "qualified", "revoked"))),
        Change("hset", key, "conversions", sum(1 for r in live if r.status in ("qualified", "revoked"))),
        *(Change("hset", key, f"points:{status}", value) for status, value in points.items()),
    ]
    referrals = layout.referrals(referrer_id)
    for r in after.referrals.values():
        if r.status == "withdrawn":
            if before.referrals.get(r.referral_id, r).status != "withdrawn":
                changes.append(Change("hdel", referrals, r.referral_id))
            continue
        reward = after.rewards.get(f"{r.referral_id}:{RewardRole.REFERRER.value}")
        summary = {"referee_id": r.referee_id, "campaign_id": r.campaign_id, "status": r.status,
                   "reason": (r.reason.value if r.reason else None),
                   "reward_status": reward.status.value if reward else None,
                   "reward_reason": reward.reason.value if reward and reward.reason else None}
        changes.append(Change("hset", referrals, r.referral_id, json.dumps(summary, sort_keys=True)))
    delta = _funnel(after)
    delta.subtract(_funnel(before))
    for (campaign_id, stage, channel, day), n in sorted(delta.items()):
        if n:
            field = f"{stage}:{channel}"
            changes.append(Change("hincrby", layout.funnel(partition, campaign_id), field, n))
            changes.append(Change("hincrby", layout.funnel(partition, campaign_id, day), field, n))
    confirmed: Counter = Counter()
    for w in after.rewards.values():
        if w.role is RewardRole.REFERRER and w.status is RewardStatus.CONFIRMED and ":milestone:" not in w.reward_id:
            confirmed[w.campaign_id] += 1
    for campaign_id, n in sorted(confirmed.items()):
        changes.append(Change("zadd", layout.leaderboard(partition, campaign_id), referrer_id, n))
    return changes
