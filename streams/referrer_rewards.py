"""Rewards, per referrer, decided incrementally: an event costs what it touches, not what the referrer has seen.

Keyed by ``referrer_id``: every referral of one referrer (from the referee stage), the
referrer's own profile, and the clock ticks that end hold periods. Only changes are
returned, each as a ``Reward`` with a deterministic id (``<referral_id>:referrer``,
``<referral_id>:referee``, ``<referrer>:<campaign>:milestone:<n>``).

The rules (the same as the reference model, ``tests/oracle/referrer_rewards.py``, which
recomputes them from the whole history on every fact; the hypothesis tests in
``tests/unit/streams/test_referrer_incremental.py`` show both emit the same changes for any
stream of facts):

- a qualified referral gives two rewards, referrer and referee, ``pending``;
- ``held_for_review`` (both rewards, no points) when the referee shares the referrer's
  ``email_hash`` (``shared_email``) or ``device_id`` (``shared_device``) as seen on the
  referrer's own signup, when more than ``referees_per_device`` of the referrer's referees
  signed up on one device (``device_reused``: all of them), or when more than
  ``velocity_limit`` referrals used the same code within ``velocity_window``
  (``velocity_limit``: all in that window);
- the referrer's reward is ``capped`` (visible, no points) beyond ``monthly_cap`` rewarded
  referrals in the calendar month (UTC) of the qualifying order; the referee's is not;
- a revoked qualification (refund within the hold period) makes both ``revoked``;
- ticks: once ``qualified_at + hold period + lateness`` has passed, a referral's rewards
  are final: ``pending`` becomes ``confirmed``, and nothing changes them any more;
- milestone bonuses: at the n-th confirmed referral of a campaign (by the end of its hold),
  a confirmed reward of its own;
- a reward already announced that a late event voids stays visible as ``revoked`` with 0
  points and the referral's reason, or ``late_event``.

What a fact touches, and so what it costs:

- a referral: its code's referrals within two velocity windows of its time, its device
  group (the referrer's referees on one device, in one campaign), and the calendar months
  of the referrals whose hold-for-review changed; in a month, only the referrals up to
  the point where the cap is reached (an appended referral after it is capped at once);
- a tick: the referrals whose hold ended (a sorted index of due times) and the milestone
  count of their campaign;
- a change of the referrer's own profile (their first signup: once, as a rule) re-decides
  every referral: the profile rule compares each referee with it.

The state is owned by its caller and updated in place by ``step``: copying a referrer's
whole history on every event is what made an older referrer cost more. ``copy`` gives an
independent state. The indexes the decisions use (referrals by code, device, month and due
time, each one's hold reason) are derived from the state: never stored, rebuilt in one pass
over the referrals the first time a state is stepped after it was loaded or renamed.

A referral decided for good (both its rewards final: its hold has ended), or at rest without
rewards (not qualified, or rejected: only a fact about it changes what it decides), can leave the
state (``settle``): the state keeps a ``Settled`` entry with what the decisions about the others read
of it (its code and attribution time for the velocity rule, its referee and device for the
device rule, its qualifying time and whether its reward was confirmed for the monthly cap), counts
it in ``settled_confirmed`` (the milestone count), and the caller keeps the referral and its rewards
elsewhere (``streams.referrer_parts.fold``: on local disk). Whether a settled referral would be held
is not decided again: it changes none of its rewards and no count. A fact about a settled
referral needs it back first (``unsettle``: the caller's, ``step`` refuses such a fact).

The ``Settled`` entries need not stay in the state either: a caller may take them out (``forget_settled``)
and keep them elsewhere, as long as it puts back (``recall``) before each step every entry the step may
read, which ``settled_reads`` names: the entries of a code around the times of the referrals whose hold the
fact may change, their device groups, and the months they stand in. So a referrer's settled history costs
its state nothing (the worker keeps it on disk: ``streams.referrer_parts``); a state that keeps every entry
(the tests, the in-process benches) decides the same.
"""

from __future__ import annotations

import copy as _copy
from bisect import bisect_left, insort
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from schemas.derived import ReasonCode, RewardRole, RewardStatus
from streams.campaigns import Campaign, CampaignBook
from streams.referee_ledger import Profile, Referral

_AT = 0  # index entries are (time, referral id): sorted by time, then id
_ONE_TICK = timedelta(microseconds=1)  # datetimes have microseconds: ``t + _ONE_TICK`` is the next instant
Key = tuple[datetime, str]  # an index entry: (time, referral id)


@dataclass(frozen=True, slots=True)
class Tick:
    """The clock: the worker's timer sends it; replays use the times recorded."""

    now: datetime


@dataclass(frozen=True, slots=True)
class Reward:
    reward_id: str
    referral_id: str
    role: RewardRole
    customer_id: str
    points: int
    status: RewardStatus
    reason: ReasonCode | None
    campaign_id: str
    at: datetime  # event time of the decision's cause
    # held for review: what the rule counted when it held the reward (``_hold_count``); not a decision, so equality
    # leaves it out (a later count does not change the reward)
    count: int | None = field(default=None, compare=False)


