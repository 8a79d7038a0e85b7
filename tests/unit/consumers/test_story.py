"""The story's steps, told: every decision with its concrete values, in English and German, and no other
customer's id anywhere in a step."""

from __future__ import annotations

import json

from consumers.story import referral_steps, reward_step, told
from schemas.derived import RewardChange
from tests.oracle.pipeline import ReferencePipeline
from tests.unit.streams.story import Story, resolve

SECRET = "story-test-key"


def run(s: Story) -> ReferencePipeline:
    pipeline = ReferencePipeline(s.book, resolve, incremental=True)  # the worker's cores: held rewards counted
    for event in s.events:
        pipeline.feed(event)
    return pipeline


def steps_of(s: Story, customer: str, referral: str = "default:anna:eva") -> dict:
    return referral_steps(run(s).referrals()[referral], customer, s.book, SECRET)


def said(step, language="en") -> str:
    return told(step, language)


def change_of(w) -> RewardChange:
    return RewardChange(event_id=f"{w.reward_id}:{w.status.value}:1", occurred_at=w.at, reward_id=w.reward_id,
                        referral_id=w.referral_id, role=w.role, customer_id=w.customer_id, points=w.points,
                        status=w.status, reason=w.reason, campaign_id=w.campaign_id, count=w.count)


def test_an_order_below_the_minimum_is_told_with_both_amounts():
    s = Story()
    s.signup("eva", code="ANNA")
    s.order("eva", "18.00", days=1)
    steps = steps_of(s, "anna")
    assert set(steps) == {"attributed", "missed"}
    assert said(steps["attributed"]).endswith("signed up on 2026-05-04 with your referral code.")
    assert said(steps["missed"]) == (
        "The first order, 18.00 EUR on 2026-05-05, was below the campaign's minimum of 20.00 EUR; a later order of "
        "at least 20.00 EUR within 90 days of the signup still qualifies.")
    assert said(steps["missed"], "de") == (
        "Die erste Bestellung, 18,00 EUR am 05.05.2026, lag unter dem Mindestwert der Aktion von 20,00 EUR; eine "
        "spätere Bestellung ab 20,00 EUR innerhalb von 90 Tagen nach der Registrierung zählt noch.")
    referee = steps_of(s, "eva")["attributed"]
    assert said(referee) == f"You signed up on 2026-05-04 with the referral code of {referee['friend']}."


def test_an_order_outside_the_window_is_told_with_its_days():
    s = Story()
    s.signup("eva", code="ANNA")
    s.order("eva", "30.00", days=97)
    assert said(steps_of(s, "anna")["missed"]) == (
        "The first order came on 2026-08-09, 97 days after the signup, outside the 90-day window.")


def test_an_existing_customer_is_told_when_they_ordered():
    s = Story()
    s.signup("eva")
    s.order("eva", "12.50", minutes=10)
    s.order("eva", "30.00", minutes=60, code="ANNA")
    step = steps_of(s, "anna")["not_counted"]
    assert said(step).endswith("does not count. The friend had already ordered on 2026-05-04 (12.50 EUR), "
                               "before being referred.")
    assert said(step, "de").endswith("zählt nicht. Die geworbene Person hatte schon am 04.05.2026 bestellt "
                                     "(12,50 EUR), bevor sie geworben wurde.")


def test_a_revocation_is_told_with_the_refund_and_the_hold():
    s = Story()
    s.signup("eva", code="ANNA")
    s.order("eva", "30.00", minutes=60, order_id="o")
    s.refund("eva", "o", "30.00", days=10)
    steps = steps_of(s, "anna")
    assert said(steps["qualified"]) == "The first order, 30.00 EUR on 2026-05-04, qualified the referral."
    assert said(steps["revoked"]) == ("The refund of 30.00 EUR on 2026-05-14 came within the 14-day hold and took "
                                      "the order below the minimum of 20.00 EUR.")


def test_a_velocity_hold_is_told_with_its_count_and_what_releases_it():
    s = Story()
    for i in range(1, 7):
        s.signup(f"c{i}", code="ANNA", minutes=i * 5)
    for i in range(1, 7):
        s.order(f"c{i}", "30.00", minutes=200 + i)
    w = run(s).rewards()["default:anna:c1:referrer"]
    step = reward_step(change_of(w), s.book, SECRET)
    assert said(step) == ("The reward was held for review on 2026-05-04: no points until the shop decides. 6 signups "
                          "used this code within 60 minutes (limit 5). The shop reviews such bursts; points follow "
                          "only if it releases them.")
    assert "6 Registrierungen haben diesen Code innerhalb von 60 Minuten verwendet (Grenze 5)." in said(step, "de")


def test_a_capped_reward_is_told_with_the_month_and_the_cap():
    s = Story(monthly_cap=2)
    for i in range(3):
        s.signup(f"c{i}", code="ANNA", days=i)
        s.order(f"c{i}", "30.00", days=i, minutes=60)
    w = run(s).rewards()["default:anna:c2:referrer"]
    step = reward_step(change_of(w), s.book, SECRET)
    assert said(step) == ("The reward was capped on 2026-05-06: no points. 2 referrals were already rewarded in "
                          "May 2026, the campaign's monthly cap.")
    assert said(step, "de").endswith("Im Mai 2026 wurden schon 2 Empfehlungen belohnt, die monatliche Obergrenze der "
                                      "Aktion.")


def test_a_pending_reward_says_until_when():
    s = Story()
    s.signup("eva", code="ANNA")
    s.order("eva", "30.00", days=1)
    w = run(s).rewards()["default:anna:eva:referee"]
    step = reward_step(change_of(w), s.book, SECRET)
    assert said(step) == "500 points are pending until 2026-05-19: the 14-day period for returns."
    assert step["friend"] and step["role"] == "referee"


def test_a_self_referral_is_told():
    s = Story()
    s.signup("zoe", code="SELF")
    step = steps_of(s, "zoe", "default:zoe:zoe")["not_counted"]
    assert said(step).endswith("does not count. The referral code used was the customer's own.")


def test_a_step_names_no_customer_but_by_pseudonym():
    s = Story()
    s.signup("eva", code="ANNA", email="e-hash", device="d-1")
    s.order("eva", "30.00", days=1, order_id="o")
    s.refund("eva", "o", "30.00", days=2)
    p = run(s)
    steps = [*steps_of(s, "anna").values(), *steps_of(s, "eva").values(),
             *(reward_step(change_of(w), s.book, SECRET) for w in p.rewards().values())]
    text = json.dumps(steps)
    for secret_thing in ("anna", "eva", "e-hash", "d-1"):
        assert secret_thing not in text
