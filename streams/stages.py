"""The three stages as the worker runs them: the pure rules plus what at-least-once delivery needs.

Pure: (record, input) -> (record, outbound messages, flags); the Faust agents in
``streams.app`` only read topics, keep the records in tables and send what comes out.

Kafka delivers at least once, and a worker killed at any moment restarts from its last
committed input offsets with tables that may be *ahead* of them (a table change can
reach its changelog while the outputs of the same event did not). So:

- every fact one stage sends another is ``Versioned``: the sender's change counter for
  that fact id. A receiver keeps the newest version of each fact id and ignores older or
  equal ones, so a replayed, re-sent or reordered copy never winds a fact back;
- an input the record already contains (a *duplicate*) changes nothing; the shell then
  asks ``*_resend`` for the record's current outputs, once per key and process, and
  sends them again (receivers see equal facts: no-ops). After a crash, every event whose
  outputs may be lost was not committed, is delivered again, and so is a duplicate;
- the referrer stage's Redis counters are written as a snapshot of the record, fenced by
  the record's ``seq`` (see ``streams.redis_sink``), so a snapshot written twice, or an
  older one written late, changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from schemas.derived import Attribution, AttributionMethod, ReasonCode, RewardChange
from schemas.topics import ATTRIBUTIONS, CUSTOMER_FACTS, REFERRER_FACTS, REWARDS, VISITOR_FACTS
from streams import counters, referee_ledger, referrer_rewards, visitor_attribution
from streams.campaigns import CampaignBook
from streams.counters import NO_CHANNEL
from streams.erasure import Adopt, Continue, Erase, Forget, mentions, rename
from streams.interning import interned
from streams.referee_ledger import CustomerState, Profile, Referral
from streams.referrer_rewards import ReferrerState, Reward, Tick
from streams.visitor_attribution import Candidate, Click, VisitorSignup, VisitorState


@dataclass(frozen=True, slots=True)
class Versioned:
    """A fact sent from one stage to another. Only the newest ``version`` of a ``fact_id`` counts."""

    fact_id: str
    version: int
    fact: Any
    caused_at: datetime | None = None  # event time of the inbound event behind this version (freshness); None on re-send


@dataclass(frozen=True, slots=True)
class ClickCounted:
    """A click on a referrer's code, for the referrer's counters (counted once per event id)."""

    event_id: str
    campaign_id: str
    channel: str | None
    at: datetime
    visitor_id: str | None = None


@dataclass(frozen=True, slots=True)
class Named:
    """A customer's records name the referrer (a code of theirs, a click on their link): if that referrer is
    erased, the customer's records are renamed too."""

    customer_id: str


@dataclass(frozen=True, slots=True)
class Share:
    event_id: str
    campaign_id: str
    channel: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Outbound:
    """A record to send: ``topic`` is a ``TopicSpec`` name, ``value`` a ``Versioned`` or a derived event."""

    topic: str
    key: str
    value: Any


@dataclass(frozen=True, slots=True)
class Step:
    record: Any
    outbound: list[Outbound] = field(default_factory=list)
    duplicate: bool = False  # the input was in the record already: the shell may re-send (``*_resend``)
    changed: bool = False  # the record changed (the referrer shell then writes its counters)
    # ``record`` None: delete the key (an erased customer's marker, ``Forget``)
    parts: frozenset[str] | None = None  # referrer stage: the parts of the record that changed (None: any)
    dropped: str | None = None  # the input was not applied, for this reason (``BEYOND_DEDUP_HORIZON``)


# -- visitors -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VisitorRecord:
    core: VisitorState = field(default_factory=VisitorState)
    seq: int = 0


def _visitor_outbound(record: VisitorRecord, candidates: list[Candidate], clicks: list[Click],
                      caused_at: datetime | None = None) -> list[Outbound]:
    out = [Outbound(CUSTOMER_FACTS.name, c.customer_id,
                    Versioned(f"candidate:{c.source_event_id}", record.seq, c, caused_at))
           for c in candidates]
    out += [Outbound(REFERRER_FACTS.name, c.referrer_id,
                     Versioned(f"click:{c.event_id}", 0,
                               ClickCounted(c.event_id, c.campaign_id, c.channel, c.at, c.visitor_id)))
            for c in clicks if c.referrer_id]
    return out


# A visitor is a browser (its cookie) or whatever id an app sends: anyone can send clicks under one. Its record is
# one changelog value, so it keeps at most this many clicks and signups; the ones after are not taken
# (``VISITOR_FACT_CAP``: no candidate, no click counted). A person clicks a few referral links, not hundreds; a
# bot replaying one cookie would otherwise grow the value past Kafka's limit and stop the worker for everyone.
VISITOR_FACTS_KEPT = 300  # the default of ``StreamSettings.visitor_fact_cap``: about 60 KB of record
VISITOR_FACT_CAP = "visitor_fact_cap"


