"""What the live counters of one referrer say, as a snapshot of the referrer's record. Pure.

The referrer stage owns every counter. After a change it writes the referrer's whole
snapshot (``streams.redis_sink.SnapshotWriter``), fenced by the record's ``seq``:

- per referrer, values are absolute (shares by channel, clicks, signups, conversions,
  points by status, the list of referrals): writing them twice is harmless;
- the campaign funnels, ledgers (rewards by role and status, rejections by reason) and
  leaderboards are sums over referrers, so the snapshot holds the referrer's
  *contribution* to each of their fields; the script stores the contribution it applied
  last and adds only the difference. A snapshot applied twice, or one older than what
  Redis has, changes nothing.

The ledger counts what was *reached*: a reward that went from pending to confirmed counts
once under each, so every ledger field only grows (Prometheus counters, see
``consumers.exporter``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from schemas.derived import RewardRole, RewardStatus
from streams.redis_layout import RedisLayout, partition_of
from streams.referee_ledger import Referral

if TYPE_CHECKING:
    from streams.stages import ReferrerRecord

NO_CHANNEL = "unknown"  # a click without a channel; a referral attributed by a code, not a click
FunnelCell = tuple[str, str, str, str]  # (stage, campaign, channel, UTC day)


def referral_cells(referrals: Iterable[Referral]) -> Counter:
    """Signups and conversions these referrals add to the funnel, per cell.

    Every referral the referrer ever heard of appears (withdrawn and rejected ones with 0),
    so the cells of a referrer only ever grow; the writer relies on that.
    """
    cells: Counter = Counter()
    for r in referrals:
        channel = r.channel or NO_CHANNEL
        day = r.attributed_at.strftime("%Y-%m-%d")
        cells[("signup", r.campaign_id, channel, day)] += int(r.status in ("attributed", "qualified", "revoked"))
        if r.qualified_at is not None:
            qualified_day = r.qualified_at.strftime("%Y-%m-%d")
            cells[("conversion", r.campaign_id, channel, qualified_day)] += int(r.status in ("qualified", "revoked"))
    return cells


def funnel_cells(record: ReferrerRecord) -> dict[FunnelCell, int]:
    """The referrer's whole contribution: shares and clicks counted, signups and conversions decided."""
    cells = Counter(record.activity)
    cells.update(referral_cells(record.core.referrals.values()))
    for cell in record.cells:  # once contributed, a cell stays (with 0)
        cells[cell] += 0
    return dict(cells)


@dataclass(frozen=True, slots=True)
class CounterSnapshot:
    referrer_id: str
    seq: int
    referrer_key: str
    referrals_key: str
    fields: dict[str, int]
    referrals: dict[str, str | None]  # referral id -> JSON summary; None: remove (withdrawn)
    sums: dict[tuple[str, str], int]  # (funnel or ledger key, field) -> this referrer's contribution
    contribution: str  # ``sums`` as the writer keeps them in ``_funnel`` (``contribution()``)
    leaderboard: dict[str, int]  # leaderboard key -> this referrer's confirmed referrals
    campaigns_key: str  # the shard's set of campaigns
    campaigns: tuple[str, ...]  # the campaigns this referrer contributes to
    welcome: dict[str, dict[str, str]] = field(default_factory=dict)
    # ^ referee's welcome key -> reward id -> JSON of the referee's reward (streams.redis_layout)
    own_welcome_key: str = ""  # the referrer's own welcome key (as a referee), in its slot
    # ``referrals`` and ``welcome`` hold every referral (True) or only those a batch changed (False: the writer
    # leaves the others as they are; a complete snapshot follows every restart, see ``streams.app``)
    complete: bool = True

    @property
    def blank(self) -> bool:
        """Nothing to show: no share, click, referral, reward or contribution, ever (a customer the referrer
        stage knows only by their profile). Once a snapshot is not blank, none after it is (contributed cells
        stay, with 0), so leaving blank ones out of Redis never hides a change: readers take no keys as zeros."""
        return (not self.referrals and not self.sums and not self.welcome and not self.campaigns
                and not any(self.fields.values()) and not any(self.leaderboard.values()))


def ledger_cells(record: ReferrerRecord) -> dict[tuple[str, str], int]:
    """(campaign, field) -> the referrer's contribution to the campaign's ledger (see the module docstring)."""
    cells: Counter = Counter()
    for (_reward_id, status), (role, campaign_id, points) in record.reached.items():
        cells[(campaign_id, f"rewards:{role}:{status}")] += 1
        cells[(campaign_id, f"points:{role}:{status}")] += points
    for (_referral_id, reason), campaign_id in record.withheld.items():
        cells[(campaign_id, f"rejections:{reason}")] += 1
    return dict(cells)


# What a referral summary says when it leaves a field out (a referral with no reward yet, not withheld).
SUMMARY_DEFAULTS = {"reason": None, "reward_status": None, "reward_reason": None, "reward_points": 0}


def referral_summary(summary: dict[str, object]) -> str:
    """One referral as the referrals hash keeps it: compact JSON, the fields at their default left out (most
    referrals have neither a reason nor a reward yet: a third of the bytes)."""
    return json.dumps({k: v for k, v in sorted(summary.items())
                       if k not in SUMMARY_DEFAULTS or v != SUMMARY_DEFAULTS[k]}, separators=(",", ":"))


def read_referral_summary(text: str | bytes) -> dict[str, object]:
    """A referral summary with every field (``referral_summary`` left the defaults out)."""
    return {**SUMMARY_DEFAULTS, **json.loads(text)}


def contribution(funnel: dict[FunnelCell, int], ledger: dict[tuple[str, str], int]) -> str:
    """The referrer's contribution as the writer keeps it in ``_funnel``: JSON ``{campaign: {day: {field: n}}}``,
    the day ``""`` for the campaign's ledger. A campaign's total funnel is the sum of its days, so only the
    days are kept (the script adds them up); with the keys named by the script (``streams.redis_layout``)
    that is about half the bytes of naming every cell of every key."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for (stage, campaign_id, channel, day), n in sorted(funnel.items()):
        out.setdefault(campaign_id, {}).setdefault(day, {})[f"{stage}:{channel}"] = n
    for (campaign_id, name), n in sorted(ledger.items()):
        out.setdefault(campaign_id, {}).setdefault("", {})[name] = n
    return json.dumps(out, separators=(",", ":"))


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
