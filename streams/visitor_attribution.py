"""Click attribution, per visitor. Pure: (state, fact) -> (state, candidates).

A signup without a referral code but with a ``visitor_id`` is attributed by that
visitor's clicks within the campaign's attribution window before the signup, by the
campaign's policy (last click, or first click). The worker keys both clicks and such
signups by ``visitor_id``, so one visitor's whole story is in one partition.

The state is the visitor's history (clicks and signups, each kept once by event id);
the candidates are recomputed from the history sorted by event time on every fact,
and only what changed is returned. So a fact delivered twice changes nothing, and
facts delivered in any order end in the same candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
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


@dataclass(frozen=True, slots=True)
class VisitorState:
    clicks: dict[str, Click] = field(default_factory=dict)
    signups: dict[str, VisitorSignup] = field(default_factory=dict)
    candidates: dict[str, Candidate | None] = field(default_factory=dict)  # by signup event id


def _decide(state: VisitorState, campaigns: CampaignBook) -> dict[str, Candidate | None]:
    out: dict[str, Candidate | None] = {}
    clicks = sorted(state.clicks.values(), key=lambda c: (c.at, c.event_id))
    for signup in state.signups.values():
        best: Click | None = None
        policy = None
        for click in clicks:
            campaign = campaigns.get(click.campaign_id)
            if campaign is None or click.referrer_id is None:
                continue
            if not (signup.at - campaign.attribution_window <= click.at <= signup.at):
                continue
            if not campaign.active(click.at):
                continue
            policy = campaign.attribution_policy
            if best is None or policy == "last_click":
                best = click  # clicks are sorted: the last one assigned is the latest
        out[signup.event_id] = None if best is None else Candidate(
            customer_id=signup.customer_id, source_event_id=signup.event_id, at=signup.at, code=best.code,
            referrer_id=best.referrer_id or "", campaign_id=best.campaign_id, method=policy or "last_click",
            click_event_id=best.event_id, channel=best.channel,
        )
    return out


def step(
    state: VisitorState, fact: Click | VisitorSignup, campaigns: CampaignBook
) -> tuple[VisitorState, list[Candidate]]:
    """Add one fact; return the new state and the candidates that are new or changed."""
    if isinstance(fact, Click):
        if fact.event_id in state.clicks:
            return state, []
        state = replace(state, clicks={**state.clicks, fact.event_id: fact})
    else:
        if fact.event_id in state.signups:
            return state, []
        state = replace(state, signups={**state.signups, fact.event_id: fact})
    decided = _decide(state, campaigns)
    changed = [c for key, c in decided.items() if c is not None and state.candidates.get(key) != c]
    return replace(state, candidates=decided), sorted(changed, key=lambda c: (c.at, c.source_event_id))
