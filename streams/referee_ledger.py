"""Attribution and qualification, per customer (the referee). Pure: (state, fact) -> (state, outputs).

Keyed by ``customer_id``: the customer's signups, orders and refunds, and the click
candidates the visitor stage sends, are all in one partition. The decisions are
recomputed from the history sorted by event time on every fact; only changed outputs
are returned. A fact seen twice (same event id) changes nothing; any delivery order of
the same facts ends in the same outputs.

The rules:

- **Attribution**, at most once per customer: the customer's first signup (by time)
  decides: its own ``referral_code`` (method ``signup_code``), else its visitor's
  clicks (the candidate from the visitor stage). A customer whose first signup had
  neither is attributed by the first order carrying a ``referral_code`` (``order_code``,
  coupon-code attribution). Any other code or click for the same customer is a
  ``duplicate_attribution`` rejection, listed but never rewarded.
- **Claims**: a signup sent from an app or a web page (a publishable key: ``Signup.claim``) is the app's
  word only. Attribution needs a *confirmed* signup (one the shop's server sent): the first confirmed signup
  decides as above; when it carries neither code nor click, the earliest claimed signup within its campaign's
  ``claim_window`` of it lends its code or click. A customer with claimed signups and no confirmed signup
  that attributes is listed with the earliest claim, ``rejected`` (``claim_unconfirmed``), and attributed
  as soon as the confirmation arrives (the shop's signup, in any order).
- A code that resolves to no referrer does not attribute (``unknown_code``); a code of
  the customer themself is a ``self_referral`` rejection; a code used outside its
  campaign's start/end is ``campaign_inactive``.
- **Existing customer**: an order before the attribution means the customer was not
  new: ``existing_customer``, no reward.
- **Qualification**: the first order (by time) at or after the attribution, within the
  qualification window after the signup (or after the attribution, without a signup),
  whose amount is at or above the campaign's minimum in its currency.
- **Refunds** of the qualifying order up to the end of the hold period (order time +
  hold) that bring it below the minimum revoke the qualification (``refunded_in_hold``);
  refunds after that are recorded (``refunded_after_hold``) and do not revoke.

**What a customer's state keeps** (``Limits``; the record is one changelog value, so it must not grow
with the customer's history). The decisions look at a customer's first signup, their earliest orders
and the refunds of one order, so the state keeps:

- the first ``signups`` signups by event time (and the candidates of those only);
- the first ``orders`` orders by event time: a referral qualifies with one of them or not at all;
- per kept order, the first ``refunds_per_order`` refunds of it by event time;
- refunds of an order it does not (yet) keep, waiting for their order: the first
  ``unmatched_refunds`` of them by event time (a refund of an order beyond the first ``orders``
  waits here too, as the state cannot tell it from one whose order is late).

A fact beyond these is not kept (``admits`` is false; the stage counts it under ``FACT_CAP``); an
earlier one arriving late takes the place of the latest kept (which goes, with what hangs on it).
Within the last two limits the state is a function of the set of facts, whatever their order (the
kept ones are the earliest n); a refund dropped from a full set of unmatched ones is lost for good.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from schemas.derived import ReasonCode
from schemas.referral_codes import CodeOwner
from streams.campaigns import Campaign, CampaignBook
from streams.visitor_attribution import Candidate


@dataclass(frozen=True, slots=True)
class Signup:
    event_id: str
    at: datetime
    referral_code: str | None
    owner: CodeOwner | None  # the code's owner, resolved by the shell (None: unknown code or no code)
    visitor_id: str | None
    email_hash: str | None
    device_id: str | None
    claim: bool = False  # an app's word only (a publishable key's signup): counts once the shop's confirms it


@dataclass(frozen=True, slots=True)
class Order:
    event_id: str
    at: datetime
    order_id: str
    amount: Decimal
    currency: str
    referral_code: str | None
    owner: CodeOwner | None


@dataclass(frozen=True, slots=True)
class Refund:
    event_id: str
    at: datetime
    order_id: str
    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a referral's decision rests on beyond its status: the concrete values a person is told
    (``consumers.story``). ``kind``: ``below_minimum``, ``outside_window`` or ``no_minimum`` (an attributed
    referral's first order, which did not qualify), ``prior_order`` (an existing customer's first order, before
    the attribution), ``refunded`` (a revoked referral: the refunds of its order within the hold, ``at`` the one
    that took it below the minimum)."""

    kind: str
    at: datetime
    amount: Decimal
    currency: str
    since: datetime | None = None  # outside_window: where the qualification window began (the signup)


