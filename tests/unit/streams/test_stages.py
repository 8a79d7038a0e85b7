"""The stages as the worker runs them: versions, duplicates and re-sends, by example."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from schemas.topics import ATTRIBUTIONS, REFERRER_FACTS, REWARDS, VISITOR_FACTS
from streams import referee_ledger, stages
from streams.referee_ledger import CodeOwner
from streams.referrer_rewards import Tick
from tests.unit.streams.story import T0, Story

BOOK = Story().book
ANNA = CodeOwner("anna", "default")


def signup(event_id="s1", code="ANNA", owner=ANNA, visitor=None, minutes=0):
    return referee_ledger.Signup(event_id, T0 + timedelta(minutes=minutes), code, owner, visitor, None, None)


def order(event_id="o1", amount="30.00", minutes=60):
    return referee_ledger.Order(event_id, T0 + timedelta(minutes=minutes), event_id, Decimal(amount), "EUR", None,
                                None)


def topics(outbound):
    return [o.topic for o in outbound]


def test_a_customer_announces_its_attribution_once_and_its_referral_at_every_change():
    step = stages.customer_step(stages.CustomerRecord(), "eva", signup(), BOOK)
    assert topics(step.outbound).count(ATTRIBUTIONS.name) == 1
    attribution = next(o.value for o in step.outbound if o.topic == ATTRIBUTIONS.name)
    assert attribution.event_id == "attribution:eva:s1" and attribution.referrer_id == "anna"
    qualified = stages.customer_step(step.record, "eva", order(), BOOK)
    assert ATTRIBUTIONS.name not in topics(qualified.outbound)  # the same attribution, now qualified
    referral = next(o.value for o in qualified.outbound if o.topic == REFERRER_FACTS.name and o.key == "anna")
    assert referral.fact.status == "qualified" and referral.version == qualified.record.seq == 2


def test_a_duplicate_event_changes_nothing_and_the_resend_repeats_every_current_output():
    first = stages.customer_step(stages.CustomerRecord(), "eva", signup(code=None, owner=None, visitor="v1"), BOOK)
    assert (first.outbound[0].topic, first.outbound[0].key) == (VISITOR_FACTS.name, "v1")
    again = stages.customer_step(first.record, "eva", signup(code=None, owner=None, visitor="v1"), BOOK)
    assert again.duplicate and not again.changed and again.outbound == [] and again.record is first.record
    resend = stages.customer_resend(again.record, "eva")
    assert [(o.topic, o.key) for o in resend] == [(VISITOR_FACTS.name, "v1"), (REFERRER_FACTS.name, "eva")]


def test_a_withdrawn_referral_is_resent_as_withdrawn_so_the_old_referrer_forgets_it():
    record = stages.customer_step(stages.CustomerRecord(), "eva", signup(minutes=10), BOOK).record
    ben = CodeOwner("ben", "default")
    moved = stages.customer_step(record, "eva", signup("s0", "BEN", ben, minutes=0), BOOK)  # an earlier signup
    facts = {(o.key, o.value.fact.status) for o in moved.outbound if o.topic == REFERRER_FACTS.name
             and isinstance(o.value.fact, referee_ledger.Referral)}
    assert ("anna", "withdrawn") in facts and ("ben", "attributed") in facts
    resent = {(o.key, o.value.fact.status) for o in stages.customer_resend(moved.record, "eva")
              if o.topic == REFERRER_FACTS.name and isinstance(o.value.fact, referee_ledger.Referral)}
    assert {("anna", "withdrawn"), ("ben", "attributed")} <= resent


def test_an_older_version_of_a_fact_never_winds_the_referrer_back():
    c1 = stages.customer_step(stages.CustomerRecord(), "eva", signup(), BOOK)
    c2 = stages.customer_step(c1.record, "eva", order(), BOOK)
    old = next(o.value for o in c1.outbound if o.key == "anna")
    new = next(o.value for o in c2.outbound if o.key == "anna")
    r = stages.referrer_step(stages.ReferrerRecord(), "anna", old, BOOK).record
    r = stages.referrer_step(r, "anna", new, BOOK)
    assert {o.value.status.value for o in r.outbound if o.topic == REWARDS.name} == {"pending"}
    replayed = stages.referrer_step(r.record, "anna", old, BOOK)  # a replay delivers the older copy again
    assert replayed.duplicate and replayed.outbound == [] and replayed.record is r.record
    equal_newer = stages.referrer_step(r.record, "anna", replace(new, version=9), BOOK)
    assert not equal_newer.duplicate and equal_newer.outbound == [] and equal_newer.record.seq == r.record.seq


def test_ticks_confirm_once_and_a_replayed_tick_is_a_duplicate():
    c = stages.customer_step(stages.CustomerRecord(), "eva", signup(), BOOK)
    c = stages.customer_step(c.record, "eva", order(), BOOK)
    fact = next(o.value for o in c.outbound if o.key == "anna")
    r = stages.referrer_step(stages.ReferrerRecord(), "anna", fact, BOOK).record
    early = stages.referrer_step(r, "anna", Tick(T0 + timedelta(days=1)), BOOK)
    assert not early.duplicate and not early.changed and early.record is r  # nothing due yet
    late = Tick(T0 + timedelta(days=20))
    done = stages.referrer_step(r, "anna", late, BOOK)
    assert {o.value.status.value for o in done.outbound} == {"confirmed"} and done.record.ticked == late.now
    assert stages.referrer_step(done.record, "anna", late, BOOK).duplicate
    assert stages.referrer_step(done.record, "anna", Tick(late.now + timedelta(days=1)), BOOK).outbound == []
    resend = stages.referrer_resend(done.record, "anna")
    assert {o.value.event_id for o in resend} == {o.value.event_id for o in done.outbound}  # same ids again


def test_the_shares_counted_in_one_cell_share_one_tuple_also_when_read_back():
    """Memory: a counted id's cell is one of few, so one tuple per cell (``stages.interned``), not one per id."""
    from streams import record_codec

    record = stages.ReferrerRecord()
    for i in range(3):
        record = stages.referrer_step(record, "anna", stages.Share(f"s{i}", "default", "whatsapp", T0),
                                      Story().book).record
    cells = list(record.counted.values())
    assert len(cells) == 3 and cells[0] is cells[1] is cells[2]
    read_back = record_codec.decode(record_codec.encode(record))
    assert len({id(c) for c in read_back.counted.values()}) == 3  # decoded: one tuple per id, until indexed
    stages.count_index(read_back)
    assert [c for c in read_back.counted.values()] == cells
    assert all(c is cells[0] for c in read_back.counted.values())