class Settled(NamedTuple):
    """What a referral decided for good (or at rest without rewards: ``settleable``) leaves in its referrer's
    state (``settle``): what the decisions of the others read of it (its code's velocity, its device group, its
    month's cap, the milestone count), not the referral and its rewards, which its caller keeps elsewhere
    (``streams.part_store``) and hands back with ``unsettle`` before a fact changes the referral again."""

    campaign_id: str
    code: str
    attributed_at: datetime
    qualified_at: datetime | None  # None: it never qualified
    referee_id: str
    referee_device_id: str | None
    live: bool  # not rejected or withdrawn: it counts in its code's velocity and its device group
    in_month: bool  # qualified or revoked: it stands in its month's order
    confirmed: bool  # its referrer reward is confirmed: it counts against the cap and towards milestones
    version: int | None = None  # the caller's: the newest version of the referral's fact applied


@dataclass
class ReferrerState:
    """What one referrer's decisions rest on. Mutable: ``step`` updates it in place (see the module docstring)."""

    profile: Profile | None = None
    referrals: dict[str, Referral] = field(default_factory=dict)  # every referral heard of, withdrawn ones too
    rewards: dict[str, Reward] = field(default_factory=dict)  # every reward announced, as it stands now
    final: set[str] = field(default_factory=set)  # ids of the rewards that no longer change
    changes: dict[str, int] = field(default_factory=dict)  # reward id -> changes emitted
    # referrals decided for good, out of ``referrals``, ``rewards``, ``final`` and ``changes`` (``settle``): every
    # one, or those a caller keeping them elsewhere put back for a step (``recall``, ``settled_reads``)
    settled: dict[str, Settled] = field(default_factory=dict)
    # campaign -> settled referrals whose referrer reward is confirmed (the milestone count's settled part: kept
    # here, not derived from ``settled``, which may hold only some of them)
    settled_confirmed: dict[str, int] = field(default_factory=dict)

    def copy(self) -> ReferrerState:
        """An independent state (the indexes are rebuilt when it is first stepped)."""
        return ReferrerState(self.profile, dict(self.referrals), dict(self.rewards), set(self.final),
                             dict(self.changes), dict(self.settled), dict(self.settled_confirmed))

    def __copy__(self) -> ReferrerState:
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> ReferrerState:
        return ReferrerState(*(_copy.deepcopy(getattr(self, f), memo) for f in _FIELDS))


    def bonuses(self) -> dict[str, list[str]]:
        """referral id -> the milestone rewards it earned (derived, kept while the state lives)."""
        bonus = self.__dict__.get("_bonus")
        if bonus is None:
            bonus = self.__dict__["_bonus"] = {}
            for w in self.rewards.values():
                if not _own(w):
                    bonus.setdefault(w.referral_id, []).append(w.reward_id)
        return bonus

    def forget_bonuses(self, referral_id: str) -> None:
        bonus = self.__dict__.get("_bonus")
        if bonus is not None:
            bonus.pop(referral_id, None)

    def note_bonus(self, w: Reward) -> None:
        bonus = self.__dict__.get("_bonus")
        if bonus is not None and not _own(w) and w.reward_id not in bonus.get(w.referral_id, ()):
            bonus.setdefault(w.referral_id, []).append(w.reward_id)


_FIELDS = ("profile", "referrals", "rewards", "final", "changes", "settled", "settled_confirmed")


def own_reward_id(referral_id: str, role: RewardRole) -> str:
    """The id of a referral's own reward for ``role`` (the read API names rewards with it)."""
    return f"{referral_id}:{role.value}"


def _own(w: Reward) -> bool:
    """A referral's own reward (referrer or referee), not a milestone bonus it earned."""
    return w.reward_id == f"{w.referral_id}:{w.role.value}"


def rewards_of(state: ReferrerState, referral_id: str) -> list[Reward]:
    """A referral's rewards: its own two, then the milestone bonuses it earned."""
    out = [w for role in ("referrer", "referee") if (w := state.rewards.get(f"{referral_id}:{role}")) is not None]
    return out + [state.rewards[mid] for mid in state.bonuses().get(referral_id, ())]


class _Index:
    """The state's referrals arranged for the decisions; derived, rebuilt by ``_index`` when missing."""

    __slots__ = ("book", "by_code", "by_device", "by_month", "due", "held", "capped_from", "confirmed")

    def __init__(self, book: CampaignBook) -> None:
        self.book = book
        self.by_code: dict[str, list[tuple[datetime, str]]] = {}  # live referrals by code, by attribution time
        self.by_device: dict[tuple[str, str], DeviceGroup] = {}  # (campaign, device) -> its referrals' referees
        self.by_month: dict[tuple[str, str], list[tuple[datetime, str]]] = {}  # (campaign, month) -> by qualified_at
        self.due: list[tuple[datetime, str]] = []  # (end of hold, referral id), not final yet
        self.held: dict[str, ReasonCode] = {}  # live referral -> why held for review
        self.capped_from: dict[tuple[str, str], tuple[datetime, str] | None] = {}  # month -> entry reaching the cap
        self.confirmed: dict[str, int] = {}  # campaign -> referrals confirmed so far (the milestone count)


