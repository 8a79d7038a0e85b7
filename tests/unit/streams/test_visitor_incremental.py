"""The incremental visitor stage against the reference model (hypothesis): fact by fact, the same candidates.

``tests/oracle/visitor_attribution.py`` decides every signup again from the visitor's whole click history on
every fact; ``streams.visitor_attribution`` decides only the signups a fact can change. For any stream of
clicks and signups (codes of campaigns with different windows and policies, clicks without a referrer, late
facts, duplicates, the state reloaded from its encoding at any point), both must emit the same candidates at
every step and hold the same ones at the end.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from streams import record_codec, visitor_attribution
from streams.campaigns import Campaign, CampaignBook
from streams.stages import VisitorRecord
from streams.visitor_attribution import Click, VisitorSignup, VisitorState
from tests.oracle import visitor_attribution as oracle
from tests.unit.streams.story import T0, campaigns

BASE = campaigns().campaign[0]
BOOK = CampaignBook(campaign=[
    BASE,
    Campaign.model_validate({**BASE.model_dump(), "id": "short", "attribution_window_days": 2,
                             "attribution_policy": "first_click"}),
    Campaign.model_validate({**BASE.model_dump(), "id": "late", "starts_at": T0 + timedelta(days=5)}),
])
TIMES = st.integers(min_value=0, max_value=45 * 24).map(lambda h: T0 + timedelta(hours=h))

clicks = st.builds(lambda n, at, code, campaign, referrer, channel: Click(
    f"c{n}", at, code, referrer, campaign, channel, "v1"),
    st.integers(0, 30), TIMES, st.sampled_from(["ANNA", "BEN"]), st.sampled_from(["default", "short", "late", "gone"]),
    st.sampled_from(["anna", "ben", None]), st.sampled_from([None, "whatsapp"]))
signups = st.builds(lambda n, at, customer: VisitorSignup(f"s{n}", at, customer),
                    st.integers(0, 6), TIMES, st.sampled_from(["eva", "finn"]))
facts = st.one_of(clicks, clicks, signups, st.just("reload"))


def reloaded(state: VisitorState) -> VisitorState:
    return record_codec.decode(record_codec.encode(VisitorRecord(state))).core


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(facts, min_size=1, max_size=60))
def test_the_incremental_stage_emits_what_the_reference_emits_at_every_step(stream):
    note(repr(stream))
    expected, state = VisitorState(), VisitorState()
    for fact in stream:
        if fact == "reload":
            state = reloaded(state)
            continue
        known = fact.event_id in (state.clicks if isinstance(fact, Click) else state.signups)
        expected, want = oracle.step(expected, fact, BOOK)
        before = state
        state, got = visitor_attribution.step(state, fact, BOOK)
        assert got == want, fact
        assert (state is before) == known  # the same object: a duplicate (the stage tells them apart so)
    assert state.candidates == expected.candidates
    assert state.clicks == expected.clicks and state.signups == expected.signups


def test_a_visitor_with_a_thousand_clicks_decides_a_click_by_its_window_alone():
    """Clicks a day apart over years: a new click looks at the signups of one window after it, not at all."""
    book = campaigns()
    state = VisitorState()
    for i in range(1000):
        state, _ = visitor_attribution.step(
            state, Click(f"c{i}", T0 + timedelta(days=i), "ANNA", "anna", "default", None, "v1"), book)
        if i % 100 == 0:
            state, _ = visitor_attribution.step(state, VisitorSignup(f"s{i}", T0 + timedelta(days=i, hours=1),
                                                                     f"cust{i}"), book)
    idx = state.__dict__["_idx"]
    assert len(idx.clicks) == 1000 and len(idx.signups) == 10
    state, got = visitor_attribution.step(state, VisitorSignup("late", T0 + timedelta(days=2000), "x"), book)
    assert got == [] and state.candidates["late"] is None  # no click within its window


def test_a_visitor_keeps_at_most_its_cap_of_clicks_and_signups_and_says_why_it_drops_the_rest():
    """A bot replaying one cookie: the record stops growing at the cap (one changelog value: it must stay well
    under Kafka's limit); a click after it is dropped with its reason, no click counted, no candidate; a click it
    kept, delivered again, is still a duplicate (its outputs re-sent)."""
    from streams import stages

    book, record = campaigns(), VisitorRecord()
    steps = []
    for i in range(stages.VISITOR_FACTS_KEPT + 50):
        click = Click(f"click-{i:06d}-0123456789", T0 + timedelta(minutes=i), "ANNA", "anna", "default",
                      "whatsapp", "bot-cookie-0123456789")
        step = stages.visitor_step(record, click, book)
        steps.append(step)
        record = step.record
    assert len(record.core.clicks) == stages.VISITOR_FACTS_KEPT
    assert len(record_codec.encode(record)) < 100 * 1024
    assert [s.dropped for s in steps].count(stages.VISITOR_FACT_CAP) == 50
    assert all(s.outbound == [] and not s.changed for s in steps[stages.VISITOR_FACTS_KEPT:])
    signup = stages.visitor_step(record, VisitorSignup("s1", T0 + timedelta(days=1), "eva"), book)
    assert signup.dropped == stages.VISITOR_FACT_CAP and signup.outbound == []
    again = stages.visitor_step(record, next(iter(record.core.clicks.values())), book)
    assert again.duplicate and again.dropped is None


def test_the_settings_cap_is_the_stages_default():
    from referrals.settings import StreamSettings
    from streams import stages

    assert StreamSettings().visitor_fact_cap == stages.VISITOR_FACTS_KEPT
