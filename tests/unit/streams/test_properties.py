"""Properties of the pure core (hypothesis): duplicates change nothing, order does not matter,
the reward log rebuilds every reward, every withheld reward says why."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tests.oracle.pipeline import rebuild_from_changes
from tests.unit.streams.story import T0, Story

CUSTOMERS = ["c0", "c1", "c2", "c3", "anna", "ben"]
CODES = ["ANNA", "BEN", "CARL", "SELF", "NOBODY"]
minutes = st.integers(min_value=0, max_value=40 * 24 * 60)


@st.composite
def stories(draw) -> Story:
    s = Story(monthly_cap=draw(st.sampled_from([1, 2, 10])), velocity_limit=draw(st.sampled_from([1, 5])))
    orders: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=25))):
        kind = draw(st.sampled_from(["click", "share", "signup", "signup", "order", "order", "refund", "resend"]))
        m = draw(minutes)
        customer = draw(st.sampled_from(CUSTOMERS))
        if kind == "share":
            s.share(draw(st.sampled_from(["anna", "ben"])), draw(st.sampled_from(["whatsapp", "email"])), minutes=m)
        elif kind == "resend":
            if s.events:
                s.resend(draw(st.integers(min_value=0, max_value=len(s.events) - 1)))
        elif kind == "click":
            s.click(draw(st.sampled_from(["v0", "v1", "v2"])), draw(st.sampled_from(CODES)), minutes=m)
        elif kind == "signup":
            s.signup(customer, code=draw(st.none() | st.sampled_from(CODES)),
                     visitor=draw(st.none() | st.sampled_from(["v0", "v1", "v2"])), minutes=m,
                     email=draw(st.none() | st.sampled_from(["h-anna", "h-x"])),
                     device=draw(st.none() | st.sampled_from(["d-anna", "d-y"])), claim=draw(st.booleans()))
        elif kind == "order":
            order_id = f"o{len(orders)}"
            s.order(customer, draw(st.sampled_from(["9.99", "20.00", "35.50", "120.00"])), minutes=m,
                    order_id=order_id, code=draw(st.none() | st.sampled_from(CODES)))
            orders.append((customer, order_id))
        elif orders:
            owner, order_id = draw(st.sampled_from(orders))
            s.refund(owner, order_id, draw(st.sampled_from(["5.00", "20.00", "35.50"])), minutes=m)
    return s


def outcome(pipeline):
    """The final state. Rewards voided by a late event (revoked, 0 points) exist only in some orders."""
    rewards = {k: (w.status, w.points, w.reason) for k, w in pipeline.rewards().items()
               if not (w.status.value == "revoked" and w.points == 0)}
    referrals = {k: (r.referrer_id, r.status, r.reason, r.qualifying_order_id)
                 for k, r in pipeline.referrals().items()}
    return rewards, referrals


END = 60  # days: after every hold in the stories


def describe(story) -> None:
    note(repr([(e.type, e.event_id, e.occurred_at.isoformat(),
                e.model_dump(exclude={"type", "event_id", "occurred_at"}, exclude_none=True)) for e in story.events]))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(stories(), st.randoms(use_true_random=False))
def test_feeding_any_event_twice_changes_nothing(story, rnd):
    describe(story)
    once = story.run(tick_days=END)
    doubled = list(story.events) + [e for e in story.events if rnd.random() < 0.5]
    rnd.shuffle(doubled)
    note(repr([e.event_id for e in doubled]))
    assert outcome(story.run(doubled, tick_days=END)) == outcome(once)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(stories(), st.randoms(use_true_random=False))
def test_any_delivery_order_gives_the_same_final_state(story, rnd):
    in_time = sorted(story.events, key=lambda e: (e.occurred_at, e.event_id))
    describe(story)
    shuffled = list(story.events)
    rnd.shuffle(shuffled)
    note(repr([e.event_id for e in shuffled]))
    assert outcome(story.run(shuffled)) == outcome(story.run(in_time))
    assert outcome(story.run(shuffled, tick_days=END)) == outcome(story.run(in_time, tick_days=END))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(stories(), st.randoms(use_true_random=False))
def test_the_reward_log_alone_rebuilds_every_reward_and_balance(story, rnd):
    events = list(story.events)
    rnd.shuffle(events)
    pipeline = story.run(events[: len(events) // 2])
    pipeline.tick(T0 + timedelta(days=20))
    for event in events[len(events) // 2:]:
        pipeline.feed(event)
    pipeline.tick(T0 + timedelta(days=END))
    assert rebuild_from_changes(pipeline.changes) == pipeline.rewards()
    total = sum(w.points for w in pipeline.rewards().values() if w.status.value in ("pending", "confirmed"))
    log_total = sum(w.points for w in rebuild_from_changes(pipeline.changes).values()
                    if w.status.value in ("pending", "confirmed"))
    assert total == log_total


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(stories())
def test_every_withheld_reward_has_a_reason_and_no_points_are_paid_for_it(story):
    for w in story.run(tick_days=END).rewards().values():
        if w.status.value in ("pending", "confirmed"):
            assert w.reason is None and w.points > 0
        else:
            assert w.reason is not None
            if w.status.value in ("capped", "held_for_review") or w.reason.value == "late_event":
                assert w.points == 0



@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(stories(), st.lists(st.integers(min_value=0, max_value=END * 24), min_size=1, max_size=6))
def test_a_tick_changes_a_referrer_exactly_when_its_next_due_hold_has_ended(story, hours):
    """What lets the worker tick only the referrers due (``stages.tick_due``) instead of all of them."""
    from streams.referrer_rewards import ReferrerState, Tick, has_due, next_due, step

    pipeline = story.run()
    for referrer_id, seen in pipeline.referrers.items():
        state = ReferrerState()  # the incremental core's state, from the referrals the reference holds
        for fact in [seen.profile] * (seen.profile is not None) + sorted(seen.referrals.values(),
                                                                          key=lambda r: r.referral_id):
            step(state, referrer_id, fact, story.book)
        ends = [r.qualified_at + c.hold_period + c.lateness for r in state.referrals.values()
                if r.qualified_at is not None and (c := story.book.get(r.campaign_id)) is not None]
        instants = [T0 + timedelta(hours=h) for h in hours] + ends + [e - timedelta(seconds=1) for e in ends]
        for now in sorted(instants):
            due = next_due(state, story.book)
            assert has_due(state, now, story.book) == (due is not None and due <= now)
            before = state.copy()
            changes = step(state, referrer_id, Tick(now), story.book)
            if due is None or due > now:
                assert changes is None and state == before  # nothing for the tick to do