# A device group: the referrals of one (campaign, device) and their referees. Most referees have a device of their
# own, so a group of one is a (referral, referee) pair; a dict per group was the largest part of a referrer's index
# in memory (about 300 bytes a referral). Groups of more are dicts: referral -> referee.
DeviceGroup = tuple[str, str] | dict[str, str]


def _members(group: DeviceGroup | None) -> dict[str, str]:
    if group is None:
        return {}
    return {group[0]: group[1]} if isinstance(group, tuple) else group


def _join_group(groups: dict[tuple[str, str], DeviceGroup], key: tuple[str, str], referral_id: str, referee_id: str
                ) -> None:
    group = groups.get(key)
    if group is None or (isinstance(group, tuple) and group[0] == referral_id):
        groups[key] = (referral_id, referee_id)
    elif isinstance(group, tuple):
        groups[key] = {group[0]: group[1], referral_id: referee_id}
    else:
        group[referral_id] = referee_id


def _leave_group(groups: dict[tuple[str, str], DeviceGroup], key: tuple[str, str], referral_id: str) -> None:
    group = groups.get(key)
    if isinstance(group, tuple):
        if group[0] == referral_id:
            del groups[key]
    elif group is not None:
        group.pop(referral_id, None)
        if not group:
            del groups[key]


# -- which index a referral belongs in --------------------------------------------------------------------------


_NOT_LIVE = ("rejected", "withdrawn")  # statuses of referrals that count in no velocity window or device group
_IN_MONTH = ("qualified", "revoked")  # statuses of referrals that stand in their month's order (the cap)


def _live(r: Referral, campaigns: CampaignBook) -> bool:
    return r.status not in _NOT_LIVE and campaigns.get(r.campaign_id) is not None


def cap_month(campaign_id: str, qualified_at: datetime) -> tuple[str, str]:
    """The (campaign, calendar month in UTC) whose cap a referral qualified at ``qualified_at`` counts against."""
    return campaign_id, f"{qualified_at.year:04d}-{qualified_at.month:02d}"


def _month_of(r: Referral, campaigns: CampaignBook) -> tuple[str, str] | None:
    """The (campaign, month) whose cap the referral counts against, or None: it has no rewards to decide."""
    if r.qualified_at is None or r.status not in _IN_MONTH or campaigns.get(r.campaign_id) is None:
        return None
    return cap_month(r.campaign_id, r.qualified_at)


def _due_of(r: Referral, campaign: Campaign) -> datetime:
    assert r.qualified_at is not None
    return r.qualified_at + campaign.hold_period + campaign.lateness


def _remove(entries: list[tuple[datetime, str]], entry: tuple[datetime, str]) -> None:
    i = bisect_left(entries, entry)
    if i < len(entries) and entries[i] == entry:
        del entries[i]


def _take(lists: dict[Any, list[tuple[datetime, str]]], key: Any, entry: tuple[datetime, str]) -> None:
    """``entry`` out of the sorted list under ``key``, and the list with it once empty."""
    entries = lists.get(key)
    if entries is not None:
        _remove(entries, entry)
        if not entries:
            del lists[key]


def _unindex(state: ReferrerState, idx: _Index, r: Referral) -> None:
    book = idx.book
    if _live(r, book):
        _take(idx.by_code, r.code, (r.attributed_at, r.referral_id))
        if r.referee_device_id:
            _leave_group(idx.by_device, (r.campaign_id, r.referee_device_id), r.referral_id)
    idx.held.pop(r.referral_id, None)
    month = _month_of(r, book)
    if month is not None:
        _take(idx.by_month, month, (r.qualified_at, r.referral_id))  # type: ignore[arg-type]
        if f"{r.referral_id}:referee" not in state.final:
            _remove(idx.due, (_due_of(r, book.get(r.campaign_id)), r.referral_id))


def _add_to_index(state: ReferrerState, idx: _Index, r: Referral) -> None:
    book = idx.book
    if _live(r, book):
        insort(idx.by_code.setdefault(r.code, []), (r.attributed_at, r.referral_id))
        if r.referee_device_id:
            _join_group(idx.by_device, (r.campaign_id, r.referee_device_id), r.referral_id, r.referee_id)
    month = _month_of(r, book)
    if month is not None:
        insort(idx.by_month.setdefault(month, []), (r.qualified_at, r.referral_id))  # type: ignore[arg-type]
        if f"{r.referral_id}:referee" not in state.final:
            insort(idx.due, (_due_of(r, book.get(r.campaign_id)), r.referral_id))


def _add_settled(idx: _Index, referral_id: str, s: Settled) -> None:
    """A settled referral's entries: those ``_add_to_index`` gave the referral (it is never due any more). Its
    confirmed reward is in the milestone count through ``settled_confirmed``."""
    if idx.book.get(s.campaign_id) is None:
        return
    if s.live:
        insort(idx.by_code.setdefault(s.code, []), (s.attributed_at, referral_id))
        if s.referee_device_id:
            _join_group(idx.by_device, (s.campaign_id, s.referee_device_id), referral_id, s.referee_id)
    if s.in_month and s.qualified_at is not None:
        insort(idx.by_month.setdefault(cap_month(s.campaign_id, s.qualified_at), []), (s.qualified_at, referral_id))


