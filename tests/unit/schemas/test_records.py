"""Records: topics, partition keys, CloudEvents headers."""

from __future__ import annotations

import json

import pytest

from schemas import parse_event
from schemas.records import inbound_record
from schemas.topics import ALL, BY_EVENT_TYPE, INBOUND
from tests.unit.schemas.factories import NOW, VALID, full


def test_topic_names_are_exact():
    assert [t.name for t in ALL] == [
        "referrals.shares", "referrals.clicks", "customers.signups", "shop.orders", "shop.refunds",
        "referrals.attributions", "referrals.rewards", "referrals.deadletter", "referrals.fulfilments",
        "referrals.webhooks.deadletter",
    ]


@pytest.mark.parametrize("kind", list(VALID))
def test_every_inbound_event_goes_to_its_topic_keyed_as_documented(kind):
    parsed = parse_event(full(kind), now=NOW)
    record = inbound_record(parsed, "gateway/app")
    spec = BY_EVENT_TYPE[kind]
    assert record.topic == spec.name
    assert record.key == getattr(parsed, spec.key_field).encode()
    assert json.loads(record.value)["type"] == kind


@pytest.mark.parametrize("kind", list(VALID))
def test_records_carry_cloudevents_headers(kind):
    parsed = parse_event(full(kind), now=NOW)
    headers = dict(inbound_record(parsed, "gateway/app").headers)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == parsed.event_id.encode()
    assert headers["ce_type"] == f"io.referral-pipeline.{kind}.v1".encode()
    assert headers["ce_source"] == b"gateway/app"
    assert headers["ce_time"] == b"2026-05-01T11:00:00Z"
    assert headers["content-type"] == b"application/json"


def test_one_customers_signup_order_and_refund_share_a_key():
    keys = {inbound_record(parse_event(full(k), now=NOW), "t").key for k in ("signup", "order", "refund")}
    assert keys == {b"cust-2"}


def test_every_topic_documents_its_key():
    for spec in ALL:
        assert spec.key_field and len(spec.why) > 20
    assert {s.event_type for s in INBOUND} == set(VALID)


def test_record_value_is_utf8_json_with_amount_as_exact_string():
    record = inbound_record(parse_event(full("order"), now=NOW), "t")
    assert json.loads(record.value.decode("utf-8"))["amount"] == "49.90"
