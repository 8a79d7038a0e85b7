"""The three stages composed in memory: what the Faust agents compute, without Kafka or Redis.

The visitor and referrer stages are the reference models (``tests.oracle.visitor_attribution`` and
``tests.oracle.referrer_rewards``: recomputed from the whole history), so every test comparing the worker
with this pipeline compares it with the oracle.

Used by the tests (and the end-to-end check) as the expected result for a stream of
events: route each inbound event to its stage(s) the way the topics' keys do, pass each
stage's outputs on to the next, and keep every stage's state. Pure apart from the
``resolve`` function the caller provides (code -> owner; the registry in production).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from schemas.events import InboundEventBase, ShareEvent, SignupEvent
from streams import referee_ledger, visitor_attribution
from streams import referrer_rewards as incremental_core
from streams.campaigns import CampaignBook
from streams.inbound import Resolve, to_fact
from streams.referee_ledger import CustomerState, Profile, Referral
from streams.referrer_rewards import Reward, Tick
from streams.stages import VISITOR_FACTS_KEPT
from streams.visitor_attribution import Candidate, VisitorState
from tests.oracle import referrer_rewards
from tests.oracle import visitor_attribution as reference_visitors
from tests.oracle.referrer_rewards import ReferrerState


@dataclass
class ReferencePipeline:
    campaigns: CampaignBook
    resolve: Resolve
    visitors: dict[str, VisitorState] = field(default_factory=dict)
    customers: dict[str, CustomerState] = field(default_factory=dict)
    referrers: dict[str, ReferrerState] = field(default_factory=dict)
    changes: list[Reward] = field(default_factory=list)  # every reward change, in emission order
    # the visitor and referrer stages: the reference models (default), or the incremental ones that the
    # hypothesis tests show equal to them, for histories too long for the references' O(history) per fact
    incremental: bool = False

    # -- stages ------------------------------------------------------------------------------------

    def _visitor(self, visitor_id: str, fact) -> None:
        stage = visitor_attribution if self.incremental else reference_visitors
        state = self.visitors.get(visitor_id, VisitorState())
        kept = state.clicks if isinstance(fact, visitor_attribution.Click) else state.signups
        if fact.event_id not in kept and len(state.clicks) + len(state.signups) >= VISITOR_FACTS_KEPT:
            return  # the stage's cap on a visitor's record (streams.stages.visitor_step)
        state, candidates = stage.step(state, fact, self.campaigns)
        self.visitors[visitor_id] = state
        for candidate in candidates:
            self._customer(candidate.customer_id, candidate)

    def _customer(self, customer_id: str, fact) -> None:
        state, outputs = referee_ledger.step(self.customers.get(customer_id, CustomerState()), customer_id, fact,
                                             self.campaigns)
        self.customers[customer_id] = state
        for output in outputs:
            key = output.customer_id if isinstance(output, Profile) else output.referrer_id
            self._referrer(key, output)

    def _referrer(self, referrer_id: str, fact: Referral | Profile | Tick) -> None:
        if self.incremental:
            state = self.referrers.setdefault(referrer_id, incremental_core.ReferrerState())
            self.changes.extend(incremental_core.step(state, referrer_id, fact, self.campaigns) or [])
            return
        state, changes = referrer_rewards.step(self.referrers.get(referrer_id, ReferrerState()), referrer_id, fact,
                                               self.campaigns)
        self.referrers[referrer_id] = state
        self.changes.extend(changes)

    # -- input -------------------------------------------------------------------------------------

    def feed(self, event: InboundEventBase) -> None:
        if isinstance(event, ShareEvent):
            return  # shares feed counters only
        key, fact = to_fact(event, self.resolve)
        if isinstance(fact, visitor_attribution.Click):
            self._visitor(key, fact)
            return
        self._customer(key, fact)
        if isinstance(event, SignupEvent) and event.visitor_id and not event.referral_code:
            self._visitor(event.visitor_id, visitor_attribution.VisitorSignup(
                event.event_id, event.occurred_at, event.customer_id))

    def tick(self, now: datetime) -> None:
        for referrer_id in sorted(self.referrers):
            self._referrer(referrer_id, Tick(now))

    # -- results -----------------------------------------------------------------------------------

    def rewards(self) -> dict[str, Reward]:
        return {k: w for state in self.referrers.values() for k, w in state.rewards.items()}

    def referrals(self) -> dict[str, Referral]:
        """Every referral as its referrer sees it (withdrawn ones left out)."""
        return {k: r for state in self.referrers.values() for k, r in state.referrals.items()
                if r.status != "withdrawn"}


def rebuild_from_changes(changes: list[Reward]) -> dict[str, Reward]:
    """The reward log alone rebuilds every reward: the last change of each wins."""
    out: dict[str, Reward] = {}
    for change in changes:
        out[change.reward_id] = change
    return out


__all__ = ["Candidate", "ReferencePipeline", "rebuild_from_changes"]