def _drop_settled(idx: _Index, referral_id: str, s: Settled) -> None:
    """A settled referral's entries out of the index (``_add_settled`` undone)."""
    if idx.book.get(s.campaign_id) is None:
        return
    if s.live:
        _take(idx.by_code, s.code, (s.attributed_at, referral_id))
        if s.referee_device_id:
            _leave_group(idx.by_device, (s.campaign_id, s.referee_device_id), referral_id)
    if s.in_month and s.qualified_at is not None:
        _take(idx.by_month, cap_month(s.campaign_id, s.qualified_at), (s.qualified_at, referral_id))


# -- hold for review ------------------------------------------------------------------------------------------


def _campaign_of(state: ReferrerState, referral_id: str) -> str:
    r = state.referrals.get(referral_id)
    return r.campaign_id if r is not None else state.settled[referral_id].campaign_id


def _over_velocity(state: ReferrerState, entries: list[tuple[datetime, str]], i: int, book: CampaignBook) -> int:
    """How many referrals the first window of its code holding the referral at ``entries[i]`` and more than the
    limit holds (0: no such window): a window ends at each referral r (those after r.at - window, up to r in
    order); ``i`` is in r's if r is at or after it in order and r.at - window < its time."""
    at = entries[i][_AT]
    for j in range(i, len(entries)):
        r_at, r_id = entries[j]
        campaign = book.get(_campaign_of(state, r_id))
        window = campaign.velocity_window
        if r_at - window >= at:
            break  # later referrals' windows start after this one (one campaign per code: one window)
        first = bisect_left(entries, (r_at - window + _ONE_TICK,))  # the first after r.at - window
        if j - first + 1 > campaign.velocity_limit:
            return j - first + 1
    return 0


def _hold_reason(state: ReferrerState, idx: _Index, r: Referral, over_device: dict[tuple[str, str], bool]
                 ) -> ReasonCode | None:
    """Why a live referral is held for review (the first rule that applies, in the reference's order), or None."""
    profile = state.profile
    if profile is not None:
        if r.referee_email_hash and r.referee_email_hash == profile.email_hash:
            return ReasonCode.SHARED_EMAIL
        if r.referee_device_id and r.referee_device_id == profile.device_id:
            return ReasonCode.SHARED_DEVICE
    if r.referee_device_id:
        group_key = (r.campaign_id, r.referee_device_id)
        over = over_device.get(group_key)
        if over is None:
            referees = set(_members(idx.by_device.get(group_key)).values())
            over = over_device[group_key] = len(referees) > idx.book.get(r.campaign_id).referees_per_device
        if over:
            return ReasonCode.DEVICE_REUSED
    entries = idx.by_code.get(r.code, [])
    i = bisect_left(entries, (r.attributed_at, r.referral_id))
    if _over_velocity(state, entries, i, idx.book):
        return ReasonCode.VELOCITY_LIMIT
    return None


def _hold_count(state: ReferrerState, idx: _Index, w: Reward) -> int | None:
    """What a held reward's rule counted when it was held (the story tells it): the signups on the code in the
    window over the limit (``velocity_limit``), the referees on the device (``device_reused``); None otherwise."""
    r = state.referrals.get(w.referral_id)
    if r is None or w.status is not RewardStatus.HELD_FOR_REVIEW:
        return None
    if w.reason is ReasonCode.VELOCITY_LIMIT:
        entries = idx.by_code.get(r.code, [])
        return _over_velocity(state, entries, bisect_left(entries, (r.attributed_at, r.referral_id)), idx.book) or None
    if w.reason is ReasonCode.DEVICE_REUSED and r.referee_device_id:
        return len(set(_members(idx.by_device.get((r.campaign_id, r.referee_device_id))).values())) or None
    return None


def _rehold(state: ReferrerState, idx: _Index, referral_ids: set[str]) -> set[str]:
    """Decide again whether each of ``referral_ids`` is held; those whose answer changed."""
    changed: set[str] = set()
    over_device: dict[tuple[str, str], bool] = {}
    for rid in referral_ids:
        if rid in state.settled:
            continue  # decided for good: whether it would be held changes none of its rewards, nor the cap's count
        r = state.referrals.get(rid)
        reason = _hold_reason(state, idx, r, over_device) if r is not None and _live(r, idx.book) else None
        if reason != idx.held.get(rid):
            if reason is None:
                del idx.held[rid]
            else:
                idx.held[rid] = reason
            changed.add(rid)
    return changed


def _positions(state: ReferrerState, idx: _Index, referral_ids: set[str]) -> dict[tuple[str, str], set[Key]]:
    """Where each referral stands in its month now: month -> positions."""
    out: dict[tuple[str, str], set[Key]] = {}
    for rid in referral_ids:
        r = state.referrals[rid]
        month = _month_of(r, idx.book)
        if month is not None:
            out.setdefault(month, set()).add((r.qualified_at, rid))  # type: ignore[arg-type]
    return out