def visitor_step(record: VisitorRecord, fact: Click | VisitorSignup | Erase, campaigns: CampaignBook,
                 cap: int = VISITOR_FACTS_KEPT) -> Step:
    if isinstance(fact, Erase):  # the erased customer's signups go; clicks on their links are renamed
        gone = {k for k, signup in record.core.signups.items() if signup.customer_id == fact.customer_id}
        core = replace(record.core, signups={k: v for k, v in record.core.signups.items() if k not in gone},
                       candidates={k: v for k, v in record.core.candidates.items() if k not in gone})
        if not gone and not mentions(core, fact.customer_id):
            return Step(record, duplicate=True)
        return Step(VisitorRecord(rename(core, fact.customer_id, fact.pseudonym), record.seq + 1), changed=True)
    kept = record.core.clicks if isinstance(fact, Click) else record.core.signups
    if fact.event_id not in kept and len(record.core.clicks) + len(record.core.signups) >= cap:
        return Step(record, dropped=VISITOR_FACT_CAP)
    core, candidates = visitor_attribution.step(record.core, fact, campaigns)
    if core is record.core:
        return Step(record, duplicate=True)
    record = VisitorRecord(core, record.seq + 1)
    return Step(record, _visitor_outbound(record, candidates, [fact] if isinstance(fact, Click) else [], fact.at),
                changed=True)


def visitor_resend(record: VisitorRecord) -> list[Outbound]:
    candidates = sorted((c for c in record.core.candidates.values() if c is not None),
                        key=lambda c: (c.at, c.source_event_id))
    clicks = sorted(record.core.clicks.values(), key=lambda c: (c.at, c.event_id))
    return _visitor_outbound(record, candidates, clicks)


# -- customers (referees) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    core: CustomerState = field(default_factory=CustomerState)
    seq: int = 0
    seen: dict[str, int] = field(default_factory=dict)  # candidate fact id -> newest version applied
    sent: dict[str, Referral | Profile] = field(default_factory=dict)  # fact id -> last word sent (withdrawn too)
    erasure: CustomerErasure | None = None  # the marker of an erased customer (streams.erasure), nothing else
    # every referrer the customer's facts named (sent ``Named``), also by facts the core no longer keeps: the
    # erasure must reach them all. At most ``NAMED_KEPT``: a fact naming one more is not taken.
    named: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CustomerErasure:
    erase: Erase
    visitors: tuple[str, ...]  # the visitor records of the customer's browser
    referrers: tuple[str, ...]  # the referrers holding one of the customer's referrals, or named by them


def _customer_erasure_outbound(customer_id: str, marker: CustomerErasure) -> list[Outbound]:
    erase = marker.erase
    return ([Outbound(VISITOR_FACTS.name, v, erase) for v in marker.visitors]
            + [Outbound(REFERRER_FACTS.name, r, erase) for r in marker.referrers]
            + [Outbound(CUSTOMER_FACTS.name, customer_id, Forget(erase.erasure_id))])


def _customer_erase(record: CustomerRecord, customer_id: str, erase: Erase) -> Step:
    x, p = erase.customer_id, erase.pseudonym
    if customer_id == x:
        if record.erasure is not None:
            return Step(record, duplicate=True)  # the shell re-sends the marker's outputs
        if record == CustomerRecord():
            return Step(record)  # nothing of it here (or erased before: its marker is gone)
        marker = CustomerErasure(
            erase, tuple(sorted({s.visitor_id for s in record.core.signups.values() if s.visitor_id})),
            tuple(sorted({o.referrer_id for o in record.sent.values() if isinstance(o, Referral)}
                         | _named_by(record))))
        record = CustomerRecord(seq=record.seq + 1, erasure=marker)
        return Step(record, _customer_erasure_outbound(customer_id, marker), changed=True)
    if not mentions(record, x):  # renamed before (or never concerned): re-send what it says
        return Step(record, duplicate=True)
    renamed = rename(record, x, p)
    renamed = replace(renamed, seq=renamed.seq + 1)
    # the referrals that named the erased referrer go, renamed, to the pseudonym's record (newer versions)
    out = [Outbound(REFERRER_FACTS.name, p, Versioned(_fact_id(o), renamed.seq, o))
           for _, o in sorted(renamed.sent.items()) if isinstance(o, Referral) and o.referrer_id == p]
    return Step(renamed, out, changed=True)


def _fact_id(output: Referral | Profile) -> str:
    return f"profile:{output.customer_id}" if isinstance(output, Profile) else f"referral:{output.referral_id}"


def attribution_event(referral: Referral) -> Attribution:
    """The attribution event for a customer's referral; its id is stable, so a re-send is the same event."""
    return Attribution(
        event_id=f"attribution:{referral.referee_id}:{referral.source_event_id}",
        occurred_at=referral.attributed_at, referee_id=referral.referee_id, referrer_id=referral.referrer_id,
        referral_code=referral.code, method=AttributionMethod(referral.method),
        source_event_id=referral.source_event_id, campaign_id=referral.campaign_id)


def _attributes(output: Referral | Profile) -> bool:
    return isinstance(output, Referral) and output.status in ("attributed", "qualified", "revoked")


