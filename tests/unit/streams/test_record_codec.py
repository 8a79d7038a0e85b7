"""The worker's records and facts as MessagePack envelopes (``streams.record_codec``): every type round-trips,
a value of the format's older shape reads with the defaults, anything else is refused with a reason."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import timedelta
from decimal import Decimal

import msgspec
import pytest

from bench.referrer_history import book, facts, through_stage
from schemas.events import OrderEvent, SignupEvent
from streams import record_codec, referrer_parts, stages
from streams.erasure import Adopt, AdoptPart, Continue, Erase, Forget
from streams.inbound import to_fact
from streams.record_codec import FORMAT, TYPES, UnreadableRecord, decode, encode
from streams.referee_ledger import Profile, Referral
from streams.referrer_rewards import Tick
from streams.visitor_attribution import Candidate, VisitorSignup
from tests.unit.streams.story import T0, campaigns, resolve


def a_referrer_record(referrals: int = 40) -> tuple[stages.ReferrerRecord, list[object]]:
    """A referrer record after ``referrals`` referrals (orders, shares, ticks), and every changelog value."""
    record, values = stages.ReferrerRecord(), []
    for stepped, entries in through_stage(stages.ReferrerRecord(), (f for g in facts(referrals) for f in g), book()):
        record = stepped
        values += [value for _, value in entries if value is not None]
    return record, values


def a_customer_record() -> stages.CustomerRecord:
    """A referred customer who ordered: a referral and a profile among its outputs."""
    record, book_ = stages.CustomerRecord(), campaigns()
    signup = SignupEvent(type="signup", event_id="s1", occurred_at=T0, customer_id="eva", referral_code="ANNA",
                         email_hash="h" * 64, device_id="d1")
    order = OrderEvent(type="order", event_id="o1", occurred_at=T0 + timedelta(hours=1), customer_id="eva",
                       order_id="A-1", amount=Decimal("49.90"), currency="EUR")
    for event in (signup, order):
        record = stages.customer_step(record, "eva", to_fact(event, resolve)[1], book_).record
    assert {type(o) for o in record.sent.values()} == {Referral, Profile}
    return record


def test_every_value_of_a_referrers_changelog_round_trips():
    record, values = a_referrer_record()
    assert {type(v).__name__ for v in values} == {"ReferrerRecord", "ReferralPart", "Counted", "Folded"}
    for value in values:
        assert decode(encode(value)) == value
    back = decode(encode(record))
    assert back == record and isinstance(back.core.final, set) and isinstance(back.visitors, set)
    assert all(isinstance(k, tuple) for k in back.activity)  # tuple keys stay tuples


def examples() -> list[object]:
    """One or more of every record type: the stages' facts, the facts inside a ``Versioned``, the tables' values."""
    customer = a_customer_record()
    referral = next(o for o in customer.sent.values() if isinstance(o, Referral))
    candidate = Candidate("eva", "s1", T0, "ANNA", "anna", "default", "last_click", "c1", "whatsapp")
    referrer, values = a_referrer_record(5)
    visitor = stages.visitor_step(stages.VisitorRecord(), VisitorSignup("s1", T0, "eva"), campaigns()).record
    inner = (referral, Profile("eva", None, "d1"), candidate, stages.Named("eva"),
             stages.ClickCounted("c1", "default", None, T0, "v1"))
    return [Tick(T0), stages.Share("sh1", "default", "sms", T0), Erase("eva", "c_alias", "erasure-1", T0),
            Forget("erasure-1"), Continue("erasure-1"), Adopt("erasure-1", referrer), VisitorSignup("s1", T0, "eva"),
            *(stages.Versioned(f"f{i}", i, fact, T0) for i, fact in enumerate(inner)), *inner,
            customer, visitor, referrer, *values, referrer_parts.Member(3),
            *(AdoptPart("erasure-1", f"p{i}", value) for i, value in enumerate(values[:3])),
            Adopt("erasure-1", referrer_parts.header(referrer, "c_alias"), 7)]


def test_every_record_type_round_trips_as_itself():
    values = examples()
    assert {type(v) for v in values} == set(TYPES.values())  # every tag is exercised
    for value in values:
        back = decode(encode(value))
        assert back == value and type(back) is type(value)
        if isinstance(value, stages.Versioned):
            assert type(back.fact) is type(value.fact)


def test_a_customer_record_keeps_its_referrals_and_profile_apart():
    record = a_customer_record()
    back = decode(encode(record))
    assert back == record
    assert {k: type(v) for k, v in back.sent.items()} == {k: type(v) for k, v in record.sent.items()}
    assert {k: type(v) for k, v in back.core.outputs.items()} == {k: type(v) for k, v in record.core.outputs.items()}


def test_tags_are_unique_and_name_dataclasses():
    assert len(set(TYPES.values())) == len(TYPES)
    assert all(dataclasses.is_dataclass(cls) for cls in TYPES.values())


def test_a_value_written_before_a_field_existed_reads_with_its_default():
    """The reading rule: within a format, fields are only added, with a default."""
    referral = next(o for o in a_customer_record().sent.values() if isinstance(o, Referral))
    older = {f.name: getattr(referral, f.name) for f in dataclasses.fields(Referral) if f.name != "channel"}
    back = decode(msgspec.msgpack.encode((FORMAT, "referral", older)))
    assert back == dataclasses.replace(referral, channel=None)


def test_a_value_with_a_field_this_version_does_not_know_reads_without_it():
    newer = msgspec.msgpack.encode((FORMAT, "forget", {"erasure_id": "erasure-1", "asked_by": "support"}))
    assert decode(newer) == Forget("erasure-1")


def test_a_referrer_record_of_the_version_that_kept_its_cells_at_0_reads_without_them():
    """The version before kept the funnel cells a record ever contributed to (``cells``); a header it wrote reads."""
    record, _values = a_referrer_record()
    body = msgspec.msgpack.decode(encode(record))[2]
    older = msgspec.msgpack.encode((FORMAT, "referrer_record", {**body, "cells": [["signup", "d", "x", "2026-05-04"]]}))
    assert decode(older) == record


@pytest.mark.parametrize(("value", "reason"), [
    (msgspec.msgpack.encode((FORMAT + 1, "forget", {"erasure_id": "erasure-1"})), "other_format"),
    (msgspec.msgpack.encode((FORMAT, "posix.system", {"command": "true"})), "unknown_record"),
    (msgspec.msgpack.encode((FORMAT, "forget", {"erasure_id": 7})), "damaged_record"),
    (msgspec.msgpack.encode((FORMAT, "forget", {})), "damaged_record"),
    (msgspec.msgpack.encode((FORMAT, "versioned", {"fact_id": "f", "version": 1, "fact": b"junk"})),
     "damaged_record"),
    (pickle.dumps(Forget("erasure-1")), "damaged_record"),  # a value of the pickling versions
    (b"", "damaged_record"),
])
def test_anything_else_is_refused_with_a_reason(value, reason):
    with pytest.raises(UnreadableRecord) as refused:
        decode(value)
    assert refused.value.reason == reason


def test_only_record_types_are_encoded():
    with pytest.raises(TypeError):
        encode({"referrer_id": "r1"})
    with pytest.raises(TypeError):
        encode(stages.Step(stages.VisitorRecord()))


def test_the_tables_faust_codec_is_the_same_encoding_and_marks_what_it_cannot_read():
    from faust.serializers import codecs

    from streams.app import RECORDS_CODEC

    value = Forget("erasure-1")
    assert codecs.dumps(RECORDS_CODEC, value) == encode(value)
    assert codecs.loads(RECORDS_CODEC, encode(value)) == value
    assert codecs.loads(RECORDS_CODEC, pickle.dumps(value)) == record_codec.Unread(
        "damaged_record", "not a record envelope: Expected `array`, got `object`")