def _neighbours(state: ReferrerState, idx: _Index, r: Referral) -> set[str]:
    """The referrals whose hold ``r`` can change: its code's within one velocity window of it (a window holding r
    ends at some referral in [r.at, r.at + window) and starts after r.at - window), its device group."""
    out = {r.referral_id}
    if not _live(r, idx.book):
        return out
    reach = max((c.velocity_window for c in idx.book.campaign), default=timedelta(0))
    entries = idx.by_code.get(r.code, [])
    lo = bisect_left(entries, (r.attributed_at - reach,))
    hi = bisect_left(entries, (r.attributed_at + reach + _ONE_TICK,))
    out.update(rid for _, rid in entries[lo:hi])
    if r.referee_device_id:
        out.update(_members(idx.by_device.get((r.campaign_id, r.referee_device_id))))
    return out


# -- rewards by month: the cap --------------------------------------------------------------------------------


def _reward(referrer_id: str, r: Referral, role: RewardRole, status: RewardStatus, reason: ReasonCode | None,
            points: int) -> Reward:
    customer = referrer_id if role is RewardRole.REFERRER else r.referee_id
    return Reward(f"{r.referral_id}:{role.value}", r.referral_id, role, customer, points, status, reason,
                  r.campaign_id, decided_at(r, status))


def decided_at(r: Referral, status: RewardStatus) -> datetime:
    """The event time of a reward decision: the refund that revoked it, else the qualifying order."""
    if status is RewardStatus.REVOKED and r.evidence is not None and r.evidence.kind == "refunded":
        return r.evidence.at
    return r.qualified_at  # type: ignore[return-value]


def _decide_one(referrer_id: str, r: Referral, campaign: Campaign, held: ReasonCode | None, count: int,
                out: dict[str, Reward]) -> bool:
    """Both rewards of a referral that is not final; whether its referrer's reward counts against the cap."""
    if held is not None:
        out[f"{r.referral_id}:referrer"] = _reward(referrer_id, r, RewardRole.REFERRER,
                                                   RewardStatus.HELD_FOR_REVIEW, held, 0)
        out[f"{r.referral_id}:referee"] = _reward(referrer_id, r, RewardRole.REFEREE,
                                                  RewardStatus.HELD_FOR_REVIEW, held, 0)
        return False
    if r.status == "revoked":  # the points shown are the ones taken back
        out[f"{r.referral_id}:referrer"] = _reward(referrer_id, r, RewardRole.REFERRER, RewardStatus.REVOKED,
                                                   ReasonCode.REFUNDED_IN_HOLD, campaign.referrer_points)
        out[f"{r.referral_id}:referee"] = _reward(referrer_id, r, RewardRole.REFEREE, RewardStatus.REVOKED,
                                                  ReasonCode.REFUNDED_IN_HOLD, campaign.referee_points)
        return False
    rewarded = count < campaign.monthly_cap
    out[f"{r.referral_id}:referrer"] = (
        _reward(referrer_id, r, RewardRole.REFERRER, RewardStatus.PENDING, None, campaign.referrer_points)
        if rewarded else
        _reward(referrer_id, r, RewardRole.REFERRER, RewardStatus.CAPPED, ReasonCode.MONTHLY_CAP, 0))
    out[f"{r.referral_id}:referee"] = _reward(referrer_id, r, RewardRole.REFEREE, RewardStatus.PENDING, None,
                                              campaign.referee_points)
    return rewarded


def _decide_month(state: ReferrerState, idx: _Index, referrer_id: str, month: tuple[str, str],
                  changes: set[Key], out: dict[str, Reward]) -> None:
    """Decide the rewards of a month's referrals again after ``changes``: the positions (qualifying order's
    time, referral id) where a referral came, went or had its hold changed. The month is walked in order,
    counting the rewarded referrals against the cap. Once the cap is reached, every later referral that is
    not held or revoked is capped whatever comes before it; so a month whose changes all come after the entry
    that reached the cap decides only the referrals at them, and a walk stops once it has passed every change
    and the entry that reached the cap before (everything after it stays capped). A month whose cap was not
    reached before is walked to its end."""
    entries = idx.by_month.get(month, [])
    campaign = idx.book.get(month[0])
    capped_from = idx.capped_from.get(month)
    if capped_from is not None and changes and min(changes) > capped_from:
        for key in sorted(changes):
            rid = key[1]
            r = state.referrals[rid]
            if (r.qualified_at, rid) == key and _month_of(r, idx.book) == month \
                    and f"{rid}:referrer" not in state.final:
                _decide_one(referrer_id, r, campaign, idx.held.get(rid), campaign.monthly_cap, out)
        return
    last_change = max(changes, default=None)
    count = 0
    reached: Key | None = None
    for entry in entries:
        # past the reach, every change and the reach before (with none before, every later referral was decided
        # uncapped and is capped now: walked to the end)
        if reached is not None and (last_change is None or entry > last_change) \
                and capped_from is not None and entry > capped_from:
            break
        rid = entry[1]
        referrer_reward = f"{rid}:referrer"
        settled = state.settled.get(rid)
        if settled is not None:
            count += settled.confirmed
        elif referrer_reward in state.final:
            if state.rewards[referrer_reward].status is RewardStatus.CONFIRMED:
                count += 1
        elif _decide_one(referrer_id, state.referrals[rid], campaign, idx.held.get(rid), count, out):
            count += 1
        if reached is None and count >= campaign.monthly_cap:
            reached = entry
    if entries:
        idx.capped_from[month] = reached
    else:
        idx.capped_from.pop(month, None)