#: ``withdrawn``: an earlier output no longer holds (a late event changed who the referrer is);
#: sent to the referrer that had it, so that stage forgets it.
Status = Literal["attributed", "qualified", "revoked", "rejected", "withdrawn"]


@dataclass(frozen=True, slots=True)
class Referral:
    """What the referrer stage needs to know about one referee; keyed by referrer_id."""

    referral_id: str
    referee_id: str
    referrer_id: str
    code: str
    campaign_id: str
    method: str
    attributed_at: datetime
    source_event_id: str
    status: Status
    reason: ReasonCode | None = None
    referee_email_hash: str | None = None
    referee_device_id: str | None = None
    qualifying_order_id: str | None = None
    qualified_at: datetime | None = None
    amount: Decimal | None = None
    currency: str | None = None
    refunded_after_hold: bool = False
    channel: str | None = None  # of the attributing click; None for codes
    evidence: Evidence | None = None  # the values the decision rests on (``Evidence``), for people

    def __post_init__(self) -> None:
        """The strings many referrals share, one object each in the process (``sys.intern``: kept only while
        something holds them), however the referral was made or decoded (msgspec calls this too): a referrer's
        record holds every referral it decided, and a decoded one held about 1 KB, over a quarter of it copies
        of these (docs/performance.md). Equal either way; only memory changes."""
        for name in ("referrer_id", "code", "campaign_id", "method", "status", "currency", "channel"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, sys.intern(value))


@dataclass(frozen=True, slots=True)
class Profile:
    """The customer as a (future) referrer: what self-referral checks compare against."""

    customer_id: str
    email_hash: str | None
    device_id: str | None


@dataclass(frozen=True, slots=True)
class CustomerState:
    signups: dict[str, Signup] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)  # by event id
    refunds: dict[str, Refund] = field(default_factory=dict)
    candidates: dict[str, Candidate] = field(default_factory=dict)  # by source (signup) event id
    outputs: dict[str, Referral | Profile] = field(default_factory=dict)


Fact = Signup | Order | Refund | Candidate

#: the reason an input is not kept (``admits`` false): the stage's ``dropped`` metric label
FACT_CAP = "customer_fact_cap"


@dataclass(frozen=True, slots=True)
class Limits:
    """What a customer's state keeps (module docstring). With the defaults a record stays under about
    40 KB (orders about 150 bytes each, refunds about 120, referral outputs about 400)."""

    signups: int = 10
    orders: int = 50
    refunds_per_order: int = 5
    unmatched_refunds: int = 20


LIMITS = Limits()


def _rank(fact: Signup | Order | Refund) -> tuple[datetime, str]:
    return fact.at, fact.event_id


def _kept_order_ids(state: CustomerState) -> set[str]:
    return {o.order_id for o in state.orders.values()}


def _room(kept: list[tuple[datetime, str]], limit: int, rank: tuple[datetime, str]) -> bool:
    """Whether a fact of ``rank`` is among the first ``limit`` of ``kept`` and itself."""
    return len(kept) < limit or rank < max(kept)


def admits(state: CustomerState, fact: Fact, limits: Limits = LIMITS) -> bool:
    """Whether ``step`` keeps ``fact`` (a fact kept already: true, ``step`` sees the duplicate)."""
    if isinstance(fact, Candidate):
        return fact.source_event_id in state.signups
    if isinstance(fact, Signup):
        return fact.event_id in state.signups or _room([_rank(s) for s in state.signups.values()], limits.signups,
                                                      _rank(fact))
    if isinstance(fact, Order):
        return fact.event_id in state.orders or _room([_rank(o) for o in state.orders.values()], limits.orders,
                                                     _rank(fact))
    if fact.event_id in state.refunds:
        return True
    matched = _kept_order_ids(state)
    if fact.order_id in matched:
        return _room([_rank(r) for r in state.refunds.values() if r.order_id == fact.order_id],
                     limits.refunds_per_order, _rank(fact))
    return _room([_rank(r) for r in state.refunds.values() if r.order_id not in matched], limits.unmatched_refunds,
                 _rank(fact))


