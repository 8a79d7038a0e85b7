"""The counter totals as they were computed before #17 made them incremental: summed over the referrer's whole
history on every snapshot. The reference model of ``streams.counters.snapshot``'s totals (the referrer's fields,
the funnel and ledger sums, the leaderboard, the campaigns, the contribution: ``tests/unit/streams/
test_counters.py``); the referral summaries and welcome rewards are not totals and are not modelled here. And the
shares and clicks counted under the dedup horizon, every id kept (``counted_activity``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from schemas.derived import RewardRole, RewardStatus
from streams.counters import NO_CHANNEL, contribution, funnel_cells, ledger_cells
from streams.redis_layout import RedisLayout, partition_of
from streams.stages import ClickCounted, ReferrerRecord, Share, Versioned


@dataclass(frozen=True)
class Totals:
    fields: dict[str, int]
    sums: dict[tuple[str, str], int]
    leaderboard: dict[str, int]
    campaigns: tuple[str, ...]
    contribution: str
    seq: int


def totals(layout: RedisLayout, referrer_id: str, record: ReferrerRecord) -> Totals:
    """The referrer's totals, every one summed over the whole record."""
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
    campaigns = {c for (_, c, _, _) in funnel} | {c for c, _ in ledger} | set(confirmed)
    return Totals(fields, sums, {layout.leaderboard(p, c): n for c, n in sorted(confirmed.items())},
                  tuple(sorted(campaigns)), contribution(funnel, ledger), record.seq)


Cell = tuple[str, str, str]  # (campaign, day, field): one cell of the writer's cells hash (day "": the ledger)


def contribution_cells(text: str) -> dict[Cell, int]:
    """The cells a snapshot's contribution names (``streams.counters.contribution``), as the writer's script reads
    them."""
    return {(campaign, day, field): n for campaign, days in json.loads(text).items()
            for day, fields in days.items() for field, n in fields.items()}


def applied(held: dict[Cell, int], contribution_text: str, complete: bool) -> dict[Cell, int]:
    """What the writer's script leaves in a referrer's cells hash (``streams.redis_sink``): a complete snapshot's
    cells (any other back to 0), or a partial one's over what was there. Cells at 0 are no field."""
    out = {} if complete else dict(held)
    out.update(contribution_cells(contribution_text))
    return {cell: n for cell, n in out.items() if n}


def cell_sums(layout: RedisLayout, referrer_id: str, cells: dict[Cell, int]) -> dict[tuple[str, str], int]:
    """(funnel or ledger key, field) -> what the cells add to it: a day's funnel and the campaign's, or the
    ledger. Sums at 0 left out."""
    p = partition_of(referrer_id, layout.partitions)
    sums: Counter = Counter()
    for (campaign, day, field), n in cells.items():
        keys = [layout.ledger(p, campaign)] if day == "" else [layout.funnel(p, campaign, day),
                                                               layout.funnel(p, campaign)]
        for key in keys:
            sums[(key, field)] += n
    return {k: n for k, n in sums.items() if n}


def counted_activity(log: Iterable[tuple[str, object]], horizon_days: int) -> dict[str, dict[tuple, int]]:
    """The shares and clicks each referrer counts, per funnel cell, from the referrer stage's log read once in
    order: the reference model of the dedup horizon (``streams.stages._count``) that keeps every id forever. An
    event counts if its id was not counted before and its UTC day is after the referrer's floor (the day of the
    newest event counted, minus ``horizon_days``). The stage forgets the ids the floor passes; this model shows
    that forgetting them counts nothing twice and drops nothing the rule keeps."""
    seen: dict[str, set[str]] = {}
    floor: dict[str, date] = {}
    out: dict[str, dict[tuple, int]] = {}
    for referrer_id, fact in log:
        if isinstance(fact, Share):
            event_id, stage, cell = f"share:{fact.event_id}", "share", (fact.campaign_id, fact.channel)
            at = fact.at
        elif isinstance(fact, Versioned) and isinstance(fact.fact, ClickCounted):
            c = fact.fact
            event_id, stage, cell, at = f"click:{c.event_id}", "click", (c.campaign_id, c.channel or NO_CHANNEL), c.at
        else:
            continue
        ids = seen.setdefault(referrer_id, set())
        day = at.date()
        if event_id in ids or (referrer_id in floor and day <= floor[referrer_id]):
            continue
        ids.add(event_id)
        floor[referrer_id] = max(floor.get(referrer_id, day - timedelta(days=horizon_days)),
                                 day - timedelta(days=horizon_days))
        key = (stage, *cell, day.isoformat())
        counts = out.setdefault(referrer_id, {})
        counts[key] = counts.get(key, 0) + 1
    return out