# -- the step -------------------------------------------------------------------------------------------------


def _index(state: ReferrerState, book: CampaignBook) -> _Index:
    idx: _Index | None = getattr(state, "_idx", None)
    if idx is not None and idx.book is book:
        return idx
    idx = _Index(book)
    for r in state.referrals.values():
        _add_to_index(state, idx, r)
    for rid, settled in state.settled.items():
        _add_settled(idx, rid, settled)
    # why each live referral is held, as its rewards show it (every change of it decided its month again): not
    # decided again here, where the settled referrals it reads may not all be in the state (``settled_reads``).
    # One without rewards in its month shows none; its hold reads nothing but a fact about it, which decides it
    # again (and ``redecide``, after a torn write, decides every one again)
    for r in state.referrals.values():
        w = state.rewards.get(f"{r.referral_id}:referrer")
        if w is not None and w.status is RewardStatus.HELD_FOR_REVIEW and w.reason is not None and _live(r, book):
            idx.held[r.referral_id] = w.reason
    idx.confirmed.update(state.settled_confirmed)
    for reward_id in state.final:
        w = state.rewards[reward_id]
        if w.role is RewardRole.REFERRER and w.status is RewardStatus.CONFIRMED and _own(w):
            idx.confirmed[w.campaign_id] = idx.confirmed.get(w.campaign_id, 0) + 1
    # where each month's cap is reached (``capped_from``) is found by the first walk of the month: not here, where
    # the settled referrals of a month may not all be in the state (``settled_reads``)
    object.__setattr__(state, "_idx", idx)
    return idx


def _late_revoked(state: ReferrerState, old: Reward) -> Reward:
    """A reward announced that no decision gives any more: revoked, 0 points, the referral's reason or late_event."""
    referral = state.referrals.get(old.referral_id)
    reason = referral.reason if referral is not None and referral.status == "rejected" else None
    return replace(old, status=RewardStatus.REVOKED, points=0, reason=reason or ReasonCode.LATE_EVENT)


def _settle(state: ReferrerState, idx: _Index, decided: dict[str, Reward], undecided: set[str]) -> list[Reward]:
    """Store the decisions; rewards in ``undecided`` that no decision gave are revoked; return what changed (a
    reward newly held with what its rule counted: ``_hold_count``, which equality does not compare)."""
    for referral_id in undecided:
        for role in ("referrer", "referee"):
            reward_id = f"{referral_id}:{role}"
            old = state.rewards.get(reward_id)
            if old is not None and reward_id not in decided and reward_id not in state.final:
                decided[reward_id] = _late_revoked(state, old)
    changed = [w for k, w in sorted(decided.items()) if state.rewards.get(k) != w]
    changed = [replace(w, count=_hold_count(state, idx, w)) if w.status is RewardStatus.HELD_FOR_REVIEW else w
               for w in changed]
    for w in changed:
        state.rewards[w.reward_id] = w
        state.changes[w.reward_id] = state.changes.get(w.reward_id, 0) + 1
    return changed


def _on_referral(state: ReferrerState, idx: _Index, referrer_id: str, fact: Referral) -> list[Reward]:
    old = state.referrals.get(fact.referral_id)
    touched: set[str] = set()
    changes: dict[tuple[str, str], set[Key]] = {}
    if old is not None:
        touched |= _neighbours(state, idx, old)
        _unindex(state, idx, old)
        if (month := _month_of(old, idx.book)) is not None:
            changes.setdefault(month, set()).add((old.qualified_at, old.referral_id))  # type: ignore[arg-type]
    state.referrals[fact.referral_id] = fact
    _add_to_index(state, idx, fact)
    touched |= _neighbours(state, idx, fact)
    for month, keys in _positions(state, idx, _rehold(state, idx, touched) | {fact.referral_id}).items():
        changes.setdefault(month, set()).update(keys)
    decided: dict[str, Reward] = {}
    for month in sorted(changes):
        _decide_month(state, idx, referrer_id, month, changes[month], decided)
    return _settle(state, idx, decided, {fact.referral_id})


def _on_profile(state: ReferrerState, idx: _Index, referrer_id: str, fact: Profile) -> list[Reward]:
    """The profile rule compares every referee with the referrer: every live referral's hold is decided again."""
    state.profile = fact
    held = _rehold(state, idx, {r.referral_id for r in state.referrals.values() if _live(r, idx.book)})
    decided: dict[str, Reward] = {}
    for month, keys in sorted(_positions(state, idx, held).items()):
        _decide_month(state, idx, referrer_id, month, keys, decided)
    return _settle(state, idx, decided, set())


