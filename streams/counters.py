"""What the live counters of one referrer say, as a snapshot of the referrer's record. Pure.

The referrer stage owns every counter. After a change it writes the referrer's whole
snapshot (``streams.redis_sink.SnapshotWriter``), fenced by the record's ``seq``:

- per referrer, values are absolute (shares by channel, clicks, signups, conversions,
  points by status, the list of referrals): writing them twice is harmless;
- the campaign funnels, ledgers (rewards by role and status, rejections by reason) and
  leaderboards are sums over referrers, so the snapshot holds the referrer's
  *contribution* to each of their cells (a funnel's day, a ledger's field); the script
  stores, per cell, the contribution it applied last and adds only the difference. A
  snapshot applied twice, or one older than what Redis has, changes nothing.

A *complete* snapshot names every cell the referrer ever contributed to and every referral; a
*partial* one (``only``: what a batch changed) names only the cells and referrals the batch
touched, so what it costs, to compute and in Redis, is what the batch touched, not the days
the referrer was active. The worker writes a complete one first for every referrer a process
touches (``streams.stage_runner``), so a partial one always lands on what the ones before wrote.

The ledger counts what was *reached*: a reward that went from pending to confirmed counts
once under each, so every ledger field only grows (Prometheus counters, see
``consumers.exporter``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from schemas.derived import ReasonCode, RewardRole, RewardStatus
from streams.interning import interned
from streams.redis_layout import RedisLayout, partition_of
from streams.referee_ledger import Referral
from streams.referrer_rewards import Reward, rewards_of

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


def channel_totals(record: ReferrerRecord) -> Counter:
    """(stage, channel) -> the shares and clicks the referrer counted: derived from ``activity`` and the days out
    of it (``archived``), kept with the record's state while it lives (``counted`` brings it up to date;
    ``forget`` drops it when ``activity`` changed otherwise; a day moved out of ``activity`` or back changes no
    total), so the referrer's own fields cost the channels, not the days."""
    kept = record.core.__dict__.get("_channel_totals")
    if kept is None:
        kept = record.core.__dict__["_channel_totals"] = Counter()
        for key, n in record.archived.items():
            kept[interned(key)] += n
        for (stage, _campaign, channel, _day), n in record.activity.items():
            kept[interned((stage, channel))] += n  # one key object per (stage, channel) in the process
    return kept


def counted(record: ReferrerRecord, cell: FunnelCell) -> None:
    """One more share or click in ``cell`` (after ``activity`` has it)."""
    kept = record.core.__dict__.get("_channel_totals")
    if kept is not None:
        kept[interned((cell[0], cell[2]))] += 1


def forget(record: ReferrerRecord) -> None:
    """``activity`` changed otherwise than by ``counted``: the derived totals are rebuilt when next asked."""
    record.core.__dict__.pop("_channel_totals", None)


def funnel_cells(record: ReferrerRecord) -> dict[FunnelCell, int]:
    """The referrer's whole contribution: shares and clicks counted, signups and conversions decided; the cells
    it counts in now (none at 0)."""
    cells = Counter(record.activity)
    cells.update(referral_cells(record.core.referrals.values()))
    for key, (n, _named) in record.settled_sums.items():
        if key[0] == "cell":
            cells[key[1]] += n
    return {cell: n for cell, n in cells.items() if n}  # a cell at 0 adds nothing (nor is it kept: ``_every_cell``)


