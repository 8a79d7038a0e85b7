"""Bad inbound records, and bad records on the worker's own topics, become dead letters with their bytes,
origin and reason."""

from __future__ import annotations

import dataclasses
import json
import pickle
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.msgpack import encode as msgpack_encode

from schemas import DeadLetter, ShareEvent
from streams.deadletter import classify, classify_internal
from streams.erasure import Erase, Forget
from streams.record_codec import TYPES, encode
from streams.referrer_rewards import Tick
from streams.stages import VisitorRecord

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


# -- the worker's own topics: facts in the records' encoding, read back only as record types ---------------


class RunsCode:
    """A pickle that, unpickled with plain ``pickle.loads``, would write a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def internal(value, topic="referrals.referrer-facts", prefix="t."):
    return classify_internal(topic=prefix + topic, partition=1, offset=7, key=b"r1", value=value, received_at=NOW,
                             topic_prefix=prefix)


def test_a_stage_fact_passes_as_itself():
    tick = Tick(NOW)
    assert internal(encode(tick)) == tick
    erase = Erase("c1", "c_alias", "erasure-1", NOW)
    assert internal(encode(erase), "referrals.customer-facts") == erase


def test_a_pickle_is_no_record_runs_nothing_and_is_a_dead_letter(tmp_path):
    """No pickle is read anywhere: one that would run code is bytes that are not a record envelope."""
    target = tmp_path / "owned"
    value = pickle.dumps(RunsCode(str(target)))
    dead = internal(value)
    assert isinstance(dead, DeadLetter) and dead.reason == "damaged_record"
    assert dead.problems[0]["message"].startswith("not a record envelope")
    assert not target.exists()
    pickle.loads(value)  # what plain pickle would have done
    assert target.exists()
    assert dead.original_value == value and dead.source_topic == "t.referrals.referrer-facts"
    assert (dead.source_partition, dead.source_offset) == (1, 7)


@pytest.mark.parametrize(("value", "reason"), [
    (None, "empty"), (b"", "damaged_record"), (b"\x80\x05garbage", "damaged_record"), (b"{}", "damaged_record"),
    (encode(VisitorRecord()), "wrong_fact"), (encode(Forget("erasure-1"))[:-3], "damaged_record"),
    (msgpack_encode((1, "os.system", {"command": "true"})), "unknown_record"),
    (msgpack_encode((2, "forget", {"erasure_id": "erasure-1"})), "other_format"),
    (msgpack_encode((1, "forget", {"erasure": 1})), "damaged_record"),
])
def test_damaged_or_foreign_records_are_dead_letters(value, reason):
    dead = internal(value)
    assert isinstance(dead, DeadLetter) and dead.reason == reason, dead


@pytest.mark.parametrize("key", [None, b"\xff\xfe"])
def test_a_fact_without_a_utf8_key_is_a_dead_letter(key):
    dead = classify_internal(topic="referrals.referrer-facts", partition=0, offset=0, key=key,
                             value=encode(Forget("erasure-1")), received_at=NOW)
    assert isinstance(dead, DeadLetter) and dead.reason == "key"


def test_a_fact_for_another_stage_is_a_dead_letter():
    dead = internal(encode(Tick(NOW)), "referrals.visitor-facts")
    assert isinstance(dead, DeadLetter) and dead.reason == "wrong_fact"
    assert "Tick" in dead.problems[0]["message"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_on_an_internal_topic_give_a_fact_or_a_dead_letter_never_an_error(value):
    internal(value)


_FIELD_NAMES = sorted({f.name for cls in TYPES.values() for f in dataclasses.fields(cls)})
_plain = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=8)
                      | st.binary(max_size=8) | st.just("2026-05-01T12:00:00Z"),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(TYPES)),
       st.dictionaries(st.text(max_size=12) | st.sampled_from(_FIELD_NAMES), _plain, max_size=6))
def test_any_envelope_of_a_record_tag_gives_a_fact_or_a_dead_letter_never_an_error(tag, body):
    internal(msgpack_encode((1, tag, body)))
