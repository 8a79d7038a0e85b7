"""What a customer's record keeps (``streams.referee_ledger.Limits``): bounded, and exact against the model.

The model is the ledger without limits (it recomputes every decision from all the facts it was given), fed
only the facts the documented rule keeps: the first signups and orders by event time, the first refunds of
each kept order. The bounded ledger, fed every fact in any order with repeats, must end with the same
outputs, and its state must hold exactly those facts. Then the stage: a customer with thousands of orders
stays one small changelog value, and the referrers named by facts it no longer keeps still hear of the
customer's erasure.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from referrals.settings import StreamSettings
from streams import record_codec, referee_ledger, stages
from streams.erasure import Erase
from streams.referee_ledger import CodeOwner, CustomerState, Limits, Order, Refund, Signup
from tests.unit.streams.story import T0, campaigns

BOOK = campaigns()
SMALL = Limits(signups=2, orders=3, refunds_per_order=2, unmatched_refunds=100)
OWNERS = {"ANNA": CodeOwner("anna", "default"), "BEN": CodeOwner("ben", "default"), "EVA": CodeOwner("eva", "default")}
TIMES = st.integers(min_value=0, max_value=120 * 24).map(lambda h: T0 + timedelta(hours=h))

signups = st.builds(lambda n, at, code: Signup(f"s{n}", at, code, OWNERS.get(code or ""), None, None, None),
                    st.integers(0, 5), TIMES, st.sampled_from([None, "ANNA", "BEN", "EVA", "NOBODY"]))
orders = st.builds(lambda n, at, amount, code: Order(f"o{n}", at, f"order-{n % 5}", Decimal(amount), "EUR", code,
                                                     OWNERS.get(code or "")),
                   st.integers(0, 8), TIMES, st.sampled_from(["5.00", "20.00", "49.90"]),
                   st.sampled_from([None, None, "ANNA", "BEN"]))
refunds = st.builds(lambda n, at, order, amount: Refund(f"r{n}", at, f"order-{order}", Decimal(amount), "EUR"),
                    st.integers(0, 8), TIMES, st.integers(0, 5), st.sampled_from(["5.00", "49.90"]))


def _rank(fact):
    return fact.at, fact.event_id


def kept_by_rule(facts: list, limits: Limits) -> list:
    """The facts the documented rule keeps, from the set of all of them (the first of each event id wins)."""
    unique = {}
    for f in facts:
        unique.setdefault((type(f), f.event_id), f)
    of = lambda kind: sorted((f for f in unique.values() if isinstance(f, kind)), key=_rank)
    kept_signups = of(Signup)[:limits.signups]
    kept_orders = of(Order)[:limits.orders]
    kept_ids = {o.order_id for o in kept_orders}
    by_order: dict = {}
    for r in of(Refund):
        by_order.setdefault(r.order_id if r.order_id in kept_ids else None, []).append(r)
    kept_refunds = [r for order_id, group in by_order.items()
                    for r in group[:limits.unmatched_refunds if order_id is None else limits.refunds_per_order]]
    return kept_signups + kept_orders + kept_refunds


def through(facts: list, limits: Limits | None = None) -> CustomerState:
    state = CustomerState()
    for fact in facts:
        state, _ = (referee_ledger.step(state, "eva", fact, BOOK, limits) if limits
                    else referee_ledger.step(state, "eva", fact, BOOK))
    return state


def unbounded(facts: list) -> CustomerState:
    return through(facts, Limits(signups=10**6, orders=10**6, refunds_per_order=10**6, unmatched_refunds=10**6))


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.one_of(signups, orders, orders, refunds), min_size=1, max_size=30,
                unique_by=lambda f: (type(f), f.event_id)),  # an event id is one event
       st.randoms())
def test_the_bounded_ledger_decides_what_the_model_decides_from_the_facts_the_rule_keeps(facts, rnd):
    stream = facts + rnd.sample(facts, k=len(facts) // 3)  # repeats, anywhere
    rnd.shuffle(stream)
    note(repr(stream))
    bounded = through(stream, SMALL)
    model = unbounded(kept_by_rule(facts, SMALL))
    assert bounded.outputs == model.outputs
    assert (bounded.signups, bounded.orders) == (model.signups, model.orders)
    # the refunds of the kept orders too; of an order no longer kept (its refunds wait as if for a late order)
    # the state may hold fewer than the rule: ones trimmed while their order was kept. They never decide anything.
    of_kept = lambda state: {k: r for k, r in state.refunds.items()
                             if r.order_id in {o.order_id for o in state.orders.values()}}
    assert of_kept(bounded) == of_kept(model)
    assert len(bounded.signups) <= SMALL.signups and len(bounded.orders) <= SMALL.orders


def test_a_referral_qualifies_with_one_of_the_first_orders_or_not_at_all():
    small = Limits(orders=2)
    facts = [Signup("s", T0, "ANNA", OWNERS["ANNA"], None, None, None),
             Order("o1", T0 + timedelta(hours=1), "order-1", Decimal("5.00"), "EUR", None, None),
             Order("o2", T0 + timedelta(hours=2), "order-2", Decimal("5.00"), "EUR", None, None),
             Order("o3", T0 + timedelta(hours=3), "order-3", Decimal("49.90"), "EUR", None, None)]
    assert through(facts, small).outputs["referral"].status == "attributed"  # o3 is not among the first two
    assert through(facts).outputs["referral"].status == "qualified"


def test_refunds_waiting_for_their_order_are_kept_up_to_their_limit_and_the_rest_is_lost():
    small = Limits(unmatched_refunds=2)
    refunds_first = [Refund(f"r{i}", T0 + timedelta(hours=2, minutes=i), "order-1", Decimal("10.00"), "EUR")
                     for i in range(3)]
    state = through(refunds_first, small)
    assert sorted(state.refunds) == ["r0", "r1"]
    assert not referee_ledger.admits(state, refunds_first[2], small)
    # the order comes: its waiting refunds are its own now, up to the limit per order
    state = through([Order("o1", T0 + timedelta(hours=1), "order-1", Decimal("30.00"), "EUR", None, None)], small)
    state = through(refunds_first[:2] + [Order("o1", T0 + timedelta(hours=1), "order-1", Decimal("30.00"), "EUR",
                                               None, None)] + [refunds_first[2]], small)
    assert sorted(state.refunds) == ["r0", "r1", "r2"]


# -- the stage ---------------------------------------------------------------------------------------------------


def order(i: int, code: str | None = None) -> Order:
    return Order(f"o{i}", T0 + timedelta(hours=i), f"order-{i}", Decimal("49.90"), "EUR", code,
                 OWNERS.get(code or "") if code else None)


def test_a_customer_with_thousands_of_orders_stays_one_small_record():
    record, dropped, sizes = stages.CustomerRecord(), 0, []
    signup = Signup("s", T0 - timedelta(minutes=1), "ANNA", OWNERS["ANNA"], "e" * 64, "d" * 32, None)
    for i, fact in enumerate([signup] + [order(i) for i in range(3_000)]):
        step = stages.customer_step(record, "eva", fact, BOOK)
        dropped += step.dropped == referee_ledger.FACT_CAP
        record = step.record
        if i % 500 == 0:
            sizes.append(len(record_codec.encode(record)))
    assert dropped == 3_000 - referee_ledger.LIMITS.orders
    assert len(record.core.orders) == referee_ledger.LIMITS.orders
    assert record.core.outputs["referral"].qualifying_order_id == "order-0"
    assert max(sizes) < 100_000 and sizes[-1] == sizes[2]  # flat once the first orders are kept
    # a repeat of an order not kept is dropped again, and changes nothing
    again = stages.customer_step(record, "eva", order(2_999), BOOK)
    assert again.record is record and again.dropped == referee_ledger.FACT_CAP and again.outbound == []


def test_an_earlier_order_arriving_late_takes_the_place_of_the_latest_kept():
    small = Limits(orders=2)
    record = stages.CustomerRecord()
    for fact in (Signup("s", T0, "ANNA", OWNERS["ANNA"], None, None, None), order(5), order(6), order(1)):
        record = stages.customer_step(record, "eva", fact, BOOK, small).record
    assert sorted(record.core.orders) == ["o1", "o5"]
    assert record.core.outputs["referral"].qualifying_order_id == "order-1"


def test_the_erasure_reaches_a_referrer_named_only_by_an_order_no_longer_kept():
    small = Limits(orders=1)
    record = stages.CustomerRecord()
    for fact in (order(5, "BEN"), order(1)):  # ben's code on an order that a later-arriving earlier one evicts
        record = stages.customer_step(record, "eva", fact, BOOK, small).record
    assert list(record.core.orders) == ["o1"] and "ben" in record.named
    step = stages.customer_step(record, "eva", Erase("eva", "p-eva", "e1", T0), BOOK, small)
    assert "ben" in step.record.erasure.referrers
    assert any(o.key == "ben" and isinstance(o.value, Erase) for o in step.outbound)


def test_a_customer_naming_too_many_referrers_is_not_taken_further():
    record = stages.CustomerRecord(named=tuple(f"r{i:03}" for i in range(stages.NAMED_KEPT)))
    owner = CodeOwner("one-more", "default")
    step = stages.customer_step(record, "eva", replace(order(1), referral_code="MORE", owner=owner), BOOK)
    assert step.dropped == referee_ledger.FACT_CAP and step.record is record
    known = CodeOwner("r001", "default")
    assert stages.customer_step(record, "eva", replace(order(1), referral_code="R1", owner=known), BOOK).changed


def test_the_record_keeps_what_its_limits_keep_through_its_encoding():
    record = stages.CustomerRecord(named=("anna",))
    assert record_codec.decode(record_codec.encode(record)) == record


def test_the_setting_defaults_to_the_ledgers_limit():
    assert StreamSettings().customer_orders_kept == referee_ledger.LIMITS.orders
