"""The reference model of the referrer stage: rewards recomputed from the whole history on every fact.

This was the worker's core until its cost grew with every referrer's history (#17); it is kept
as the test oracle: obviously correct, slow. ``streams.referrer_rewards`` decides the same
incrementally, and ``tests/unit/streams/test_referrer_incremental.py`` shows both emit the same
changes. Pure: (state, fact or tick) -> (state, reward changes).

Keyed by ``referrer_id``: every referral of one referrer (from the referee stage), the
referrer's own profile, and the clock ticks that end hold periods. The rewards are
recomputed from the referrals sorted by event time; only changes are returned, each as
a ``RewardChange`` with a deterministic reward id (``<referral_id>:referrer``,
``<referral_id>:referee``, ``<referrer>:<campaign>:milestone:<n>``).

The rules are those of ``streams.referrer_rewards`` (its docstring lists them); this module decides
them the obvious way, so that one can be checked against the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from schemas.derived import ReasonCode, RewardRole, RewardStatus
from streams.campaigns import Campaign, CampaignBook
from streams.referee_ledger import Profile, Referral
from streams.referrer_rewards import Reward, Tick


@dataclass(frozen=True, slots=True)
class ReferrerState:
    profile: Profile | None = None
    referrals: dict[str, Referral] = field(default_factory=dict)
    final: dict[str, Reward] = field(default_factory=dict)  # rewards that no longer change
    final_order: tuple[str, ...] = ()  # referral ids in the order their hold ended
    rewards: dict[str, Reward] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)  # reward id -> changes emitted


def _due(referral: Referral, campaign: Campaign) -> datetime | None:
    if referral.qualified_at is None or referral.status not in ("qualified", "revoked"):
        return None
    return referral.qualified_at + campaign.hold_period + campaign.lateness


def _held(ordered: list[Referral], profile: Profile | None, campaigns: CampaignBook) -> dict[str, ReasonCode]:
    """The referrals held for review and why, the first reason that applies in this order: the referrer's own
    e-mail or device, a device shared by more referees than allowed, a burst on one code. A device or a burst
    over the limit holds every referral in it, the earlier ones too: their rewards are pending until the hold
    ends, and an abuse is told by its size, which its first referrals do not show yet."""
    live = [r for r in ordered if r.status not in ("rejected", "withdrawn") and campaigns.get(r.campaign_id)]
    held: dict[str, ReasonCode] = {}
    if profile is not None:
        for r in live:
            if r.referee_email_hash and r.referee_email_hash == profile.email_hash:
                held[r.referral_id] = ReasonCode.SHARED_EMAIL
            elif r.referee_device_id and r.referee_device_id == profile.device_id:
                held[r.referral_id] = ReasonCode.SHARED_DEVICE
    on_device: dict[tuple[str, str], list[Referral]] = {}
    for r in live:
        if r.referee_device_id:
            on_device.setdefault((r.campaign_id, r.referee_device_id), []).append(r)
    for (campaign_id, _device), referrals in on_device.items():
        if len({r.referee_id for r in referrals}) > campaigns.get(campaign_id).referees_per_device:
            for r in referrals:
                held.setdefault(r.referral_id, ReasonCode.DEVICE_REUSED)
    by_code: dict[str, list[Referral]] = {}
    for r in live:
        by_code.setdefault(r.code, []).append(r)
    for on_code in by_code.values():  # the window ending at each referral, slid along: O(referrals)
        first = 0
        marked = 0  # referrals before this one are held already
        for last, r in enumerate(on_code):
            campaign = campaigns.get(r.campaign_id)
            while on_code[first].attributed_at <= r.attributed_at - campaign.velocity_window:
                first += 1
            if last - first + 1 > campaign.velocity_limit:
                for o in on_code[max(first, marked):last + 1]:
                    held.setdefault(o.referral_id, ReasonCode.VELOCITY_LIMIT)
                marked = last + 1
    return held


def _decide(state: ReferrerState, referrer_id: str, campaigns: CampaignBook) -> dict[str, Reward]:
    out: dict[str, Reward] = dict(state.final)
    ordered = sorted(state.referrals.values(), key=lambda r: (r.attributed_at, r.referral_id))
    profile = state.profile
    held = _held(ordered, profile, campaigns)
    # monthly cap: rewarded referrals by month of the qualifying order
    rewarded_in_month: dict[tuple[str, str], int] = {}
    for r in sorted((r for r in ordered if r.qualified_at is not None),
                    key=lambda r: (r.qualified_at, r.referral_id)):
        campaign = campaigns.get(r.campaign_id)
        if campaign is None or r.status not in ("qualified", "revoked"):
            continue
        ids = (f"{r.referral_id}:referrer", f"{r.referral_id}:referee")
        month = (r.campaign_id, r.qualified_at.strftime("%Y-%m"))
        final_referrer = state.final.get(ids[0])
        if final_referrer is not None:
            if final_referrer.status is RewardStatus.CONFIRMED:
                rewarded_in_month[month] = rewarded_in_month.get(month, 0) + 1
            continue

        # a revocation happened when the refund that caused it did
        refund_at = r.evidence.at if r.evidence is not None and r.evidence.kind == "refunded" else None

        def reward(role: RewardRole, status: RewardStatus, reason: ReasonCode | None, points: int,
                   r: Referral = r, refund_at: datetime | None = refund_at) -> Reward:
            customer = referrer_id if role is RewardRole.REFERRER else r.referee_id
            return Reward(f"{r.referral_id}:{role.value}", r.referral_id, role, customer, points, status, reason,
                          r.campaign_id, refund_at if status is RewardStatus.REVOKED and refund_at else r.qualified_at)

        if r.referral_id in held:
            reason = held[r.referral_id]
            out[ids[0]] = reward(RewardRole.REFERRER, RewardStatus.HELD_FOR_REVIEW, reason, 0)
            out[ids[1]] = reward(RewardRole.REFEREE, RewardStatus.HELD_FOR_REVIEW, reason, 0)
        elif r.status == "revoked":  # the points shown are the ones taken back
            out[ids[0]] = reward(RewardRole.REFERRER, RewardStatus.REVOKED, ReasonCode.REFUNDED_IN_HOLD,
                                 campaign.referrer_points)
            out[ids[1]] = reward(RewardRole.REFEREE, RewardStatus.REVOKED, ReasonCode.REFUNDED_IN_HOLD,
                                 campaign.referee_points)
        else:
            count = rewarded_in_month.get(month, 0)
            if count < campaign.monthly_cap:
                rewarded_in_month[month] = count + 1
                out[ids[0]] = reward(RewardRole.REFERRER, RewardStatus.PENDING, None, campaign.referrer_points)
            else:
                out[ids[0]] = reward(RewardRole.REFERRER, RewardStatus.CAPPED, ReasonCode.MONTHLY_CAP, 0)
            out[ids[1]] = reward(RewardRole.REFEREE, RewardStatus.PENDING, None, campaign.referee_points)
    return out


def _emit(state: ReferrerState, decided: dict[str, Reward]) -> tuple[ReferrerState, list[Reward]]:
    # A reward already announced never silently disappears: if a late event voids it (its referral
    # was withdrawn, rejected or no longer qualifies), it stays visible as revoked with 0 points.
    for key, old in state.rewards.items():
        if key not in decided:
            referral = state.referrals.get(old.referral_id)
            reason = referral.reason if referral is not None and referral.status == "rejected" else None
            decided[key] = replace(old, status=RewardStatus.REVOKED, points=0,
                                   reason=reason or ReasonCode.LATE_EVENT)
    changed = [w for k, w in sorted(decided.items()) if state.rewards.get(k) != w]
    counts = dict(state.changes)
    for w in changed:
        counts[w.reward_id] = counts.get(w.reward_id, 0) + 1
    return replace(state, rewards=decided, changes=counts), changed


def step(
    state: ReferrerState, referrer_id: str, fact: Referral | Profile | Tick, campaigns: CampaignBook
) -> tuple[ReferrerState, list[Reward]]:
    """Add one fact (or a tick); return the new state and the rewards that are new or changed."""
    if isinstance(fact, Profile):
        if fact == state.profile:
            return state, []
        state = replace(state, profile=fact)
    elif isinstance(fact, Referral):
        if state.referrals.get(fact.referral_id) == fact:
            return state, []
        state = replace(state, referrals={**state.referrals, fact.referral_id: fact})
    else:
        state = _finalise(state, referrer_id, fact.now, campaigns)
    return _emit(state, _decide(state, referrer_id, campaigns))


def _due_now(state: ReferrerState, now: datetime, campaigns: CampaignBook) -> list[tuple[datetime, str]]:
    """(due time, referral id) of every referral whose hold has ended by ``now`` but is not final yet."""
    due = []
    for r in state.referrals.values():
        campaign = campaigns.get(r.campaign_id)
        when = _due(r, campaign) if campaign else None
        if when is not None and when <= now and f"{r.referral_id}:referee" not in state.final:
            due.append((when, r.referral_id))
    return due


def next_due(state: ReferrerState, campaigns: CampaignBook) -> datetime | None:
    """When the next hold of a referral not final yet ends (the first tick that changes the state), or None."""
    due = None
    for r in state.referrals.values():
        campaign = campaigns.get(r.campaign_id)
        when = _due(r, campaign) if campaign else None
        if when is not None and (due is None or when < due) and f"{r.referral_id}:referee" not in state.final:
            due = when
    return due


def has_due(state: ReferrerState, now: datetime, campaigns: CampaignBook) -> bool:
    """Whether a tick at ``now`` would end the hold of some referral (cheap: no decisions computed)."""
    return bool(_due_now(state, now, campaigns))


def _finalise(state: ReferrerState, referrer_id: str, now: datetime, campaigns: CampaignBook) -> ReferrerState:
    """End the hold of every referral whose due time has passed: its rewards become final."""
    current = _decide(state, referrer_id, campaigns)
    due = _due_now(state, now, campaigns)
    if not due:
        return state
    final = dict(state.final)
    order = list(state.final_order)
    for when, referral_id in sorted(due):
        for role in ("referrer", "referee"):
            w = current.get(f"{referral_id}:{role}")
            if w is None:
                continue
            if w.status is RewardStatus.PENDING:
                w = replace(w, status=RewardStatus.CONFIRMED, at=when)
            final[w.reward_id] = w
        order.append(referral_id)
    # milestones: the n-th confirmed referral (by the end of its hold) earns the bonus
    confirmed = [rid for rid in order if final.get(f"{rid}:referrer") is not None
                 and final[f"{rid}:referrer"].status is RewardStatus.CONFIRMED]
    for rid in confirmed:
        r = state.referrals[rid]
        campaign = campaigns.get(r.campaign_id)
        if campaign is None:
            continue
        n = sum(1 for x in confirmed[: confirmed.index(rid) + 1] if state.referrals[x].campaign_id == r.campaign_id)
        if n in campaign.milestones:
            mid = f"{referrer_id}:{r.campaign_id}:milestone:{n}"
            if mid not in final:
                final[mid] = Reward(mid, rid, RewardRole.REFERRER, referrer_id, campaign.milestones[n],
                                    RewardStatus.CONFIRMED, None, r.campaign_id, final[f"{rid}:referrer"].at)
    return replace(state, final=final, final_order=tuple(order))

