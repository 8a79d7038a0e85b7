"""Claims: a signup sent with a publishable key (an app's word) counts once the shop's server confirms the
customer with a signup of its own, within the campaign's claim window (docs/rules.md, claims)."""

from __future__ import annotations

import itertools

from schemas.derived import ReasonCode
from streams import stages
from streams.referee_ledger import Referral
from tests.unit.streams.story import Story, statuses

PENDING = ("pending", 500, None)


def referral(story: Story, referrer: str = "anna") -> Referral:
    return story.run().referrals()[f"default:{referrer}:eva"]


def test_a_claim_alone_is_listed_with_its_reason_and_earns_nothing():
    s = Story()
    s.signup("eva", code="ANNA", claim=True)
    s.order("eva", "30.00", minutes=60)
    p = s.run(tick_days=60)
    r = p.referrals()["default:anna:eva"]
    assert (r.status, r.reason, r.method, r.code) == ("rejected", ReasonCode.CLAIM_UNCONFIRMED, "signup_code",
                                                      "ANNA")
    assert statuses(p) == {}


def test_the_shops_signup_confirms_the_apps_code_in_any_order_and_it_earns_as_before():
    events = []
    s = Story()
    events.append(s.signup("eva", code="ANNA", claim=True, minutes=0))
    events.append(s.signup("eva", minutes=3))  # the shop's server: no code, it did not see one
    events.append(s.order("eva", "30.00", minutes=60))
    outcomes = set()
    for order in itertools.permutations(s.events):
        p = s.run(list(order))
        r = p.referrals()["default:anna:eva"]
        outcomes.add((r.status, r.reason, r.method, r.source_event_id, tuple(sorted(statuses(p).items()))))
    assert outcomes == {("qualified", None, "signup_code", events[0]["event_id"],
                         (("default:anna:eva:referee", PENDING), ("default:anna:eva:referrer", PENDING)))}


def test_an_apps_click_is_confirmed_the_same_way():
    s = Story()
    s.click("v1", "ANNA")
    s.signup("eva", visitor="v1", claim=True, minutes=5)
    assert referral(s).reason is ReasonCode.CLAIM_UNCONFIRMED
    s.signup("eva", minutes=6)
    r = referral(s)
    assert (r.status, r.method) == ("attributed", "last_click")


def test_a_confirmation_outside_the_claim_window_confirms_nothing():
    s = Story(claim_window_minutes=60)
    s.signup("eva", code="ANNA", claim=True)
    s.signup("eva", minutes=61)
    assert (referral(s).status, referral(s).reason) == ("rejected", ReasonCode.CLAIM_UNCONFIRMED)
    s = Story(claim_window_minutes=60)
    s.signup("eva", code="ANNA", claim=True, minutes=60)
    s.signup("eva")  # the shop's signup may come first by event time too
    assert referral(s).status == "attributed"


def test_the_shops_own_code_decides_and_an_app_claim_for_another_referrer_is_a_duplicate():
    s = Story()
    s.signup("eva", code="BEN", claim=True)
    s.signup("eva", code="ANNA", minutes=1)
    p = s.run()
    assert p.referrals()["default:anna:eva"].status == "attributed"
    dup = p.referrals()["default:ben:eva:e1"]
    assert (dup.status, dup.reason) == ("rejected", ReasonCode.DUPLICATE_ATTRIBUTION)


def test_a_claim_does_not_make_the_customer_a_referrer_profile():
    """Self-referral checks compare a referee with the referrer's first confirmed signup, not an app's claim."""
    s = Story()
    s.signup("anna", email="h-x", claim=True)
    s.signup("eva", code="ANNA", email="h-x", minutes=5)
    s.order("eva", "30.00", minutes=60)
    assert statuses(s.run()) == {"default:anna:eva:referee": PENDING, "default:anna:eva:referrer": PENDING}
    s.signup("anna", email="h-x", minutes=1)  # the shop confirms anna with that address: now it is shared
    assert {w[2] for w in statuses(s.run()).values()} == {ReasonCode.SHARED_EMAIL}


def test_a_code_at_checkout_still_attributes_a_customer_with_only_a_claim():
    s = Story()
    s.signup("eva", code="BEN", claim=True)
    s.order("eva", "30.00", minutes=60, code="ANNA")
    p = s.run()
    assert (p.referrals()["default:anna:eva"].method, p.referrals()["default:anna:eva"].status) == (
        "order_code", "qualified")


def test_a_waiting_claim_is_not_counted_among_the_reasons_ever_withheld():
    """Most claims are confirmed at once: the referrer's record does not remember the wait as a withholding."""
    s = Story()
    s.signup("eva", code="ANNA", claim=True)
    unconfirmed = referral(s)
    record = stages._advance(stages.ReferrerRecord(), referrals=[unconfirmed])
    assert record.withheld == {}
    record = stages._advance(record, referrals=[Referral(**{
        **{f: getattr(unconfirmed, f) for f in unconfirmed.__slots__}, "reason": ReasonCode.SELF_REFERRAL})])
    assert record.withheld == {("default:anna:eva", "self_referral"): "default"}