def _customer_outbound(record: CustomerRecord, outputs: list[Referral | Profile],
                       before: dict[str, Referral | Profile], caused_at: datetime | None = None) -> list[Outbound]:
    out: list[Outbound] = []
    for o in outputs:
        fact_id = _fact_id(o)
        target = o.customer_id if isinstance(o, Profile) else o.referrer_id
        out.append(Outbound(REFERRER_FACTS.name, target, Versioned(fact_id, record.seq, o, caused_at)))
        old = before.get(fact_id)
        if _attributes(o) and not (old is not None and _attributes(old)
                                   and old.source_event_id == o.source_event_id):  # type: ignore[union-attr]
            out.append(Outbound(ATTRIBUTIONS.name, o.referee_id, attribution_event(o)))  # type: ignore[union-attr]
    return out


# A customer's record keeps a bounded part of their history (``referee_ledger.Limits``): a customer with thousands
# of orders (a business buying every day) would otherwise grow one changelog value past Kafka's limit. Besides, it
# remembers the referrers its facts named, at most this many: only a customer using hundreds of codes reaches it.
NAMED_KEPT = 100


def customer_step(record: CustomerRecord, customer_id: str,
                  fact: referee_ledger.Signup | referee_ledger.Order | referee_ledger.Refund | Versioned | Erase
                  | Forget, campaigns: CampaignBook, limits: referee_ledger.Limits = referee_ledger.LIMITS) -> Step:
    if isinstance(fact, Erase):
        return _customer_erase(record, customer_id, fact)
    if isinstance(fact, Forget):  # the marker goes; again if it went before (the tombstone may be all that was lost)
        if (record.erasure is not None and record.erasure.erase.erasure_id == fact.erasure_id) \
                or record == CustomerRecord():
            return Step(None, changed=True)
        return Step(record)
    if record.erasure is not None:
        return Step(record)  # an erased customer's event: dropped (docs/operations.md, erasure, says so)
    seen = record.seen
    if isinstance(fact, Versioned):
        if seen.get(fact.fact_id, -1) >= fact.version:
            return Step(record, duplicate=True)
        seen = {**seen, fact.fact_id: fact.version}
        caused_at = fact.caused_at
        fact = fact.fact
    else:
        caused_at = fact.at
    named_before = _named_by(record)
    naming = _named_in(fact)
    if not referee_ledger.admits(record.core, fact, limits) or (
            naming is not None and naming not in named_before and len(named_before) >= NAMED_KEPT):
        return Step(record, dropped=referee_ledger.FACT_CAP)  # not even its version is kept: dropped each time
    core, outputs = referee_ledger.step(record.core, customer_id, fact, campaigns, limits)
    if core is record.core:
        if seen is record.seen:
            return Step(record, duplicate=True)
        return Step(replace(record, seen=seen), changed=True)  # a newer copy of a fact it has
    if len(core.signups) < len(record.core.signups) + isinstance(fact, referee_ledger.Signup):
        # a late, earlier signup took the place of the latest kept: that one's candidate versions go with it
        seen = {k: v for k, v in seen.items() if not k.startswith("candidate:")
                or k.removeprefix("candidate:") in core.signups}
    before = record.sent
    named = named_before | _named(core)
    record = CustomerRecord(core, record.seq + 1, seen, {**before, **{_fact_id(o): o for o in outputs}},
                            named=tuple(sorted(named)) if named != named_before else record.named)
    signups = [fact] if isinstance(fact, referee_ledger.Signup) else []
    return Step(record,
                _visitor_signups(customer_id, signups) + _customer_outbound(record, outputs, before, caused_at)
                + _named_outbound(customer_id, named - named_before),
                changed=True)


def _named(core: CustomerState) -> set[str]:
    """The referrers a customer's facts name: owners of the codes they used, referrers of their clicks."""
    named = {f.owner.referrer_id for f in (*core.signups.values(), *core.orders.values()) if f.owner is not None}
    return named | {c.referrer_id for c in core.candidates.values()}


def _named_by(record: CustomerRecord) -> set[str]:
    """Every referrer the customer's facts named (a record written before ``named`` was kept: its core's)."""
    return set(record.named) | _named(record.core)


def _named_in(fact: object) -> str | None:
    if isinstance(fact, Candidate):
        return fact.referrer_id
    owner = getattr(fact, "owner", None)
    return owner.referrer_id if owner is not None else None


def _named_outbound(customer_id: str, referrers: set[str]) -> list[Outbound]:
    return [Outbound(REFERRER_FACTS.name, r, Versioned(f"named:{customer_id}", 0, Named(customer_id)))
            for r in sorted(referrers)]


def _visitor_signups(customer_id: str, signups: list[referee_ledger.Signup]) -> list[Outbound]:
    """A signup without a code goes to its visitor, to meet the visitor's clicks."""
    return [Outbound(VISITOR_FACTS.name, s.visitor_id, VisitorSignup(s.event_id, s.at, customer_id))
            for s in signups if s.visitor_id and not s.referral_code]


def customer_resend(record: CustomerRecord, customer_id: str) -> list[Outbound]:
    if record.erasure is not None:
        return _customer_erasure_outbound(customer_id, record.erasure)
    return _customer_facts_resend(record, customer_id) + _named_outbound(customer_id, _named_by(record))


