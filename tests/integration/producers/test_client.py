"""The Python client for shop backends, against the real broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from producers.client import InvalidEvent, ReferralEvents
from referrals.kafka_admin import delete_topics, ensure_topics, project_topics
from referrals.settings import changed
from tests.integration.support.kafka_reading import read_topic


@pytest.fixture
def client_settings(stack, settings, unique_name):
    prefix = unique_name("c").replace(".", "-") + "."
    own = changed(settings, kafka={"topic_prefix": prefix})
    ensure_topics(own, project_topics(own))
    yield own
    delete_topics(own, project_topics(own))


def test_signup_order_refund_reach_their_topics(client_settings):
    at = datetime.now(UTC) - timedelta(minutes=1)
    with ReferralEvents(client_settings.kafka.bootstrap, settings=client_settings, source="shop/test") as events:
        assert events.signup("c-1", referral_code="ANNA7K2Q", occurred_at=at) == "signup:c-1"
        assert events.order("1001", "c-1", Decimal("49.90"), "EUR") == "order:1001"
        assert events.refund("1001", "c-1", "9.90", "EUR", event_id="credit-77") == "credit-77"
        assert events.flush() == 3
    prefix = client_settings.kafka.topic_prefix
    [signup] = read_topic(client_settings, prefix + "customers.signups", expected=1)
    [order] = read_topic(client_settings, prefix + "shop.orders", expected=1)
    [refund] = read_topic(client_settings, prefix + "shop.refunds", expected=1)
    assert json.loads(signup.value)["occurred_at"] == at.isoformat().replace("+00:00", "Z")
    assert json.loads(order.value)["amount"] == "49.90"
    assert json.loads(refund.value)["event_id"] == "credit-77"
    assert dict(order.headers)["ce_source"] == b"shop/test"
    assert signup.partition == order.partition == refund.partition  # one customer, one partition


def test_invalid_input_raises_naming_the_field_and_sends_nothing(client_settings):
    with ReferralEvents(settings=client_settings) as events:
        with pytest.raises(InvalidEvent) as info:
            events.order("1002", "c-2", Decimal("19.999"), "EUR")
        assert [(p.field, p.rule) for p in info.value.problems] == [("amount", "currency_precision")]
        with pytest.raises(InvalidEvent, match="amount: must be a Decimal"):
            events.order("1002", "c-2", 19.99, "EUR")
        with pytest.raises(InvalidEvent) as info:
            events.signup("", email_hash="x")
        assert info.value.problems[0].field == "customer_id"
        assert events.flush() == 0
    assert read_topic(client_settings, client_settings.kafka.topic_prefix + "shop.orders", expected=1,
                      timeout_s=2) == []