def _first(facts: dict, limit: int) -> dict:
    if len(facts) <= limit:
        return facts
    keep = set(sorted(facts, key=lambda k: _rank(facts[k]))[:limit])
    return {k: v for k, v in facts.items() if k in keep}


def _trim(state: CustomerState, limits: Limits) -> CustomerState:
    """The state with only what ``limits`` keeps (after one fact was added: at most one of each goes)."""
    signups = _first(state.signups, limits.signups)
    orders = _first(state.orders, limits.orders)
    candidates = state.candidates if signups is state.signups else {
        k: c for k, c in state.candidates.items() if k in signups}
    matched = {o.order_id for o in orders.values()}
    by_order: dict[str | None, dict[str, Refund]] = {}
    for key, r in state.refunds.items():
        by_order.setdefault(r.order_id if r.order_id in matched else None, {})[key] = r
    refunds: dict[str, Refund] = {}
    for order_id, group in by_order.items():
        refunds.update(_first(group, limits.unmatched_refunds if order_id is None else limits.refunds_per_order))
    if len(refunds) == len(state.refunds):
        refunds = state.refunds
    if signups is state.signups and orders is state.orders and refunds is state.refunds:
        return state
    return replace(state, signups=signups, orders=orders, refunds=refunds, candidates=candidates)


def _key(fact: Fact) -> str:
    return fact.source_event_id if isinstance(fact, Candidate) else fact.event_id


def _bucket(state: CustomerState, fact: Fact) -> str:
    return {Signup: "signups", Order: "orders", Refund: "refunds", Candidate: "candidates"}[type(fact)]


def make_referral_id(campaign_id: str, referrer_id: str, referee_id: str) -> str:
    """Deterministic, and distinct per referrer: a late event may move a referee to another referrer."""
    return f"{campaign_id}:{referrer_id}:{referee_id}"


@dataclass(frozen=True, slots=True)
class _Claim:
    at: datetime
    source_event_id: str
    code: str
    owner: CodeOwner | None
    method: str
    channel: str | None = None
    app: bool = False  # made by a claimed signup (``Signup.claim``): an app's word


DEFAULT_CLAIM_WINDOW = timedelta(days=1)  # a claim naming an unknown campaign (it is rejected as inactive anyway)


def _signup_claim(state: CustomerState, s: Signup) -> _Claim | None:
    if s.referral_code and s.owner is not None:
        return _Claim(s.at, s.event_id, s.referral_code, s.owner, "signup_code", app=s.claim)
    if not s.referral_code and s.event_id in state.candidates:
        c = state.candidates[s.event_id]
        return _Claim(s.at, s.event_id, c.code, CodeOwner(c.referrer_id, c.campaign_id), c.method, c.channel,
                      app=s.claim)
    return None


def _confirms(first: Signup, claim: _Claim, campaigns: CampaignBook) -> bool:
    """Whether the shop's signup ``first`` confirms an app's ``claim``: within its campaign's claim window."""
    assert claim.owner is not None
    campaign = campaigns.get(claim.owner.campaign_id)
    return abs(claim.at - first.at) <= (campaign.claim_window if campaign is not None else DEFAULT_CLAIM_WINDOW)