def _customer_facts_resend(record: CustomerRecord, customer_id: str) -> list[Outbound]:
    signups = sorted(record.core.signups.values(), key=lambda s: (s.at, s.event_id))
    return (_visitor_signups(customer_id, signups)
            + _customer_outbound(record, [record.sent[k] for k in sorted(record.sent)], {}))


# -- referrers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferrerRecord:
    """One referrer's record. Its collections are updated in place by ``referrer_step`` (as the core is:
    ``streams.referrer_rewards``), so an event costs what it changes, not a copy of the referrer's history;
    the fields themselves (``seq``, ``ticked``, ``erasure``) change by ``replace``."""

    core: ReferrerState = field(default_factory=ReferrerState)
    seq: int = 0  # bumped on every change the counters show; fences the Redis snapshot
    versions: dict[str, int] = field(default_factory=dict)  # referral/profile fact id -> newest version applied
    counted: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)
    # ^ share and click event ids counted (each counts once) -> the funnel cell it counted in
    activity: dict[tuple[str, str, str, str], int] = field(default_factory=dict)  # (stage, campaign, channel, day)
    ticked: datetime | None = None  # the last tick that changed the record
    reached: dict[tuple[str, str], tuple[str, str, int]] = field(default_factory=dict)
    # ^ (reward id, status) -> (role, campaign, points): every status a reward has been in (metrics count these)
    withheld: dict[tuple[str, str], str] = field(default_factory=dict)
    # ^ (referral id, reason code) -> campaign: every reason a referral or its rewards were ever withheld for
    erasure: ReferrerErasure | None = None  # the marker of an erased referrer (streams.erasure), nothing else
    visitors: set[str] = field(default_factory=set)  # visitors whose clicks on its links were counted (their records name it)
    named: set[str] = field(default_factory=set)  # customers whose records name it (``Named``)
    acked: int = 0  # every output of the steps up to this seq is acknowledged by Kafka (``StageRunner`` sets it)
    floor: str = ""  # the dedup horizon's floor: shares and clicks of this UTC day or before are folded (``_count``)
    # what the settled referrals add to the referrer's totals (``streams.referrer_parts.settle``): counter key ->
    # [sum, how many of them name it] (``streams.counters.Totals``); one entry per key, not per referral; the
    # funnel cells of the days before the last few wait in the part store with the day (``archive_before``)
    settled_sums: dict[tuple, list[int]] = field(default_factory=dict)
    # (stage, channel) -> the shares and clicks of the days whose counts wait in the part store, not in ``activity``
    # (``streams.referrer_parts.archive_before``: the days before the last few); empty: every day is in ``activity``
    archived: dict[tuple[str, str], int] = field(default_factory=dict)

    def copy(self) -> ReferrerRecord:
        """An independent record (what a table gives back after a write; the at-least-once model uses it)."""
        return replace(self, core=self.core.copy(), versions=dict(self.versions), counted=dict(self.counted),
                       activity=dict(self.activity), reached=dict(self.reached),
                       withheld=dict(self.withheld), visitors=set(self.visitors), named=set(self.named),
                       settled_sums={k: list(v) for k, v in self.settled_sums.items()},
                       archived=dict(self.archived))


@dataclass(frozen=True, slots=True)
class ReferrerErasure:
    """The marker of an erased referrer, in its record's header. The record keeps the rest as it was (its parts
    stay on the changelog) until ``Forget`` deletes it: the adoption is sent from it, renamed, as often as needed.
    ``adopted`` and ``referees`` are what the markers of the version before held (the whole record, renamed, in
    one value: over Kafka's limit for a large referrer); still read, never written."""

    erase: Erase
    adopted: ReferrerRecord | None = None
    referees: tuple[str, ...] = ()


def _adopted(record: ReferrerRecord, referrer_id: str) -> ReferrerRecord:
    """What the pseudonym's key adopts: the erased referrer's record, renamed, without the marker."""
    marker = record.erasure
    assert marker is not None
    if marker.adopted is not None:
        return marker.adopted
    return rename(replace(record, erasure=None), referrer_id, marker.erase.pseudonym)


def _referrer_erasure_outbound(referrer_id: str, record: ReferrerRecord) -> list[Outbound]:
    """First the adoption (and a ``Continue`` to itself); the rest once that is on Kafka. The ``Adopt`` holds the
    whole renamed record; it goes over Kafka as one fact per part and the header last (``streams.stage_runner``),
    so no message grows with the referrer's history."""
    erase = record.erasure.erase
    return [Outbound(REFERRER_FACTS.name, erase.pseudonym, Adopt(erase.erasure_id, _adopted(record, referrer_id))),
            Outbound(REFERRER_FACTS.name, referrer_id, Continue(erase.erasure_id))]