def _on_tick(state: ReferrerState, idx: _Index, referrer_id: str, now: datetime) -> list[Reward]:
    """End the hold of every referral whose due time has passed: its rewards become final, in due order."""
    cut = bisect_left(idx.due, (now + _ONE_TICK,))  # every entry due at or before now
    due, idx.due[:cut] = idx.due[:cut], []
    decided: dict[str, Reward] = {}
    for when, referral_id in due:
        for role in ("referrer", "referee"):
            reward_id = f"{referral_id}:{role}"
            w = state.rewards.get(reward_id)
            if w is None:
                continue
            if w.status is RewardStatus.PENDING:
                w = decided[reward_id] = replace(w, status=RewardStatus.CONFIRMED, at=when)
            state.final.add(w.reward_id)  # the reward's own id string, not a copy: the state holds every final id
        referrer_reward = decided.get(f"{referral_id}:referrer") or state.rewards.get(f"{referral_id}:referrer")
        if referrer_reward is None or referrer_reward.status is not RewardStatus.CONFIRMED:
            continue
        r = state.referrals[referral_id]
        campaign = idx.book.get(r.campaign_id)
        n = idx.confirmed[r.campaign_id] = idx.confirmed.get(r.campaign_id, 0) + 1
        if n in campaign.milestones:
            mid = f"{referrer_id}:{r.campaign_id}:milestone:{n}"
            if mid not in state.final:
                decided[mid] = Reward(mid, referral_id, RewardRole.REFERRER, referrer_id, campaign.milestones[n],
                                      RewardStatus.CONFIRMED, None, r.campaign_id, referrer_reward.at)
                state.final.add(mid)
    for w in decided.values():
        state.note_bonus(w)
    return _settle(state, idx, decided, set())


def step(state: ReferrerState, referrer_id: str, fact: Referral | Profile | Tick, campaigns: CampaignBook
         ) -> list[Reward] | None:
    """Add one fact (or a tick) to ``state``, in place; the rewards that are new or changed, or None if the
    fact changed nothing (a copy of what the state holds, or a tick with no hold ending)."""
    idx = _index(state, campaigns)
    if isinstance(fact, Profile):
        if fact == state.profile:
            return None
        return _on_profile(state, idx, referrer_id, fact)
    if isinstance(fact, Referral):
        if fact.referral_id in state.settled:
            raise ValueError(f"referral {fact.referral_id} is settled: unsettle it before a fact about it")
        if state.referrals.get(fact.referral_id) == fact:
            return None
        return _on_referral(state, idx, referrer_id, fact)
    if not has_due(state, fact.now, campaigns):
        return None
    return _on_tick(state, idx, referrer_id, fact.now)


def redecide(state: ReferrerState, referrer_id: str, campaigns: CampaignBook) -> list[Reward]:
    """Every decision made again from the referrals, their finality and the profile, with fresh indexes (a
    state read back from a write a crash cut short); the rewards that change."""
    state.__dict__.pop("_idx", None)
    state.__dict__.pop("_bonus", None)
    idx = _index(state, campaigns)
    _rehold(state, idx, {r.referral_id for r in state.referrals.values() if _live(r, campaigns)})
    decided: dict[str, Reward] = {}
    for month, entries in sorted(idx.by_month.items()):
        _decide_month(state, idx, referrer_id, month, {e for e in entries if e[1] not in state.settled}, decided)
    return _settle(state, idx, decided, set(state.referrals))


def next_due(state: ReferrerState, campaigns: CampaignBook) -> datetime | None:
    """When the next hold of a referral not final yet ends (the first tick that changes the state), or None."""
    due = _index(state, campaigns).due
    return due[0][_AT] if due else None


def due(state: ReferrerState, now: datetime, campaigns: CampaignBook) -> list[str]:
    """The referrals a tick at ``now`` makes final (their rewards may not change: revoked, held or capped ones
    become final as they are)."""
    entries = _index(state, campaigns).due
    return [rid for _, rid in entries[:bisect_left(entries, (now + _ONE_TICK,))]]


def has_due(state: ReferrerState, now: datetime, campaigns: CampaignBook) -> bool:
    """Whether a tick at ``now`` would end the hold of some referral."""
    due = next_due(state, campaigns)
    return due is not None and due <= now



# -- referrals decided for good ---------------------------------------------------------------------------------


def settleable(state: ReferrerState, referral_id: str) -> bool:
    """Whether nothing but a fact about the referral can change what it decides: both its rewards are final (its
    hold ended: decided for good), or it has none (not qualified, or rejected: at rest). A referral without
    rewards shows nothing another referral's fact, a tick or the profile could change: whether it would be held
    only shows once it qualifies, and that is a fact about it, before which it comes back (``unsettle``)."""
    if referral_id not in state.referrals:
        return False
    own, other = f"{referral_id}:referrer", f"{referral_id}:referee"
    if own not in state.rewards and other not in state.rewards:
        return True
    return own in state.final and other in state.final


def settle(state: ReferrerState, referral_id: str, version: int | None = None) -> tuple[Referral, list[Reward]]:
    """Take a referral decided for good (``settleable``) out of the state, in place: the state keeps its
    ``Settled`` entry, and every decision stays as it would be with the referral in it (the hypothesis tests
    hold both to the reference). Returns the referral and its rewards (the milestone bonuses it earned with
    them), for the caller to keep; ``version`` is the caller's, kept with the entry."""
    assert settleable(state, referral_id), f"{referral_id} may not settle: a tick or a neighbour can change it"
    rewards = rewards_of(state, referral_id)
    r = state.referrals.pop(referral_id)
    own = state.rewards.get(f"{referral_id}:referrer")  # None: a referral at rest without rewards
    for w in rewards:
        del state.rewards[w.reward_id]
        state.changes.pop(w.reward_id, None)
        state.final.discard(w.reward_id)
    state.forget_bonuses(referral_id)
    entry = state.settled[referral_id] = settled_entry(r, own, version)
    if entry.confirmed:
        state.settled_confirmed[entry.campaign_id] = state.settled_confirmed.get(entry.campaign_id, 0) + 1
    idx: _Index | None = state.__dict__.get("_idx")
    if idx is not None:
        idx.held.pop(referral_id, None)  # its entries stay as they are: a settled referral's are the same
    return r, rewards