@dataclass(frozen=True, slots=True)
class CounterSnapshot:
    referrer_id: str
    seq: int
    referrer_key: str
    referrals_key: str
    fields: dict[str, int]
    referrals: dict[str, str | None]  # referral id -> JSON summary; None: remove (withdrawn)
    sums: dict[tuple[str, str], int]  # (funnel or ledger key, field) -> the contribution of the cells it names
    contribution: str  # those cells, as the writer's script reads them (``contribution()``)
    leaderboard: dict[str, int]  # leaderboard key -> this referrer's confirmed referrals
    campaigns_key: str  # the shard's set of campaigns
    campaigns: tuple[str, ...]  # the campaigns this referrer contributes to
    welcome: dict[str, dict[str, str]] = field(default_factory=dict)
    # ^ referee's welcome key -> reward id -> JSON of the referee's reward (streams.redis_layout)
    own_welcome_key: str = ""  # the referrer's own welcome key (as a referee), in its slot
    # ``referrals`` and ``welcome`` hold every referral (True) or only those a batch changed (False: the writer
    # leaves the others as they are; a complete snapshot follows every restart, see ``streams.app``)
    complete: bool = True
    cells_key: str = ""  # where the writer keeps, per cell, the contribution it applied (``streams.redis_layout``)

    @property
    def blank(self) -> bool:
        """Nothing to show: no share, click, referral, reward or contribution, ever (a customer the referrer
        stage knows only by their profile). Once a complete snapshot is not blank, none after it is (contributed
        cells stay, with 0), so leaving blank ones out of Redis never hides a change: readers take no keys as
        zeros. A partial one is blank when the batch changed nothing it shows: nothing to write either."""
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


_POINTS = ("pending", "confirmed", "revoked")  # the statuses whose points a referrer's hash shows


Contribution = tuple[tuple[tuple, int], ...]  # (key, n) pairs: what one referral adds to the totals
_NOTHING_TOUCHED: set[tuple] = frozenset()  # type: ignore[assignment]  # shared while a record's totals are unchanged


def _key(key: tuple) -> tuple:
    """One object per key, shared by every referral's contribution (``streams.interning``: bounded)."""
    return interned(key)


def referral_contribution(record: ReferrerRecord, referrer_id: str, referral_id: str,
                          reached: dict[str, list] | None = None, withheld: dict[str, list] | None = None
                          ) -> Contribution:
    """What one referral adds to its referrer's totals: ``("signups",)``, ``("conversions",)``, ``("points",
    status)`` (the referrer's fields), ``("cell", cell)`` (funnel cells), ``("ledger", campaign, field)``,
    ``("board", campaign)`` (confirmed referrals) and ``("campaign", campaign)`` (its referrals). The totals are
    the sum over the referrals (``Totals``); what a referral adds depends only on its part of the record
    (``streams.referrer_parts``: the referral, its rewards, their statuses reached, its reasons withheld).
    ``reached`` (reward id -> [(status, entry)]) and ``withheld`` (referral id -> [(reason, campaign)]): the
    record's, arranged once for many referrals (else looked up per status and reason)."""
    core = record.core
    out: Counter = Counter()
    r = core.referrals[referral_id]
    out[("campaign", r.campaign_id)] += 1
    if r.status in ("attributed", "qualified", "revoked"):
        out[("signups",)] += 1
    if r.status in ("qualified", "revoked"):
        out[("conversions",)] += 1
    for cell, n in referral_cells([r]).items():
        if n:
            out[("cell", cell)] += n
    for w in rewards_of(core, referral_id):
        status = w.status.value
        if w.customer_id == referrer_id and status in _POINTS:
            out[("points", status)] += w.points
        if w.role is RewardRole.REFERRER and w.status is RewardStatus.CONFIRMED and ":milestone:" not in w.reward_id:
            out[("board", w.campaign_id)] += 1
        if reached is None:
            statuses = [(s.value, got) for s in RewardStatus
                        if (got := record.reached.get((w.reward_id, s.value))) is not None]
        else:
            statuses = reached.get(w.reward_id, ())
        for value, (role, campaign_id, points) in statuses:
            out[("ledger", campaign_id, f"rewards:{role}:{value}")] += 1
            out[("ledger", campaign_id, f"points:{role}:{value}")] += points
    if withheld is None:
        reasons = [(c.value, campaign_id) for c in ReasonCode
                   if (campaign_id := record.withheld.get((referral_id, c.value))) is not None]
    else:
        reasons = withheld.get(referral_id, ())
    for reason, campaign_id in reasons:
        out[("ledger", campaign_id, f"rejections:{reason}")] += 1
    return tuple((_key(k), n) for k, n in out.items())


