"""The counter snapshot as it was computed before #17 made its totals incremental: every total summed over
the referrer's whole history on every snapshot. The reference model of ``streams.counters.snapshot``'s totals
(``tests/unit/streams/test_counters.py``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

from schemas.derived import RewardRole, RewardStatus
from streams.counters import (
    NO_CHANNEL,
    CounterSnapshot,
    contribution,
    funnel_cells,
    ledger_cells,
    referral_summary,
)
from streams.redis_layout import RedisLayout, partition_of
from streams.stages import ReferrerRecord


def snapshot(layout: RedisLayout, referrer_id: str, record: ReferrerRecord,
             only: Iterable[str] | None = None) -> CounterSnapshot:
    """The referrer's counters; with ``only``, the summaries and welcome rewards of just those referrals (the
    ones a batch changed: a partial snapshot, the totals still whole), else of all of them."""
    core = record.core
    p = partition_of(referrer_id, layout.partitions)
    live = [r for r in core.referrals.values() if r.status != "withdrawn"]
    fields: dict[str, int] = {"clicks": 0, "signups": 0, "conversions": 0,
                              "points:pending": 0, "points:confirmed": 0, "points:revoked": 0}
    for (stage, _campaign, channel, _day), n in record.activity.items():
        if stage == "share":
            fields[f"shares:{channel}"] = fields.get(f"shares:{channel}", 0) + n
        else:
            fields["clicks"] += n
    fields["signups"] = sum(1 for r in live if r.status in ("attributed", "qualified", "revoked"))
    fields["conversions"] = sum(1 for r in live if r.status in ("qualified", "revoked"))
    for w in core.rewards.values():
        if w.customer_id == referrer_id and f"points:{w.status.value}" in fields:
            fields[f"points:{w.status.value}"] += w.points
    referrals: dict[str, str | None] = {}
    shown = sorted(core.referrals) if only is None else sorted(rid for rid in set(only) if rid in core.referrals)
    for r in (core.referrals[rid] for rid in shown):
        if r.status == "withdrawn":
            referrals[r.referral_id] = None
            continue
        reward = core.rewards.get(f"{r.referral_id}:{RewardRole.REFERRER.value}")
        if reward is not None and reward.status is RewardStatus.REVOKED and reward.points == 0:
            reward = None  # announced, then voided by a late event: the referral's own status says why
        referrals[r.referral_id] = referral_summary({
            "referee_id": r.referee_id, "campaign_id": r.campaign_id, "status": r.status,
            "reason": r.reason.value if r.reason else None, "channel": r.channel or NO_CHANNEL,
            "attributed_at": r.attributed_at.isoformat(),
            "reward_status": reward.status.value if reward else None,
            "reward_reason": reward.reason.value if reward and reward.reason else None,
            "reward_points": reward.points if reward else 0,
        })
    sums: dict[tuple[str, str], int] = {}
    funnel, ledger = funnel_cells(record), ledger_cells(record)
    for (stage, campaign_id, channel, day), n in funnel.items():
        field = f"{stage}:{channel}"
        for key in (layout.funnel(p, campaign_id), layout.funnel(p, campaign_id, day)):
            sums[(key, field)] = sums.get((key, field), 0) + n
    for (campaign_id, field), n in ledger.items():
        sums[(layout.ledger(p, campaign_id), field)] = n
    confirmed: Counter = Counter({r.campaign_id: 0 for r in core.referrals.values()})
    for w in core.rewards.values():
        if w.role is RewardRole.REFERRER and w.status is RewardStatus.CONFIRMED and ":milestone:" not in w.reward_id:
            confirmed[w.campaign_id] += 1
    campaigns = {c for (_, c, _, _) in record.cells} | {c for c, _ in ledger} | set(confirmed)
    welcome: dict[str, dict[str, str]] = {}
    if only is None:
        referee_rewards = sorted(core.rewards.values(), key=lambda w: w.reward_id)
    else:
        referee_rewards = [w for rid in shown if (w := core.rewards.get(f"{rid}:{RewardRole.REFEREE.value}"))]
    for w in referee_rewards:
        if w.role is RewardRole.REFEREE:
            welcome.setdefault(layout.welcome(w.customer_id), {})[w.reward_id] = json.dumps({
                "status": w.status.value, "points": w.points, "reason": w.reason.value if w.reason else None,
                "campaign_id": w.campaign_id, "referrer_id": referrer_id}, sort_keys=True)
    return CounterSnapshot(
        referrer_id=referrer_id, seq=record.seq, referrer_key=layout.referrer(referrer_id),
        referrals_key=layout.referrals(referrer_id), fields=fields, referrals=referrals, sums=sums,
        leaderboard={layout.leaderboard(p, c): n for c, n in sorted(confirmed.items())},
        campaigns_key=layout.campaigns(p), campaigns=tuple(sorted(campaigns)), welcome=welcome,
        own_welcome_key=layout.welcome(referrer_id), contribution=contribution(funnel, ledger),
        complete=only is None)