def _claims(state: CustomerState, campaigns: CampaignBook) -> tuple[_Claim | None, list[_Claim]]:
    """The claim that attributes the customer, and every other claim. Unknown codes claim nothing.

    The customer's first *confirmed* signup (by time: one the shop's server sent, not an app's claimed one)
    decides: its code or its visitor's click; without either, the earliest claimed signup it confirms (the
    app's code or click within the claim window), else a code at checkout. Without a confirmed signup, only a
    code at checkout attributes: a claimed signup alone never does (``_decide``: ``claim_unconfirmed``)."""
    signups = sorted(state.signups.values(), key=lambda s: (s.at, s.event_id))
    claims = [c for s in signups if (c := _signup_claim(state, s)) is not None]
    order_claims = [_Claim(o.at, o.event_id, o.referral_code or "", o.owner, "order_code")
                    for o in sorted(state.orders.values(), key=lambda o: (o.at, o.event_id))
                    if o.referral_code and o.owner is not None]
    first = next((s for s in signups if not s.claim), None)
    primary: _Claim | None = None
    if first is not None:
        primary = next((c for c in claims if c.source_event_id == first.event_id), None)
        if primary is None and not first.referral_code:
            primary = next((c for c in claims if c.app and _confirms(first, c, campaigns)), None)
            if primary is None and order_claims:
                primary = order_claims[0]  # signed up without a code: a code at checkout attributes
    elif order_claims:
        primary = order_claims[0]
    others = [c for c in claims + order_claims if c is not primary]
    return primary, others


def _decide(state: CustomerState, customer_id: str, campaigns: CampaignBook) -> dict[str, Referral | Profile]:
    out: dict[str, Referral | Profile] = {}
    signups = [s for s in sorted(state.signups.values(), key=lambda s: (s.at, s.event_id)) if not s.claim]
    if signups:  # the confirmed ones: an app's claim says nothing about the customer as a referrer
        first = signups[0]
        out["profile"] = Profile(customer_id, first.email_hash, first.device_id)
    primary, others = _claims(state, campaigns)
    unconfirmed = primary is None  # then only an app may say the customer signed up with a referrer: listed
    if unconfirmed:
        primary = next((c for c in others if c.app), None)
        others = [c for c in others if c is not primary]
    if primary is None:
        return out
    # the customer as the shop saw them at signup; what only the app said of them where the shop said nothing
    claimed = state.signups[primary.source_event_id] if primary.app else None
    referee_email = (signups[0].email_hash if signups else None) or (claimed.email_hash if claimed else None)
    referee_device = (signups[0].device_id if signups else None) or (claimed.device_id if claimed else None)

    def rejected(claim: _Claim, reason: ReasonCode, *, key: str) -> None:
        owner = claim.owner
        assert owner is not None
        campaign_id = owner.campaign_id
        referral_id = make_referral_id(campaign_id, owner.referrer_id, customer_id)
        if key != "referral":  # a duplicate claim is listed beside the customer's one referral
            referral_id += f":{claim.source_event_id}"
        out[key] = Referral(
            referral_id=referral_id, referee_id=customer_id,
            referrer_id=owner.referrer_id, code=claim.code, campaign_id=campaign_id, method=claim.method,
            attributed_at=claim.at, source_event_id=claim.source_event_id, status="rejected", reason=reason,
            referee_email_hash=referee_email, referee_device_id=referee_device)

    for claim in others:
        if claim.owner != primary.owner:  # another referrer (or campaign) claims an attributed customer
            rejected(claim, ReasonCode.DUPLICATE_ATTRIBUTION, key=f"dup:{claim.source_event_id}")
    if unconfirmed:
        rejected(primary, ReasonCode.CLAIM_UNCONFIRMED, key="referral")
        return out
    owner = primary.owner
    assert owner is not None
    campaign = campaigns.get(owner.campaign_id)
    if owner.referrer_id == customer_id:
        rejected(primary, ReasonCode.SELF_REFERRAL, key="referral")
        return out
    if campaign is None or not campaign.active(primary.at):
        rejected(primary, ReasonCode.CAMPAIGN_INACTIVE, key="referral")
        return out
    orders = sorted(state.orders.values(), key=lambda o: (o.at, o.event_id))
    base = dict(
        referral_id=make_referral_id(campaign.id, owner.referrer_id, customer_id), referee_id=customer_id, referrer_id=owner.referrer_id,
        code=primary.code, campaign_id=campaign.id, method=primary.method, attributed_at=primary.at,
        source_event_id=primary.source_event_id, referee_email_hash=referee_email, referee_device_id=referee_device,
        channel=primary.channel,
    )
    if orders and orders[0].at < primary.at:
        prior = orders[0]
        out["referral"] = Referral(**base, status="rejected", reason=ReasonCode.EXISTING_CUSTOMER,
                                   evidence=Evidence("prior_order", prior.at, prior.amount, prior.currency))
        return out
    window_start = signups[0].at if signups else primary.at
    qualifying = None
    for o in orders:
        minimum = campaign.minimum_for(o.currency)
        if (minimum is not None and o.amount >= minimum
                and window_start <= o.at <= window_start + campaign.qualification_window):
            qualifying = o
            break
    if qualifying is None:
        out["referral"] = Referral(**base, status="attributed",
                                   evidence=_missed(orders[0], campaign, window_start) if orders else None)
        return out
    hold_end = qualifying.at + campaign.hold_period
    refunds = [r for r in state.refunds.values()
               if r.order_id == qualifying.order_id and r.currency == qualifying.currency]
    in_hold = sum((r.amount for r in refunds if r.at <= hold_end), Decimal(0))
    after_hold = any(r.at > hold_end for r in refunds)
    minimum = campaign.minimum_for(qualifying.currency) or Decimal(0)
    revoked = in_hold > 0 and qualifying.amount - in_hold < minimum
    out["referral"] = Referral(
        **base, status="revoked" if revoked else "qualified",
        reason=ReasonCode.REFUNDED_IN_HOLD if revoked else None, qualifying_order_id=qualifying.order_id,
        qualified_at=qualifying.at, amount=qualifying.amount, currency=qualifying.currency,
        refunded_after_hold=after_hold,
        evidence=_refunded(qualifying, [r for r in refunds if r.at <= hold_end], minimum) if revoked else None,
    )
    return out