def _referrer_erasure_continued(referrer_id: str, record: ReferrerRecord) -> list[Outbound]:
    marker = record.erasure
    erase = marker.erase
    if marker.adopted is not None:
        referees, visitors = marker.referees, marker.adopted.visitors
    else:
        referees = tuple(sorted({r.referee_id for r in record.core.referrals.values()}
                                | {s.referee_id for s in record.core.settled.values()} | record.named))
        visitors = record.visitors
    # the customer stage's own erasure of the customer too, only now: what it renames reaches the pseudonym's
    # key after the adopted record (``streams.erasure``)
    return ([Outbound(CUSTOMER_FACTS.name, c, erase) for c in sorted({*referees, referrer_id})]
            + [Outbound(VISITOR_FACTS.name, v, erase) for v in sorted(visitors)]
            + [Outbound(REFERRER_FACTS.name, referrer_id, Forget(erase.erasure_id))])


def _referrer_erase(record: ReferrerRecord, referrer_id: str, erase: Erase) -> Step:
    x, p = erase.customer_id, erase.pseudonym
    if referrer_id == x:
        if record.erasure is not None:
            return Step(record, duplicate=True)
        if record == ReferrerRecord():  # nothing of it here (or erased before: its marker is gone): nothing to
            return Step(record, [Outbound(CUSTOMER_FACTS.name, x, erase)])  # adopt, on to the customer stage
        # the marker in the header, nothing else changed (same seq: its counters are retired at Forget)
        record = replace(record, erasure=ReferrerErasure(erase))
        return Step(record, _referrer_erasure_outbound(referrer_id, record), changed=True, parts=frozenset())
    if not mentions(record, x):
        return Step(record, duplicate=True)
    return Step(_advance_all(rename(record, x, p)), changed=True)


def referral_part(referral_id: str) -> str:
    """The changelog part of a referrer's record holding one referral (``streams.referrer_parts``)."""
    return f"r:{referral_id}"


def referrals_in(parts: Iterable[str]) -> set[str]:
    """The referrals whose parts are among ``parts``."""
    return {p[2:] for p in parts if p.startswith("r:")}


def counted_part(event_id: str) -> str:
    return f"c:{event_id}"


def folded_part(day: str) -> str:
    """A day's shares and clicks, counted, once the dedup horizon's floor has passed it (sorted before the ``c:``
    parts, so a batch sends it before the tombstones of the day's ids)."""
    return f"a:{day}"


def visitor_part(visitor_id: str) -> str:
    return f"v:{visitor_id}"


def named_part(customer_id: str) -> str:
    return f"n:{customer_id}"


def _parts(rewards: Iterable[Reward], *more: str) -> frozenset[str]:
    return frozenset({referral_part(w.referral_id) for w in rewards} | set(more))


def _advance(record: ReferrerRecord, rewards: Iterable[Reward] = (), referrals: Iterable[Referral] = (),
             **changes: Any) -> ReferrerRecord:
    """A change the counters show: a new ``seq``; the reward statuses and withholding reasons that ``rewards``
    (the changes a step emitted) and ``referrals`` (those it stored) reached, remembered (metrics are counters:
    what was reached stays counted). Every reward change is emitted, so this sees every status. The funnel
    cells a referral no longer counts in are not remembered: the snapshot that sees one at 0 names it (it is
    touched), and a complete snapshot takes back any cell Redis holds that it does not name
    (``streams.redis_sink``)."""
    record = replace(record, seq=record.seq + 1, **changes)
    for w in rewards:
        record.reached.setdefault((w.reward_id, w.status.value), interned((w.role.value, w.campaign_id, w.points)))
        if w.reason is not None:
            record.withheld.setdefault((w.referral_id, w.reason.value), w.campaign_id)
    referrals = list(referrals)
    for r in referrals:
        # a claim waiting for the shop's confirmation is not a decision: its reason shows while it lasts (the
        # referral's own), it is not counted among the reasons ever withheld (most claims are confirmed at once)
        if r.status == "rejected" and r.reason is not None and r.reason is not ReasonCode.CLAIM_UNCONFIRMED:
            record.withheld.setdefault((r.referral_id, r.reason.value), r.campaign_id)
    return record


def _advance_all(record: ReferrerRecord) -> ReferrerRecord:
    """``_advance`` for a record any part of which may be new (adopted, renamed): every reward and referral."""
    return _advance(record, record.core.rewards.values(), record.core.referrals.values())


def reward_event(referrer: ReferrerState, w: Reward) -> RewardChange:
    """The change event for a reward's current state; its id names the change, so a re-send is the same event."""
    return RewardChange(
        event_id=f"{w.reward_id}:{w.status.value}:{referrer.changes.get(w.reward_id, 1)}", occurred_at=w.at,
        reward_id=w.reward_id, referral_id=w.referral_id, role=w.role, customer_id=w.customer_id, points=w.points,
        status=w.status, reason=w.reason, campaign_id=w.campaign_id, count=w.count)


def _rewards_outbound(referrer_id: str, core: ReferrerState, rewards: list[Reward]) -> list[Outbound]:
    return [Outbound(REWARDS.name, referrer_id, reward_event(core, w)) for w in rewards]


