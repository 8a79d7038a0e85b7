"""The reward book: the same entry whatever order its writes come in, and what it lets a shop fulfil."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from consumers.webhooks.reward_book import fulfilment_view, refusal, with_change, with_fulfilment
from schemas.derived import ReasonCode, RewardStatus
from schemas.fulfilment import Fulfilment, FulfilmentRequest
from tests.unit.consumers.webhooks.factories import reward

START = datetime(2026, 3, 1, tzinfo=UTC)
REASONS = {RewardStatus.REVOKED: ReasonCode.REFUNDED_IN_HOLD, RewardStatus.CAPPED: ReasonCode.MONTHLY_CAP,
           RewardStatus.HELD_FOR_REVIEW: ReasonCode.VELOCITY_LIMIT}


def change(status: RewardStatus, n: int):
    return reward("rw-1", status, n, reason=REASONS.get(status))


def fulfilment(status: str, minute: int, reference: str = "CPN-1") -> Fulfilment:
    return Fulfilment.of("rw-1", FulfilmentRequest(status=status, reference=reference), START + timedelta(minutes=minute),
                         "shop")


writes = st.lists(st.one_of(
    st.tuples(st.just("change"), st.sampled_from(list(RewardStatus)), st.integers(0, 50)),
    st.tuples(st.just("fulfilment"), st.sampled_from(["fulfilled", "failed"]), st.integers(0, 50)),
), min_size=1, max_size=12, unique_by=lambda w: (w[0], w[2]))


def apply(entry: dict, write) -> dict:
    kind, what, at = write
    new = (with_change(entry, change(what, at + 1), at) if kind == "change"
           else with_fulfilment(entry, fulfilment(what, at, reference=f"ref-{at}")))
    return entry if new is None else new


@given(writes=writes, order=st.randoms(use_true_random=False))
def test_the_entry_is_the_same_whatever_order_its_writes_come_in_and_repeats_change_nothing(writes, order):
    canonical = {}
    for write in sorted(writes, key=lambda w: w[2]):
        canonical = apply(canonical, write)
    shuffled = list(writes) + list(writes)  # every write twice: at least once delivery
    order.shuffle(shuffled)
    entry = {}
    for write in shuffled:
        entry = apply(entry, write)
    assert entry == canonical
    changes = [w for w in writes if w[0] == "change"]
    fulfilments = [w for w in writes if w[0] == "fulfilment"]
    if changes:
        assert entry["status"] == max(changes, key=lambda w: w[2])[1].value
    if fulfilments:
        assert entry["f_status"] == max(fulfilments, key=lambda w: w[2])[1]
    assert (entry.get("take_back") == "1") == (entry.get("status") == "revoked" and entry.get("f_status") == "fulfilled")


def test_a_shop_fulfils_a_pending_or_confirmed_reward_and_is_told_why_not_otherwise():
    assert refusal({}).status == 404 and refusal({}).rule == "unknown_reward"
    assert refusal(with_fulfilment({}, fulfilment("fulfilled", 1))).rule == "unknown_reward"  # the reward unknown
    for status in (RewardStatus.PENDING, RewardStatus.CONFIRMED):
        assert refusal(with_change({}, change(status, 1), 5)) is None
    for status, rule in ((RewardStatus.REVOKED, "reward_revoked"), (RewardStatus.CAPPED, "reward_capped"),
                         (RewardStatus.HELD_FOR_REVIEW, "reward_held_for_review")):
        assert (refusal(with_change({}, change(status, 1), 5)).status, refusal(with_change(
            {}, change(status, 1), 5)).rule) == (409, rule)


def test_a_reward_revoked_after_it_was_fulfilled_is_marked_to_take_back():
    entry = with_change({}, change(RewardStatus.CONFIRMED, 2), 7)
    entry = with_fulfilment(entry, fulfilment("fulfilled", 3))
    assert fulfilment_view(entry) == {"status": "fulfilled", "reference": "CPN-1", "note": None,
                                      "at": "2026-03-01T00:03:00Z", "take_back": False}
    entry = with_change(entry, change(RewardStatus.REVOKED, 3), 9)
    assert fulfilment_view(entry)["take_back"] is True
    assert fulfilment_view(with_change({}, change(RewardStatus.PENDING, 1), 1)) is None


def test_the_same_call_twice_is_the_same_event():
    request = FulfilmentRequest(status="fulfilled", reference="CPN-1", note="sent by e-mail")
    first = Fulfilment.of("rw-1", request, START, "shop")
    assert Fulfilment.of("rw-1", request, START + timedelta(seconds=30), "shop").event_id == first.event_id
    assert Fulfilment.of("rw-2", request, START, "shop").event_id != first.event_id
    other = FulfilmentRequest(status="failed", reference="CPN-1", note="sent by e-mail")
    assert Fulfilment.of("rw-1", other, START, "shop").event_id != first.event_id