class Totals:
    """The live (not settled) referrals' contributions summed (``referral_contribution``), kept with the record's
    state while it lives (derived: rebuilt from the referrals after a load) and brought up to date with only the
    referrals a batch changed: a snapshot costs what changed, not the referrer's history. The settled referrals'
    part of a total is the record's own ``settled_sums`` (``streams.referrer_parts.settle``), read where a total
    is asked for (``total``, ``named``, ``keys``), not copied here: a key only settled referrals name costs the
    record one entry, not three. Contributions are tuples of shared keys and numbers (the garbage collector soon
    stops walking them)."""

    __slots__ = ("referrer_id", "of", "live", "live_named", "touched")

    def __init__(self, referrer_id: str) -> None:
        self.referrer_id = referrer_id
        self.of: dict[str, Contribution] = {}  # live referral id -> its contribution
        self.live: dict[tuple, int] = {}  # key -> the sum of the live referrals' contributions to it
        self.live_named: dict[tuple, int] = {}  # key -> how many of them name it (no key that none names)
        self.touched: set[tuple] = _NOTHING_TOUCHED  # keys whose total may have changed since ``take_touched``

    def total(self, key: tuple, settled: dict[tuple, list[int]]) -> int:
        """What every referral adds to ``key``; ``settled``: the record's ``settled_sums``."""
        entry = settled.get(key)
        return self.live.get(key, 0) + (entry[0] if entry is not None else 0)

    def named(self, key: tuple, settled: dict[tuple, list[int]]) -> int:
        """How many referrals' contributions name ``key`` (a ledger field at 0 that one names stays)."""
        entry = settled.get(key)
        return self.live_named.get(key, 0) + (entry[1] if entry is not None else 0)

    def keys(self, settled: dict[tuple, list[int]]) -> set[tuple]:
        """Every key some referral's contribution names."""
        return self.live.keys() | settled.keys()

    def _touch(self, keys: Iterable[tuple]) -> None:
        if self.touched is _NOTHING_TOUCHED:
            self.touched = set()
        self.touched.update(keys)

    def _add(self, contribution: Contribution, sign: int, touch: bool) -> None:
        live, named = self.live, self.live_named
        for key, n in contribution:
            left = named.get(key, 0) + sign
            if left:
                named[key] = left
                live[key] = live.get(key, 0) + sign * n
            else:
                del named[key], live[key]
        if not named:  # a dict keeps its capacity when emptied: most records have no live referral most of the time
            self.live, self.live_named = {}, {}
        if touch:
            self._touch(key for key, _n in contribution)

    def set(self, referral_id: str, contribution: Contribution | None) -> None:
        """A live referral's contribution is now ``contribution`` (None: it has none, withdrawn or gone)."""
        old = self.of.pop(referral_id, None)
        if old is not None:
            self._add(old, -1, True)
            if not self.of:
                self.of = {}
        if contribution is not None:
            self.of[referral_id] = contribution
            self._add(contribution, 1, True)

    def settle(self, referral_id: str, contribution: Contribution) -> None:
        """A referral settled (``streams.referrer_rewards.settle``): ``settled_sums`` has its ``contribution``
        already; out of the live sums with it."""
        old = self.of.pop(referral_id, None)
        if not self.of:
            self.of = {}
        if old is not None:
            self._add(old, -1, old != contribution)
        if old != contribution:  # what it adds changed as it settled: its keys' totals may have moved
            self._touch(key for key, _n in contribution)

    def unsettle(self, referral_id: str, contribution: Contribution) -> None:
        """A settled referral put back, as it was: ``settled_sums`` no longer has its ``contribution``
        (``streams.referrer_parts.unsettle`` computes it from the same part ``settle`` did); live again, every
        total as it was."""
        self.of[referral_id] = contribution
        self._add(contribution, 1, False)

    def take_touched(self) -> set[tuple]:
        touched, self.touched = self.touched, _NOTHING_TOUCHED
        return touched