# The dedup horizon of shares and clicks. A referrer's record keeps the ids of the shares and clicks it counted
# (each counts once, whatever redelivers or resends it) only for the UTC days after its ``floor``: the day of the
# newest event it counted minus ``horizon_days``. Once the floor passes a day, that day's ids go and its counts
# stay, folded (``folded_part``); an event of a day at or before the floor is not counted (``BEYOND_DEDUP_HORIZON``):
# its id may be one that went, and counting it could count it twice. So what the record keeps of them is bounded
# by the events of ``horizon_days`` days, plus one count per (stage, campaign, channel, day) it was active.
DEDUP_HORIZON_DAYS = 60  # the default of ``StreamSettings.dedup_horizon_days``
BEYOND_DEDUP_HORIZON = "beyond_dedup_horizon"


@dataclass
class _CountIndex:
    """Derived from a record's ``counted`` (kept with its state while it lives, rebuilt after a load): the ids
    counted on each day, so that folding a day costs that day's events. A day's cells are not indexed: they are
    read from ``activity`` (``day_cells``) only when the floor passes the day, once per referrer and day (an
    index per referrer and day was the largest thing a record held after its ids, and grew with its active days)."""

    ids: dict[str, list[str]]  # day -> the live ids counted on it


def count_index(record: ReferrerRecord) -> _CountIndex:
    index = record.core.__dict__.get("_count_index")
    if index is None:
        index = _CountIndex({})
        counted = record.counted
        for event_id, cell in counted.items():
            counted[event_id] = cell = interned(cell)  # read back from the changelog or disk: one tuple per id
            index.ids.setdefault(cell[3], []).append(event_id)
        record.core.__dict__["_count_index"] = index
    return index


def day_cells(record: ReferrerRecord, day: str) -> list[tuple[str, str, str, str]]:
    """The cells in ``activity`` of one day (a scan of ``activity``: only when the floor passes the day)."""
    return [cell for cell in record.activity if cell[3] == day]


def keep_counted(record: ReferrerRecord, event_id: str, cell: tuple[str, str, str, str]) -> None:
    """A counted id back into the record from where it was kept (``streams.referrer_parts.fold``): its count never
    left ``activity``, so only the id and its place in the index come back."""
    if event_id in record.counted:
        return
    record.counted[event_id] = cell = interned(cell)
    index = record.core.__dict__.get("_count_index")
    if index is not None:
        index.ids.setdefault(cell[3], []).append(event_id)


def take_counted(record: ReferrerRecord) -> list[tuple[str, tuple[str, str, str, str]]]:
    """The record's counted ids out of it (to where ``streams.referrer_parts.fold`` keeps them), their counts
    staying in ``activity``."""
    out = list(record.counted.items())
    record.counted.clear()
    index = record.core.__dict__.get("_count_index")
    if index is not None:
        index.ids.clear()
    return out


def utc_day(at: datetime) -> str:
    """The UTC day a share or click counts on (its funnel cell's, the dedup horizon's)."""
    return at.strftime("%Y-%m-%d")


def counted_id(stage: str, event_id: str) -> str:
    """The id a share or click counts under in its referrer's record (``counted``)."""
    return f"{stage}:{event_id}"


def counting(fact: object) -> tuple[str, str] | None:
    """(the id a share or click counts under, its UTC day) for a fact ``_count`` takes; None for any other."""
    if isinstance(fact, Share):
        return counted_id("share", fact.event_id), utc_day(fact.at)
    if isinstance(fact, Versioned) and isinstance(fact.fact, ClickCounted):
        return counted_id("click", fact.fact.event_id), utc_day(fact.fact.at)
    return None


def forget_count_index(record: ReferrerRecord) -> None:
    """``counted`` or ``activity`` changed outside ``_count`` (``streams.referrer_parts``): rebuilt when next asked."""
    record.core.__dict__.pop("_count_index", None)
    counters.forget(record)


def touched_cells(record: ReferrerRecord, parts: Iterable[str]) -> set[tuple[str, str, str, str]]:
    """The funnel cells of shares and clicks that the parts a step wrote change: a counted event's cell, every cell
    of a folded day (whose events this batch may have counted before the floor passed it)."""
    out: set[tuple[str, str, str, str]] = set()
    for part in parts:
        if part.startswith("c:"):
            cell = record.counted.get(part[2:])
            if cell is not None:  # None: a tombstone (its day folded: see that day's part)
                out.add(cell)
        elif part.startswith("a:"):
            out.update(day_cells(record, part[2:]))
    return out


def folded_days(record: ReferrerRecord) -> list[str]:
    """The days whose counts are folded (at or before the floor) that have any."""
    return sorted({cell[3] for cell in record.activity if cell[3] <= record.floor})


def floor_of(day: str, horizon_days: int) -> str:
    """The floor that counting an event of ``day`` sets."""
    return (date.fromisoformat(day) - timedelta(days=horizon_days)).isoformat()