def test_a_referrers_referrals_share_their_common_values_and_reward_ids_are_not_copied():
    """Memory: a referrer's record holds every referral it decided. Decoded from Kafka, each came with its own copy
    of the referrer, code, campaign, method, status and currency; the final set held copies of the rewards' ids,
    and every reward reached its (role, campaign, points) in a tuple of its own."""
    from streams import record_codec

    record = stages.ReferrerRecord()
    for customer in ("eva", "finn"):
        c = stages.customer_step(stages.CustomerRecord(), customer, signup(f"s-{customer}"), BOOK)
        c = stages.customer_step(c.record, customer, order(f"o-{customer}"), BOOK)
        fact = record_codec.decode(record_codec.encode(next(o.value for o in c.outbound if o.key == "anna")))
        record = stages.referrer_step(record, "anna", fact, BOOK).record
    record = stages.referrer_step(record, "anna", Tick(T0 + timedelta(days=20)), BOOK).record
    eva, finn = sorted(record.core.referrals.values(), key=lambda r: r.referee_id)
    assert eva.referee_id == "eva" and eva.referral_id != finn.referral_id
    for name in ("referrer_id", "code", "campaign_id", "method", "status", "currency"):
        assert getattr(eva, name) is getattr(finn, name), name
    assert len(record.core.final) == 4
    assert all(any(i is w.reward_id for w in record.core.rewards.values()) for i in record.core.final)
    reached = {}
    for (reward_id, status), value in record.reached.items():
        assert any(reward_id is w.reward_id for w in record.core.rewards.values())
        reached.setdefault((value, status), []).append(value)
    assert all(all(v is vs[0] for v in vs) for vs in reached.values()) and any(len(v) == 2 for v in reached.values())


def test_a_device_group_of_one_referral_is_a_pair_and_grows_into_a_map():
    """Memory: most referees have a device of their own; a map per device was 300 bytes a referral."""
    from streams import referrer_rewards as rr

    groups: dict = {}
    rr._join_group(groups, ("c", "d"), "r1", "eva")
    assert groups == {("c", "d"): ("r1", "eva")} and rr._members(groups[("c", "d")]) == {"r1": "eva"}
    rr._join_group(groups, ("c", "d"), "r1", "eva")  # again: the same
    assert groups == {("c", "d"): ("r1", "eva")}
    rr._join_group(groups, ("c", "d"), "r2", "finn")
    assert groups == {("c", "d"): {"r1": "eva", "r2": "finn"}}
    rr._leave_group(groups, ("c", "d"), "r1")
    rr._leave_group(groups, ("c", "d"), "r9")  # not a member: nothing
    assert rr._members(groups.get(("c", "d"))) == {"r2": "finn"}
    rr._leave_group(groups, ("c", "d"), "r2")
    assert groups == {} and rr._members(None) == {}
    rr._join_group(groups, ("c", "d"), "r1", "eva")
    rr._leave_group(groups, ("c", "d"), "r1")
    assert groups == {}