def settled_entry(r: Referral, own: Reward | None, version: int | None) -> Settled:
    """The entry a settled referral leaves (``settle``): from the referral, its own referrer reward (None: it has
    none) and the caller's version of it."""
    return Settled(r.campaign_id, r.code, r.attributed_at, r.qualified_at, r.referee_id, r.referee_device_id,
                   r.status not in _NOT_LIVE, r.qualified_at is not None and r.status in _IN_MONTH,
                   own is not None and own.status is RewardStatus.CONFIRMED, version)


def unsettle(state: ReferrerState, referral_id: str) -> Settled:
    """The caller puts a settled referral back (its referral, rewards, changes and finality, as ``settle``
    returned them): its entry leaves, in place (``recall`` it first if it was taken out). The indexes keep its
    entries (the same); whether it would be held is decided again when a fact touches it."""
    entry = state.settled.pop(referral_id)
    if entry.confirmed:
        left = state.settled_confirmed[entry.campaign_id] - 1
        if left:
            state.settled_confirmed[entry.campaign_id] = left
        else:
            del state.settled_confirmed[entry.campaign_id]
    return entry


# -- settled entries kept elsewhere -------------------------------------------------------------------------------


def recall(state: ReferrerState, referral_id: str, entry: Settled) -> None:
    """A settled referral's entry back into the state, with its places in the indexes (a caller that keeps the
    entries elsewhere: ``settled_reads``); one the state holds already stays as it is."""
    if referral_id in state.settled:
        return
    state.settled[referral_id] = entry
    idx: _Index | None = state.__dict__.get("_idx")
    if idx is not None:
        _add_settled(idx, referral_id, entry)


def forget_settled(state: ReferrerState, referral_id: str) -> None:
    """A settled referral's entry out of the state and its indexes (the caller keeps it: ``recall``); it still
    counts in ``settled_confirmed``."""
    entry = state.settled.pop(referral_id)
    idx: _Index | None = state.__dict__.get("_idx")
    if idx is not None:
        _drop_settled(idx, referral_id, entry)


class Reads(NamedTuple):
    """What a step may read of the settled referrals (``settled_reads``), for a caller that keeps their entries
    out of the state to put back first."""

    spans: dict[str, tuple[datetime, datetime]]  # code -> (first, last): its entries attributed in between
    groups: set[tuple[str, str]]  # (campaign, device): every entry of the device group
    months: set[tuple[str, str]]  # (campaign, month): every entry standing in the month (its confirmed ones)


def settled_reads(state: ReferrerState, fact: Referral | Profile | Tick, campaigns: CampaignBook) -> Reads:
    """The settled entries a step of ``fact`` may read, given the state as it is before the step (with the entry
    of the fact's own referral put back if it is settled: ``unsettle`` it first if the fact changes it).

    A step decides again whether some live referrals are held (``_rehold``): the fact's own referral (before and
    after), its code's within one velocity window of it, its device group's (every live one for a new profile).
    Deciding one reads its device group and its code's referrals within one velocity window of its time; the
    months whose cap walk follows are those of the referrals whose hold changed and of the fact's own, and a walk
    reads every referral standing in its month. A tick reads none: it ends holds and counts milestones."""
    spans: dict[str, tuple[datetime, datetime]] = {}
    groups: set[tuple[str, str]] = set()
    months: set[tuple[str, str]] = set()
    if isinstance(fact, Tick):
        return Reads(spans, groups, months)
    book = campaigns
    idx = _index(state, book)
    if isinstance(fact, Profile):
        touched = [r for r in state.referrals.values() if _live(r, book)]
    else:
        old = state.referrals.get(fact.referral_id)
        around = {rid for r in (old, fact) if r is not None for rid in _neighbours(state, idx, r)}
        touched = [fact] + [r for rid in around if rid != fact.referral_id
                            and (r := state.referrals.get(rid)) is not None and _live(r, book)]
        for r in (old, fact):
            if r is not None and (month := _month_of(r, book)) is not None:
                months.add(month)
    reach = max((c.velocity_window for c in book.campaign), default=timedelta(0))
    for r in touched:
        if not _live(r, book):
            continue
        first, last = r.attributed_at - reach, r.attributed_at + reach
        span = spans.get(r.code)
        spans[r.code] = (first, last) if span is None else (min(span[0], first), max(span[1], last))
        if r.referee_device_id:
            groups.add((r.campaign_id, r.referee_device_id))
        if (month := _month_of(r, book)) is not None:
            months.add(month)
    return Reads(spans, groups, months)