def _count(record: ReferrerRecord, event_id: str, stage: str, campaign_id: str, channel: str,
           at: datetime, horizon_days: int) -> Step:
    if event_id in record.counted:
        return Step(record, duplicate=True)
    day = utc_day(at)
    if day <= record.floor:
        return Step(record, dropped=BEYOND_DEDUP_HORIZON)
    key = interned((stage, campaign_id, channel, day))
    day = key[3]  # the interned cell's: one string per day for the process, not one per referrer and day
    index = count_index(record)
    record.counted[event_id] = key
    record.activity[key] = record.activity.get(key, 0) + 1
    counters.counted(record, key)
    day_ids = index.ids.get(day)
    if day_ids is None:
        index.ids[day] = [event_id]
    else:
        day_ids.append(event_id)
    parts = {counted_part(event_id)}
    floor = floor_of(day, horizon_days)
    if floor <= record.floor:
        return Step(_advance(record), changed=True, parts=frozenset(parts))
    for gone in [d for d in index.ids if d <= floor]:  # the days the floor passes: their ids go, counts stay
        for old in index.ids.pop(gone):
            del record.counted[old]
            parts.add(counted_part(old))  # a tombstone, sent after the day's folded part (``referrer_parts``)
        parts.add(folded_part(gone))
    return Step(_advance(record, floor=floor), changed=True, parts=frozenset(parts))


def part_ids(record: ReferrerRecord) -> list[str]:
    """Every changelog part the record has (``streams.referrer_parts``: what a whole rewrite writes, what deleting
    it deletes, what an adoption sends)."""
    return ([referral_part(rid) for rid in record.core.referrals]
            + [referral_part(rid) for rid in record.core.settled]  # read back from where they are kept
            + [folded_part(day) for day in folded_days(record)]
            + [counted_part(eid) for eid in record.counted]
            + [visitor_part(vid) for vid in record.visitors] + [named_part(cid) for cid in record.named])


def _with_header(record: ReferrerRecord, adopted: ReferrerRecord) -> ReferrerRecord:
    """The adopted record: ``adopted`` itself, or, when it came over Kafka, its header (``adopted``) on the parts
    this key took in before it (``streams.stage_runner``, ``AdoptPart``)."""
    if not (record.core.referrals or record.core.settled or record.counted or record.activity or record.visitors
            or record.named):
        return adopted.copy()
    record.core.profile = adopted.core.profile
    record.versions.update(adopted.versions)
    return replace(record, seq=adopted.seq, ticked=adopted.ticked, floor=max(record.floor, adopted.floor), acked=0)


def referrer_step(record: ReferrerRecord, referrer_id: str,
                  fact: Share | Versioned | Tick | Erase | Adopt | Continue | Forget,
                  campaigns: CampaignBook, horizon_days: int = DEDUP_HORIZON_DAYS) -> Step:
    if isinstance(fact, Erase):
        return _referrer_erase(record, referrer_id, fact)
    if isinstance(fact, Forget):  # the marker and the counters go; again if they went before (a crash may have
        # lost the Redis part after the tombstone): both are idempotent
        if (record.erasure is not None and record.erasure.erase.erasure_id == fact.erasure_id) \
                or record == ReferrerRecord():
            return Step(None, changed=True)
        return Step(record)
    if isinstance(fact, Continue):
        if record.erasure is not None and record.erasure.erase.erasure_id == fact.erasure_id:
            return Step(record, _referrer_erasure_continued(referrer_id, record))
        return Step(record)
    if isinstance(fact, Adopt):
        if record.seq > 0 or record.erasure is not None:
            return Step(record, duplicate=True)  # adopted before
        if fact.parts is not None and len(part_ids(record)) < fact.parts:
            return Step(record)  # a crash lost some of its parts: the erasure sends them all again
        # over Kafka, its parts are written already (one step each): only the header is
        parts = None if fact.parts is None else frozenset()
        return Step(_advance_all(_with_header(record, fact.record)), changed=True, parts=parts)
    if record.erasure is not None:  # a fact for an erased referrer: to its pseudonym, renamed
        if isinstance(fact, Tick):
            return Step(record)
        erase = record.erasure.erase
        return Step(record, [Outbound(REFERRER_FACTS.name, erase.pseudonym,
                                      rename(fact, erase.customer_id, erase.pseudonym))])
    if isinstance(fact, Share):
        return _count(record, counted_id("share", fact.event_id), "share", fact.campaign_id, fact.channel, fact.at,
                      horizon_days)
    if isinstance(fact, Tick):
        if record.ticked is not None and fact.now <= record.ticked:
            return Step(record, duplicate=True)
        made_final = referrer_rewards.due(record.core, fact.now, campaigns)
        final = [referral_part(rid) for rid in made_final]
        rewards = referrer_rewards.step(record.core, referrer_id, fact, campaigns)
        if rewards is None:
            return Step(record)
        may_settle(record, made_final)
        record = _advance(record, rewards, ticked=fact.now)
        return Step(record, _rewards_outbound(referrer_id, record.core, rewards), changed=True,
                    parts=_parts(rewards, *final))
    if isinstance(fact.fact, Named):
        if fact.fact.customer_id in record.named:
            return Step(record, duplicate=True)
        record.named.add(fact.fact.customer_id)
        return Step(replace(record), changed=True, parts=frozenset({named_part(fact.fact.customer_id)}))
    if isinstance(fact.fact, ClickCounted):
        c = fact.fact
        step = _count(record, counted_id("click", c.event_id), "click", c.campaign_id, c.channel or NO_CHANNEL, c.at,
                      horizon_days)
        if c.visitor_id and c.visitor_id not in step.record.visitors and not step.duplicate:
            # the visitor's record names the referrer, counted or not: its erasure must reach the visitor
            step.record.visitors.add(c.visitor_id)
            record = step.record if step.changed else replace(step.record)
            step = replace(step, record=record, changed=True,
                           parts=(step.parts or frozenset()) | {visitor_part(c.visitor_id)})
        return step
    if version_of(record, fact.fact_id) >= fact.version:
        return Step(record, duplicate=True)
    record.versions[fact.fact_id] = fact.version
    own = (referral_part(fact.fact.referral_id),) if isinstance(fact.fact, Referral) else ()
    rewards = referrer_rewards.step(record.core, referrer_id, fact.fact, campaigns)
    if rewards is None:
        return Step(replace(record), changed=True, parts=frozenset(own))  # a newer copy of a fact it has
    record = _advance(record, rewards, [fact.fact] if isinstance(fact.fact, Referral) else [])
    return Step(record, _rewards_outbound(referrer_id, record.core, rewards), changed=True,
                parts=_parts(rewards, *own))