def keep_totals(record: ReferrerRecord, referrer_id: str) -> None:
    """The referrals' contributions summed before a step changes any (a record read back from disk has none):
    a partial snapshot after the step then takes back what a changed referral no longer adds (a signup gone back
    to 0). Summed only after the change, that would be lost, and Redis would keep the old count."""
    kept = record.core.__dict__.get("_totals")
    if kept is None or kept.referrer_id != referrer_id:
        totals(record, referrer_id, None).take_touched()


def totals(record: ReferrerRecord, referrer_id: str, changed: Iterable[str] | None) -> Totals:
    """The referrals' contributions summed; ``changed``: the referrals whose part changed since the last call
    for this record (None: any; all are summed again)."""
    core = record.core
    kept = core.__dict__.get("_totals")
    if changed is None or kept is None or kept.referrer_id != referrer_id:
        kept = core.__dict__["_totals"] = Totals(referrer_id)
        reached: dict[str, list] = {}
        for (reward_id, status), entry in record.reached.items():
            reached.setdefault(reward_id, []).append((status, entry))
        withheld: dict[str, list] = {}
        for (rid, reason), campaign_id in record.withheld.items():
            withheld.setdefault(rid, []).append((reason, campaign_id))
        for rid in core.referrals:
            kept.set(rid, referral_contribution(record, referrer_id, rid, reached, withheld))
        kept._touch(record.settled_sums)
        return kept
    for rid in changed:  # a settled referral is in ``settled_sums`` (``Totals.settle`` took it there)
        if rid not in core.settled:
            kept.set(rid, referral_contribution(record, referrer_id, rid) if rid in core.referrals else None)
    return kept


def snapshot(layout: RedisLayout, referrer_id: str, record: ReferrerRecord,
             only: Iterable[str] | None = None, cells: Iterable[FunnelCell] = (),
             settled: Iterable[tuple[Referral, Iterable[Reward]]] = (),
             recall: Callable[[set[str]], None] | None = None) -> CounterSnapshot:
    """The referrer's counters. Complete without ``only``; with it, partial (the module docstring): the summaries
    and welcome rewards of just the referrals in ``only``, the totals brought up to date with just those
    (``totals``), and the funnel and ledger cells they and ``cells`` (the shares' and clicks' cells the batch
    counted or folded: ``streams.stages.touched_cells``) touch. A complete one also shows the ``settled``
    referrals (each with its rewards), which the record holds only as entries (``referrer_rewards.settle``):
    its caller reads them back (``streams.part_store``). ``recall``: given the days of the cells a partial one
    reads, puts back into ``settled_sums`` what the part store holds of them (``referrer_parts.recall_cells``; a
    complete one's caller puts back every day first)."""
    core = record.core
    complete = only is None
    only = None if only is None else set(only)
    p = partition_of(referrer_id, layout.partitions)
    kept = totals(record, referrer_id, only)
    touched = kept.take_touched()
    if recall is not None and not complete:
        cells = list(cells)
        recall({cell[3] for cell in cells} | {key[1][3] for key in touched if key[0] == "cell"})
    settled_sums = record.settled_sums
    fields: dict[str, int] = {"clicks": 0, "signups": kept.total(("signups",), settled_sums),
                              "conversions": kept.total(("conversions",), settled_sums),
                              **{f"points:{status}": kept.total(("points", status), settled_sums)
                                 for status in _POINTS}}
    for (stage, channel), n in channel_totals(record).items():
        if stage == "share":
            fields[f"shares:{channel}"] = fields.get(f"shares:{channel}", 0) + n
        else:
            fields["clicks"] += n
    referrals: dict[str, str | None] = {}
    shown = sorted(core.referrals) if only is None else sorted(rid for rid in only if rid in core.referrals)
    settled = [(r, list(rewards)) for r, rewards in settled] if complete else []
    for r in (core.referrals[rid] for rid in shown):
        referrals[r.referral_id] = _summary(r, core.rewards.get(f"{r.referral_id}:{RewardRole.REFERRER.value}"))
    for r, rewards in settled:
        own = f"{r.referral_id}:{RewardRole.REFERRER.value}"
        referrals[r.referral_id] = _summary(r, next((w for w in rewards if w.reward_id == own), None))
    funnel, ledger, confirmed = (_every_cell(record, kept) if complete else _touched_cells(record, kept, touched, cells))
    sums: dict[tuple[str, str], int] = {}
    for (stage, campaign_id, channel, day), n in funnel.items():
        field = f"{stage}:{channel}"
        for key in (layout.funnel(p, campaign_id), layout.funnel(p, campaign_id, day)):
            sums[(key, field)] = sums.get((key, field), 0) + n
    for (campaign_id, field), n in ledger.items():
        sums[(layout.ledger(p, campaign_id), field)] = n
    campaigns = {c for (_, c, _, _) in funnel} | {c for c, _ in ledger} | set(confirmed)
    welcome: dict[str, dict[str, str]] = {}
    if only is None:
        referee_rewards = sorted([*core.rewards.values(), *(w for _, rewards in settled for w in rewards)],
                                 key=lambda w: w.reward_id)
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
        complete=complete, cells_key=layout.cells(referrer_id))


