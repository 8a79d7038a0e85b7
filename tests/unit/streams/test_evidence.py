"""The values a referral's decision rests on (``Evidence``), as the story tells them: exact, and only where the
decision rests on them."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from schemas.derived import RewardStatus
from streams import record_codec
from streams.referee_ledger import Evidence
from tests.oracle.pipeline import ReferencePipeline
from tests.unit.streams.story import T0, Story, resolve


def referral(s: Story, key: str = "default:anna:eva"):
    return s.run().referrals()[key]


def test_an_order_below_the_minimum_is_the_evidence_until_one_qualifies():
    s = Story()
    s.signup("eva", code="ANNA")
    s.order("eva", "18.00", days=1)
    s.order("eva", "5.00", days=2)
    assert referral(s).evidence == Evidence("below_minimum", T0 + timedelta(days=1), Decimal("18.00"), "EUR")
    s.order("eva", "25.00", days=3)
    done = referral(s)
    assert (done.status, done.evidence) == ("qualified", None)


def test_an_order_outside_the_window_says_when_the_window_began():
    s = Story()
    s.signup("eva", code="ANNA")
    s.order("eva", "30.00", days=97)
    assert referral(s).evidence == Evidence("outside_window", T0 + timedelta(days=97), Decimal("30.00"), "EUR",
                                            since=T0)


def test_an_order_in_a_currency_without_a_minimum():
    s = Story()
    s.signup("eva", code="ANNA")
    s.order("eva", "5000", days=1, currency="JPY")
    assert referral(s).evidence == Evidence("no_minimum", T0 + timedelta(days=1), Decimal("5000"), "JPY")


def test_an_existing_customer_is_told_their_first_order():
    s = Story()
    s.signup("eva")
    s.order("eva", "12.50", minutes=10)
    s.order("eva", "30.00", minutes=60, code="ANNA")
    r = referral(s)
    assert (r.reason.value, r.evidence) == ("existing_customer", Evidence(
        "prior_order", T0 + timedelta(minutes=10), Decimal("12.50"), "EUR"))


def test_a_revocation_says_how_much_was_refunded_within_the_hold_and_which_refund_took_it_below_the_minimum():
    s = Story()
    s.signup("eva", code="ANNA")
    s.order("eva", "30.00", minutes=60, order_id="o")
    s.refund("eva", "o", "5.00", days=2)
    s.refund("eva", "o", "6.00", days=3)  # 19.00 left: below the minimum of 20.00
    s.refund("eva", "o", "4.00", days=4)
    s.refund("eva", "o", "5.00", days=20)  # after the hold: not part of it
    r = referral(s)
    assert (r.status, r.evidence) == ("revoked", Evidence("refunded", T0 + timedelta(days=3), Decimal("15.00"), "EUR"))


def test_a_qualified_referral_and_one_without_orders_carry_none():
    s = Story()
    s.signup("eva", code="ANNA")
    assert referral(s).evidence is None
    s.order("eva", "20.00", days=1)
    assert referral(s).evidence is None


def test_evidence_goes_through_the_worker_codec_as_itself():
    s = Story()
    s.signup("eva", code="ANNA")
    s.order("eva", "30.00", days=97)
    r = referral(s)
    assert record_codec.decode(record_codec.encode(r)) == r and r.evidence is not None


def held_counts(s: Story) -> dict[str, int | None]:
    """reward id -> the count of its first held change, from the incremental core (the worker's)."""
    pipeline = ReferencePipeline(s.book, resolve, incremental=True)
    for event in s.events:
        pipeline.feed(event)
    out: dict[str, int | None] = {}
    for w in pipeline.changes:
        if w.status is RewardStatus.HELD_FOR_REVIEW:
            out.setdefault(w.reward_id, w.count)
    return out


def test_a_velocity_hold_says_how_many_signups_its_window_held():
    s = Story()
    s.signup("c0", code="ANNA")  # alone in its hour
    for i in range(1, 8):  # seven within 35 minutes
        s.signup(f"c{i}", code="ANNA", minutes=65 + i * 5)
    for i in range(8):
        s.order(f"c{i}", "30.00", minutes=200 + i)
    counts = held_counts(s)
    # the first window over the limit that holds it: the hour up to c6 (c1 .. c6), not the one up to c7
    assert counts["default:anna:c1:referrer"] == counts["default:anna:c1:referee"] == 6
    assert counts["default:anna:c7:referrer"] == 7  # c7's first window over the limit is its own (c1 .. c7)
    assert "default:anna:c0:referrer" not in counts


def test_a_device_hold_says_how_many_referees_shared_the_device_when_it_was_held():
    s = Story()
    for i in range(4):
        s.signup(f"c{i}", code="ANNA", days=i, device="d-farm")
        s.order(f"c{i}", "30.00", days=i, minutes=60)
    counts = held_counts(s)
    # c0 was pending until c1 came: held then, with two on the device; each later one with those before it
    assert [counts[f"default:anna:c{i}:referrer"] for i in range(4)] == [2, 2, 3, 4]


def test_a_count_is_not_part_of_the_decision():
    s = Story()
    s.signup("eva", code="ANNA", device="d")
    s.order("eva", "30.00", minutes=60)
    w = next(iter(s.run().rewards().values()))
    assert replace(w, count=9) == w
