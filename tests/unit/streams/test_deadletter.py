"""Bad inbound records become dead letters with their bytes, origin and reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from schemas import DeadLetter, ShareEvent
from streams.deadletter import classify

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
SHARE = {"type": "share", "event_id": "e1", "occurred_at": "2026-05-01T11:00:00Z", "referrer_id": "r",
         "channel": "sms"}


def run(value, topic="referrals.shares", prefix=""):
    return classify(topic=prefix + topic, partition=2, offset=41, key=b"k", value=value, received_at=NOW,
                    topic_prefix=prefix)


def test_a_valid_event_passes():
    assert isinstance(run(json.dumps(SHARE).encode()), ShareEvent)


@pytest.mark.parametrize(("value", "reason"), [
    (b"\xff\xfe", "utf8"), (b"{nope", "json"), (b"[]", "object"), (None, "empty"),
    (json.dumps({**SHARE, "channel": "fax"}).encode(), "enum"),
    (json.dumps({**SHARE, "extra": 1}).encode(), "unknown_field"),
])
def test_bad_records_become_dead_letters(value, reason):
    letter = run(value)
    assert isinstance(letter, DeadLetter)
    assert letter.reason == reason
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("referrals.shares", 2, 41)
    assert letter.original_value == (value or b"")
    assert letter.problems and all({"field", "rule", "message"} <= set(p) for p in letter.problems)


def test_a_valid_event_on_the_wrong_topic_is_a_dead_letter():
    letter = run(json.dumps(SHARE).encode(), topic="shop.orders", prefix="t1.")
    assert isinstance(letter, DeadLetter) and letter.reason == "wrong_topic"
    assert "a share event on t1.shop.orders" in letter.problems[0]["message"]