def may_settle(record: ReferrerRecord, referral_ids: Iterable[str]) -> None:
    """Referrals a step made final or changed, to settle once its outputs are acknowledged if they may then
    (``referrer_parts.fold``, ``referrer_rewards.settleable``; derived, kept with the state while it lives: after a
    load, ``referrer_parts.settling`` looks at every referral)."""
    waiting = record.core.__dict__.get("_settling")
    if waiting is not None:
        waiting.update(referral_ids)


def version_of(record: ReferrerRecord, fact_id: str) -> int:
    """The newest version of a referral or profile fact the record applied (-1: none); a settled referral's is
    kept with its entry (``referrer_rewards.settle``)."""
    version = record.versions.get(fact_id)
    if version is None and fact_id.startswith("referral:"):
        settled = record.core.settled.get(fact_id[len("referral:"):])
        version = settled.version if settled is not None else None
    return -1 if version is None else version


def renames(record: ReferrerRecord, referrer_id: str, fact: object) -> bool:
    """Whether stepping ``fact`` renames ids in the referrer's record (an erased customer it names)."""
    return isinstance(fact, Erase) and fact.customer_id != referrer_id and record.erasure is None


def referrer_repair(record: ReferrerRecord, referrer_id: str, campaigns: CampaignBook, newest: int) -> Step:
    """A record read back torn (``streams.referrer_parts``: some parts newer than the header, ``newest`` the
    newest seq among them): decided again from the ground up, every part written again, every output
    re-sent (what the crash cut short may not have reached anyone)."""
    record = replace(record, seq=max(record.seq, newest))
    if record.erasure is not None:
        return Step(record, _referrer_erasure_outbound(referrer_id, record), changed=True)
    rewards = referrer_rewards.redecide(record.core, referrer_id, campaigns)
    record = _advance(record, rewards)
    return Step(record, referrer_resend(record, referrer_id), changed=True)


def tick_due(record: ReferrerRecord, campaigns: CampaignBook) -> datetime | None:
    """The earliest tick that can change the record (a hold ending), or None: ticks before it leave it as it is,
    so the shell need not step it through them."""
    if record.erasure is not None:
        return None
    return referrer_rewards.next_due(record.core, campaigns)


def caused_at(fact: Share | Versioned | Tick) -> datetime | None:
    """The event time of the inbound event behind a referrer-stage input (None: a tick or a re-send)."""
    if isinstance(fact, Share):
        return fact.at
    if isinstance(fact, Versioned):
        return fact.fact.at if isinstance(fact.fact, ClickCounted) else fact.caused_at
    return None


def note_changed(record: ReferrerRecord, parts: Iterable[str] | None) -> None:
    """Remember at which seq the referrals among ``parts`` (None: all) last changed (derived, kept with the
    state while it lives; ``referrer_parts`` seeds it from the parts' seqs on recovery)."""
    changed_at = record.core.__dict__.setdefault("_changed_at", {})
    changed = list(record.core.referrals if parts is None else referrals_in(parts))
    for rid in changed:
        changed_at[rid] = record.seq
    may_settle(record, changed)  # one without rewards is at rest once acknowledged (``referrer_rewards.settleable``)


def referrer_resend(record: ReferrerRecord, referrer_id: str) -> list[Outbound]:
    """What a duplicate re-sends, once per key and process: the current state of every reward of a referral that
    changed after ``acked`` (what a crash may have kept from Kafka); of every reward if that is not known."""
    if record.erasure is not None:
        return _referrer_erasure_outbound(referrer_id, record)
    core = record.core
    changed_at = core.__dict__.get("_changed_at")
    if changed_at is None:
        rewards = [core.rewards[k] for k in sorted(core.rewards)]
    else:
        rewards = sorted((w for rid in core.referrals if changed_at.get(rid, record.seq + 1) > record.acked
                          for w in referrer_rewards.rewards_of(core, rid)), key=lambda w: w.reward_id)
    return _rewards_outbound(referrer_id, core, rewards)
