"""The visitor stage as it was before #17 made it incremental: every signup's candidate decided again from
the visitor's whole click history on every fact. The reference model of ``streams.visitor_attribution``
(``tests/unit/streams/test_visitor_incremental.py``)."""

from __future__ import annotations

from dataclasses import replace

from streams.campaigns import CampaignBook
from streams.visitor_attribution import Candidate, Click, VisitorSignup, VisitorState


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