def _summary(r: Referral, reward: Reward | None) -> str | None:
    """A referral's summary for the referrals hash, its referrer reward's state in it; None: withdrawn (removed)."""
    if r.status == "withdrawn":
        return None
    if reward is not None and reward.status is RewardStatus.REVOKED and reward.points == 0:
        reward = None  # announced, then voided by a late event: the referral's own status says why
    return referral_summary({
        "referee_id": r.referee_id, "campaign_id": r.campaign_id, "status": r.status,
        "reason": r.reason.value if r.reason else None, "channel": r.channel or NO_CHANNEL,
        "attributed_at": r.attributed_at.isoformat(),
        "reward_status": reward.status.value if reward else None,
        "reward_reason": reward.reason.value if reward and reward.reason else None,
        "reward_points": reward.points if reward else 0,
    })


Cells = tuple[dict[FunnelCell, int], dict[tuple[str, str], int], dict[str, int]]  # funnel, ledger, leaderboard


def _every_cell(record: ReferrerRecord, kept: Totals) -> Cells:
    """Every cell the referrer's activity, referrals and settled sums name (a cell none names any more is taken
    back by the writer, ``streams.redis_sink``), every ledger field its referrals name, every campaign's
    confirmed referrals."""
    funnel = Counter(record.activity)
    ledger: dict[tuple[str, str], int] = {}
    confirmed: Counter = Counter()
    settled = record.settled_sums
    for key in kept.keys(settled):
        n = kept.total(key, settled)
        if key[0] == "cell":
            funnel[key[1]] += n
        elif key[0] == "ledger" and kept.named(key, settled) > 0:
            ledger[(key[1], key[2])] = n
        elif key[0] == "board":
            confirmed[key[1]] += n
        elif key[0] == "campaign" and n:
            confirmed[key[1]] += 0
    return {cell: n for cell, n in funnel.items() if n}, ledger, dict(confirmed)


def _touched_cells(record: ReferrerRecord, kept: Totals, touched: set[tuple], cells: Iterable[FunnelCell]) -> Cells:
    """The cells whose value may have changed: the shares' and clicks' ``cells``, and those of the totals' keys
    ``touched``, each with its whole value now."""
    settled = record.settled_sums
    funnel = {cell: 0 for cell in cells}
    funnel.update((key[1], 0) for key in touched if key[0] == "cell")
    for cell in funnel:
        funnel[cell] = record.activity.get(cell, 0) + kept.total(("cell", cell), settled)
    ledger = {(key[1], key[2]): kept.total(key, settled) for key in touched if key[0] == "ledger"}
    confirmed = {key[1]: kept.total(("board", key[1]), settled) for key in touched if key[0] in ("board", "campaign")}
    return funnel, ledger, confirmed
