"""Derived event contracts: attributions, reward changes, dead letters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas import Attribution, AttributionMethod, DeadLetter, ReasonCode, RewardChange, RewardStatus
from schemas.derived import WITHHOLDING_STATUSES
from tests.unit.schemas.factories import NOW, T


def reward(**changes):
    data = dict(event_id="r1:pending", occurred_at=T, reward_id="r1", referral_id="ref-1", role="referrer",
                customer_id="cust-1", points=500, status="pending")
    data.update(changes)
    return RewardChange.model_validate(data, context={"now": NOW}, strict=False)


def test_attribution_carries_referee_referrer_code_and_method():
    a = Attribution.model_validate(
        dict(event_id="attr:cust-2", occurred_at=T, referee_id="cust-2", referrer_id="cust-1",
             referral_code="ANNA7K2Q", method="last_click", source_event_id="ev-signup-1"),
        context={"now": NOW}, strict=False,
    )
    assert a.method is AttributionMethod.LAST_CLICK and a.type == "attribution"


@pytest.mark.parametrize("status", sorted(WITHHOLDING_STATUSES))
def test_every_withholding_status_needs_a_reason_code(status):
    with pytest.raises(ValidationError) as info:
        reward(status=status, points=0)
    assert "needs a reason code" in str(info.value)
    assert reward(status=status, points=0, reason="self_referral").reason is ReasonCode.SELF_REFERRAL


@pytest.mark.parametrize("status", ["pending", "confirmed"])
def test_paying_statuses_need_no_reason(status):
    assert reward(status=status).status == RewardStatus(status)


def test_reason_codes_are_a_closed_list():
    with pytest.raises(ValidationError):
        reward(status="revoked", reason="because")


def test_points_are_whole_and_never_negative():
    with pytest.raises(ValidationError):
        reward(points=-1)
    with pytest.raises(ValidationError):
        reward(points=1.5)


def test_dead_letter_keeps_the_original_bytes():
    raw = b"\xff\x00not json"
    letter = DeadLetter.for_record(topic="shop.orders", partition=3, offset=42, value=raw, key=b"k",
                                   reason="utf8", problems=[{"field": "(event)", "rule": "utf8", "message": "x"}],
                                   received_at=NOW)
    again = DeadLetter.model_validate_json(letter.model_dump_json())
    assert again.original_value == raw
    assert (again.source_topic, again.source_partition, again.source_offset) == ("shop.orders", 3, 42)
