"""The incremental referrer core against the reference model (hypothesis): fact by fact, the same changes.

``tests/oracle/referrer_rewards.py`` recomputes every decision from the referrer's whole history
on every fact; ``streams.referrer_rewards`` touches only what a fact can change. For any stream
of referrals, profiles and ticks (updates of a referral, referrals moving between months,
devices shared, bursts on a code, withdrawals, late events, ticks at any moment, the state
reloaded from its encoding at any point), both must emit the same reward changes at every step
and hold the same rewards.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from schemas.derived import ReasonCode
from streams import record_codec, referrer_rewards
from streams.referee_ledger import Profile, Referral
from streams.referrer_rewards import ReferrerState, Tick
from streams.stages import ReferrerRecord
from tests.oracle import referrer_rewards as oracle
from tests.unit.streams.story import T0, campaigns

REFEREES = [f"c{i}" for i in range(8)]
REFERRER = "anna"
# attribution times: bursts within minutes (velocity), and days apart across months (caps, holds)
OFFSETS = st.one_of(st.integers(min_value=0, max_value=180).map(lambda m: timedelta(minutes=m)),
                    st.integers(min_value=0, max_value=80).map(lambda d: timedelta(days=d, minutes=d * 7)))


@st.composite
def referrals(draw) -> Referral:
    referee = draw(st.sampled_from(REFEREES))
    duplicate = draw(st.sampled_from(["", "", "", ":e9"]))  # a duplicate claim is listed beside the referral
    status = draw(st.sampled_from(["attributed", "qualified", "qualified", "qualified", "revoked", "rejected",
                                   "withdrawn"]))
    attributed_at = T0 + draw(OFFSETS)
    qualified = status in ("qualified", "revoked") or (status != "attributed" and draw(st.booleans()))
    qualified_at = attributed_at + timedelta(days=draw(st.integers(min_value=0, max_value=40)),
                                             minutes=draw(st.integers(min_value=0, max_value=90))) \
        if qualified else None
    reason = {"revoked": ReasonCode.REFUNDED_IN_HOLD,
              "rejected": draw(st.sampled_from([ReasonCode.DUPLICATE_ATTRIBUTION, ReasonCode.EXISTING_CUSTOMER]))
              }.get(status)
    return Referral(
        referral_id=f"default:{REFERRER}:{referee}{duplicate}", referee_id=referee, referrer_id=REFERRER,
        code=draw(st.sampled_from(["ANNA", "ANNA", "ANNA2"])), campaign_id="default", method="signup_code",
        attributed_at=attributed_at, source_event_id=f"s-{referee}{duplicate}", status=status, reason=reason,
        referee_email_hash=draw(st.sampled_from([None, None, "h-anna", f"h-{referee}"])),
        referee_device_id=draw(st.sampled_from([None, "d1", "d2", "d-anna", f"d-{referee}"])),
        qualifying_order_id="o1" if qualified_at else None, qualified_at=qualified_at,
        amount=Decimal("30.00") if qualified_at else None, currency="EUR" if qualified_at else None,
        refunded_after_hold=draw(st.booleans()) if qualified_at else False,
        channel=draw(st.sampled_from([None, "whatsapp"])))


facts = st.one_of(
    referrals(), referrals(), referrals(), referrals(),
    st.builds(Profile, st.just(REFERRER), st.sampled_from([None, "h-anna"]), st.sampled_from([None, "d-anna"])),
    st.integers(min_value=0, max_value=140 * 24).map(lambda h: Tick(T0 + timedelta(hours=h))),
    st.just("reload"),
)
books = st.builds(lambda cap, velocity, window, per_device, hold: campaigns(
    monthly_cap=cap, velocity_limit=velocity, velocity_window_minutes=window, referees_per_device=per_device,
    hold_period_days=hold, milestones={1: 100, 2: 200, 3: 250}),
    st.sampled_from([1, 2, 3, 10]), st.sampled_from([1, 2, 5]), st.sampled_from([30, 60]), st.sampled_from([1, 2]),
    st.sampled_from([0, 14]))


def lockstep(book, stream) -> tuple[oracle.ReferrerState, ReferrerState]:
    expected, state = oracle.ReferrerState(), ReferrerState()
    for fact in stream:
        if fact == "reload":  # as the table's changelog gives it back: the index is rebuilt
            state = record_codec.decode(record_codec.encode(ReferrerRecord(core=state))).core
            continue
        expected, want = oracle.step(expected, REFERRER, fact, book)
        got = referrer_rewards.step(state, REFERRER, fact, book)
        assert (got or []) == want, fact
        assert state.rewards == expected.rewards
    return expected, state


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(books, st.lists(facts, min_size=1, max_size=60))
def test_the_incremental_core_emits_what_the_reference_emits_at_every_step(book, stream):
    note(repr(stream))
    expected, state = lockstep(book, stream)
    assert state.final == set(expected.final)
    assert state.changes == expected.changes
    assert state.referrals == expected.referrals
    assert referrer_rewards.next_due(state, book) == oracle.next_due(expected, book)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(books, st.lists(facts, min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_a_copy_is_independent_and_decides_alike(book, stream, rnd):
    state = ReferrerState()
    for fact in (f for f in stream if f != "reload"):
        referrer_rewards.step(state, REFERRER, fact, book)
    twin = state.copy()
    assert twin == state
    later = Tick(T0 + timedelta(days=200))
    changes = referrer_rewards.step(state, REFERRER, later, book)
    assert referrer_rewards.step(twin, REFERRER, later, book) == changes
    assert twin == state
    if changes:
        assert twin is not state and twin.rewards is not state.rewards


def test_a_fact_the_state_holds_changes_nothing():
    book = campaigns()
    r = Referral(referral_id="default:anna:c1", referee_id="c1", referrer_id=REFERRER, code="ANNA",
                 campaign_id="default", method="signup_code", attributed_at=T0, source_event_id="s1",
                 status="qualified", qualifying_order_id="o1", qualified_at=T0 + timedelta(days=1),
                 amount=Decimal("30.00"), currency="EUR")
    state = ReferrerState()
    assert [w.status.value for w in referrer_rewards.step(state, REFERRER, r, book)] == ["pending", "pending"]
    assert referrer_rewards.step(state, REFERRER, r, book) is None
    assert referrer_rewards.step(state, REFERRER, Tick(T0), book) is None  # no hold ends
    assert referrer_rewards.next_due(state, book) == T0 + timedelta(days=15, hours=1)


def test_a_month_whose_cap_is_first_reached_caps_every_later_referral():
    """Found by the lockstep test: c0 is held by the velocity rule while c1 sits beside it; c1 moves 30 minutes
    later and qualifies, c0 is released, and the month's cap (2) is reached at c1 for the first time: c2, later
    in the month and pending until now, must be capped. The walk used to stop at the new reach point."""
    book = campaigns(monthly_cap=2, velocity_limit=1, velocity_window_minutes=30, referees_per_device=1,
                     hold_period_days=0, milestones={1: 100, 2: 200, 3: 250})

    def referral(referee: str, code: str, at: timedelta, qualified: timedelta | None) -> Referral:
        return Referral(referral_id=f"default:anna:{referee}", referee_id=referee, referrer_id=REFERRER, code=code,
                        campaign_id="default", method="signup_code", attributed_at=T0 + at,
                        source_event_id=f"s-{referee}", status="qualified" if qualified is not None else "attributed",
                        qualifying_order_id="o1" if qualified is not None else None,
                        qualified_at=T0 + qualified if qualified is not None else None,
                        amount=Decimal("30.00") if qualified is not None else None,
                        currency="EUR" if qualified is not None else None)

    zero, half_hour, day = timedelta(0), timedelta(minutes=30), timedelta(days=1)
    stream = [referral("c0", "ANNA", zero, zero), referral("c1", "ANNA", zero, None),
              referral("c2", "ANNA2", zero, day), referral("c1", "ANNA", half_hour, half_hour)]
    expected, state = lockstep(book, stream)
    assert state.rewards["default:anna:c2:referrer"].status.value == "capped"
    assert state.rewards == expected.rewards


# -- settled referrals kept out of the state -----------------------------------------------------------------------


class KeptElsewhere:
    """Settled referrals out of the state, as the worker keeps them on disk (``streams.referrer_parts``): each one's
    referral, rewards (their change counts and finality) and entry; an entry goes back into the state only when
    ``settled_reads`` names it, by a lookup written here independently of the worker's."""

    def __init__(self) -> None:
        self.kept: dict[str, tuple] = {}

    def settle_all(self, state: ReferrerState) -> None:
        """Every referral that may settle settled, and every entry out of the state (after each step)."""
        for rid in [rid for rid in state.referrals if referrer_rewards.settleable(state, rid)]:
            rewards = referrer_rewards.rewards_of(state, rid)
            changes = {w.reward_id: state.changes.get(w.reward_id, 0) for w in rewards}
            final = {w.reward_id for w in rewards if w.reward_id in state.final}
            referral, _ = referrer_rewards.settle(state, rid)
            self.kept[rid] = (referral, rewards, changes, final, state.settled[rid])
        for rid in list(state.settled):
            referrer_rewards.forget_settled(state, rid)

    def unsettle(self, state: ReferrerState, rid: str) -> None:
        referral, rewards, changes, final, entry = self.kept.pop(rid)
        referrer_rewards.recall(state, rid, entry)
        referrer_rewards.unsettle(state, rid)
        state.referrals[rid] = referral
        for w in rewards:
            state.rewards[w.reward_id] = w
            state.note_bonus(w)
            if changes[w.reward_id]:
                state.changes[w.reward_id] = changes[w.reward_id]
        state.final.update(final)

    def recall(self, state: ReferrerState, reads: referrer_rewards.Reads) -> int:
        recalled = 0
        for rid, (*_, e) in self.kept.items():
            span = reads.spans.get(e.code)
            month = (e.campaign_id, f"{e.qualified_at:%Y-%m}") if e.qualified_at is not None else None
            if (e.live and span is not None and span[0] <= e.attributed_at <= span[1]) \
                    or (e.live and e.referee_device_id and (e.campaign_id, e.referee_device_id) in reads.groups) \
                    or (e.confirmed and e.in_month and month in reads.months):
                referrer_rewards.recall(state, rid, e)
                recalled += 1
        return recalled

    def rewards(self, state: ReferrerState) -> dict:
        """Every reward held: the state's and the settled referrals'."""
        return {**state.rewards, **{w.reward_id: w for _r, rewards, *_ in self.kept.values() for w in rewards}}


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(books, st.lists(facts, min_size=1, max_size=60))
def test_settled_referrals_kept_out_of_the_state_decide_what_the_reference_decides(book, stream):
    """Every referral that may settle settled after each step and its entry taken out of the state; before each
    step, only the entries ``settled_reads`` names put back (a fact about a settled referral brings it back
    whole first): the same changes as the reference at every step, the same rewards held in all."""
    note(repr(stream))
    expected, state, elsewhere = oracle.ReferrerState(), ReferrerState(), KeptElsewhere()
    recalled = 0
    for fact in stream:
        if fact == "reload":
            state = record_codec.decode(record_codec.encode(ReferrerRecord(core=state))).core
            continue
        if isinstance(fact, Referral) and fact.referral_id in elsewhere.kept:
            elsewhere.unsettle(state, fact.referral_id)
        recalled += elsewhere.recall(state, referrer_rewards.settled_reads(state, fact, book))
        expected, want = oracle.step(expected, REFERRER, fact, book)
        got = referrer_rewards.step(state, REFERRER, fact, book)
        assert (got or []) == want, fact
        elsewhere.settle_all(state)
        assert elsewhere.rewards(state) == expected.rewards
        assert not state.settled
    note(f"{len(elsewhere.kept)} settled at the end, {recalled} entries recalled")