def _missed(order: Order, campaign: Campaign, window_start: datetime) -> Evidence:
    """Why an attributed referral's first order did not qualify (the first rule it failed, in the rule's order)."""
    minimum = campaign.minimum_for(order.currency)
    if minimum is None:
        return Evidence("no_minimum", order.at, order.amount, order.currency)
    if order.amount < minimum:
        return Evidence("below_minimum", order.at, order.amount, order.currency)
    return Evidence("outside_window", order.at, order.amount, order.currency, since=window_start)


def _refunded(order: Order, in_hold: list[Refund], minimum: Decimal) -> Evidence:
    """The refunds within the hold that revoked ``order``'s qualification: their sum, and the time of the one
    that took the order below the minimum."""
    total, at = Decimal(0), None
    for refund in sorted(in_hold, key=_rank):
        total += refund.amount
        if at is None and order.amount - total < minimum:
            at = refund.at
    return Evidence("refunded", at or order.at, total, order.currency)


def step(
    state: CustomerState, customer_id: str, fact: Fact, campaigns: CampaignBook, limits: Limits = LIMITS
) -> tuple[CustomerState, list[Referral | Profile]]:
    """Add one fact; return the new state and the outputs that are new or changed. A fact ``limits`` does
    not keep (``admits`` false) changes nothing."""
    bucket = _bucket(state, fact)
    current = getattr(state, bucket)
    # Events are kept once by event id. A candidate is the visitor stage's latest word on one signup
    # (a late click can change it), so a changed candidate replaces the one before.
    if (current.get(_key(fact)) == fact) if isinstance(fact, Candidate) else (_key(fact) in current):
        return state, []
    if not admits(state, fact, limits):
        return state, []
    state = _trim(replace(state, **{bucket: {**current, _key(fact): fact}}), limits)
    decided = _decide(state, customer_id, campaigns)
    changed: list[Referral | Profile] = []
    for key, old in sorted(state.outputs.items()):
        new = decided.get(key)
        if isinstance(old, Referral) and not (
            isinstance(new, Referral) and (new.referrer_id, new.referral_id) == (old.referrer_id, old.referral_id)
        ):
            changed.append(replace(old, status="withdrawn", reason=None))
    changed += [v for k, v in sorted(decided.items()) if state.outputs.get(k) != v]
    return replace(state, outputs=decided), changed
