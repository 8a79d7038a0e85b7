"""Click attribution, per visitor. Pure: (state, fact) -> (state, candidates).

A signup without a referral code but with a ``visitor_id`` is attributed by that
visitor's clicks within the campaign's attribution window before the signup, by the
campaign's policy (last click, or first click). The worker keys both clicks and such
signups by ``visitor_id``, so one visitor's whole story is in one partition.

The state is the visitor's history (clicks and signups, each kept once by event id) and
each signup's candidate. A fact decides again only what it can change: a click, the
signups within the longest attribution window after it; a signup, itself (from the clicks
within the window before it). Only what changed is returned. So a fact delivered twice
changes nothing, and facts delivered in any order end in the same candidates: the same
as deciding every signup again from the whole history (``tests/oracle/visitor_attribution.py``,
the reference the hypothesis tests hold it to).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from streams.campaigns import CampaignBook


@dataclass(frozen=True, slots=True)
class Click:
    event_id: str
    at: datetime
    code: str
    referrer_id: str | None  # None: the code resolves to no referrer
    campaign_id: str
    channel: str | None = None
    visitor_id: str | None = None  # whose click (the referrer keeps it, so an erasure can reach the visitor)


@dataclass(frozen=True, slots=True)
class VisitorSignup:
    event_id: str
    at: datetime
    customer_id: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """'This signup would be attributed to this referrer': sent to the customer, keyed by customer_id."""

    customer_id: str
    source_event_id: str  # the signup
    at: datetime  # the signup's time
    code: str
    referrer_id: str
    campaign_id: str
    method: Literal["last_click", "first_click"]
    click_event_id: str
    channel: str | None = None


@dataclass(frozen=True)
class VisitorState:
    """A visitor's clicks and signups (each kept once by event id) and each signup's candidate. Its collections
    are updated in place by ``step``; a derived index (clicks and signups in time order) lives beside them and
    is rebuilt after a load."""

    clicks: dict[str, Click] = field(default_factory=dict)
    signups: dict[str, VisitorSignup] = field(default_factory=dict)
    candidates: dict[str, Candidate | None] = field(default_factory=dict)  # by signup event id


class _Index:
    """The visitor's clicks and signups sorted by (time, event id), for one campaign book."""

    __slots__ = ("book", "clicks", "signups", "reach")

    def __init__(self, state: VisitorState, book: CampaignBook) -> None:
        self.book = book
        self.clicks = sorted((c.at, c.event_id) for c in state.clicks.values())
        self.signups = sorted((s.at, s.event_id) for s in state.signups.values())
        # the longest attribution window: no click further back than this can attribute a signup
        self.reach = max((c.attribution_window for c in book.campaign), default=timedelta(0))


def _index(state: VisitorState, book: CampaignBook) -> _Index:
    idx = state.__dict__.get("_idx")
    if idx is None or idx.book is not book:
        idx = _Index(state, book)
        object.__setattr__(state, "_idx", idx)
    return idx


def _decide(state: VisitorState, idx: _Index, signup: VisitorSignup) -> Candidate | None:
    """The candidate of one signup: its clicks within the campaign's window before it, by the policy. Only the
    clicks within the longest window are looked at (those further back attribute nothing)."""
    book = idx.book
    best: Click | None = None
    policy = None
    lo = bisect_left(idx.clicks, (signup.at - idx.reach,))
    hi = bisect_right(idx.clicks, (signup.at, _LAST))
    for _, event_id in idx.clicks[lo:hi]:
        click = state.clicks[event_id]
        campaign = book.get(click.campaign_id)
        if campaign is None or click.referrer_id is None:
            continue
        if not (signup.at - campaign.attribution_window <= click.at <= signup.at):
            continue
        if not campaign.active(click.at):
            continue
        policy = campaign.attribution_policy
        if best is None or policy == "last_click":
            best = click  # clicks are sorted: the last one assigned is the latest
    return None if best is None else Candidate(
        customer_id=signup.customer_id, source_event_id=signup.event_id, at=signup.at, code=best.code,
        referrer_id=best.referrer_id or "", campaign_id=best.campaign_id, method=policy or "last_click",
        click_event_id=best.event_id, channel=best.channel,
    )


_LAST = "\U0010ffff"  # sorts after every event id: (t, _LAST) is past every entry at t


def step(
    state: VisitorState, fact: Click | VisitorSignup, campaigns: CampaignBook
) -> tuple[VisitorState, list[Candidate]]:
    """Add one fact, in place; return the state (the same object if the fact changed nothing, else a new one
    over the same collections) and the candidates that are new or changed. A click decides again only the
    signups it can attribute (those within the longest window after it); a signup, only itself."""
    idx = _index(state, campaigns)
    if isinstance(fact, Click):
        if fact.event_id in state.clicks:
            return state, []
        state.clicks[fact.event_id] = fact
        insort(idx.clicks, (fact.at, fact.event_id))
        lo = bisect_left(idx.signups, (fact.at,))
        hi = bisect_right(idx.signups, (fact.at + idx.reach, _LAST))
        touched = [event_id for _, event_id in idx.signups[lo:hi]]
    else:
        if fact.event_id in state.signups:
            return state, []
        state.signups[fact.event_id] = fact
        insort(idx.signups, (fact.at, fact.event_id))
        touched = [fact.event_id]
    changed = []
    for event_id in touched:
        candidate = _decide(state, idx, state.signups[event_id])
        if candidate is not None and state.candidates.get(event_id) != candidate:
            changed.append(candidate)
        state.candidates[event_id] = candidate
    new = replace(state)
    object.__setattr__(new, "_idx", idx)
    return new, sorted(changed, key=lambda c: (c.at, c.source_event_id))
