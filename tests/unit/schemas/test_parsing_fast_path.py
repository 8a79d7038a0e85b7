"""The fast JSON path (msgspec, with a duplicate-key guard) gives exactly what the strict decoder gives: the
same value with the same types, or the same rejection; and so the gateway's intake gives the same events or
the same status and error list whichever decodes. Over the contract cases and generated bodies."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from producers.gateway import intake
from schemas import parsing
from schemas.parsing import EventRejected, decode_json, decode_json_strict
from tests.unit.schemas.factories import NOW, VALID, full

ALL_TYPES = frozenset(VALID)


def typed(value: Any) -> Any:
    """``value`` with every leaf's type beside it (``1 == Decimal(1) == True`` would hide a difference)."""
    if isinstance(value, dict):
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, Decimal):
        return ("Decimal", str(value))
    return (type(value).__name__, value)


def outcome(decode, raw: bytes) -> Any:
    try:
        return ("value", typed(decode(raw)))
    except EventRejected as rejected:
        return ("rejected", rejected.as_json())


def intake_outcome(raw: bytes, monkeypatch, decoder) -> Any:
    monkeypatch.setattr(intake, "decode_json", decoder)
    try:
        got = intake.read_events(raw, allowed_types=ALL_TYPES, principal="p", now=NOW, max_batch=50)
        return ("accepted", [e.model_dump(mode="json") for e in got.events], got.batch)
    except intake.IntakeRejected as rejected:
        return ("rejected", rejected.status, rejected.errors)


json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                        st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: json.loads(str(d)) if
                                                                               "E" not in str(d) else 1.5))
json_values = st.recursive(json_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=20)


@st.composite
def bodies(draw) -> bytes:
    """JSON text of any shape, events of the contract with changes, spacing, duplicate keys, damage."""
    kind = draw(st.sampled_from(sorted(VALID)))
    base = draw(st.one_of(
        json_values,
        st.just(dict(full(kind))),
        st.lists(st.builds(lambda k: dict(full(k)), st.sampled_from(sorted(VALID))), min_size=1, max_size=3),
        st.builds(lambda d, k, v: {**d, k: v}, st.just(dict(full(kind))), st.sampled_from(
            ["amount", "occurred_at", "channel", "customer_id", "extra", "type"]), json_values),
    ))
    text = json.dumps(base, ensure_ascii=draw(st.booleans()),
                      separators=draw(st.sampled_from([(",", ":"), (", ", ": "), (",", " : "), (" ,\n", "\t:\r")])))
    damage = draw(st.sampled_from(["none", "duplicate", "truncate", "byte", "quote_colon", "float", "deep"]))
    raw = text.encode()
    if damage == "duplicate" and ":" in text:
        key = text[:text.index(":") + 1]
        raw = (text.replace(key, key + ' "x", ' + key.lstrip("{["), 1) if text.startswith("{") else text).encode()
        raw = raw.replace(b'{"', b'{"dup": 1, "dup" : 2, "', 1)
    elif damage == "truncate" and raw:
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif damage == "byte" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1:]
    elif damage == "quote_colon":
        raw = raw.replace(b'": ', b'": "\\": ", "q": ', 1).replace(b'":', b'" :', 1)
    elif damage == "float":
        raw = raw.replace(b'"49.90"', b"49.90").replace(b'"9.90"', b"9.9e0")
    elif damage == "deep":
        depth = draw(st.integers(10, 40))
        raw = b"[" * depth + raw + b"]" * depth
    return raw


CASES = [
    b'{"a":1,"a":2}', b'{"a" :1,"a":2}', b'{"a":1, "a" : 2}', b'{"k":"x\\":","k":1}', b"1" * 5000,
    b"[" * 3000 + b"]" * 3000, b"\xef\xbb\xbf{}", b'"\\ud800"', b'{"a":"\\udc00"}', b'"\xed\xa0\x80"',
    b'{"a":NaN}', b'{"a":1e999999}', b'{"a":-0}', b'{"a":-0.0}', b'{"a":18446744073709551616}', b"[]", b"{}",
    b'"a\x01b"', b'{"a":1}x', b" ", b"", b"null", *(json.dumps(full(k)).encode() for k in sorted(VALID)),
    json.dumps([full(k) for k in sorted(VALID)]).encode(),
    json.dumps({**full("order"), "amount": 49.9}).encode().replace(b"49.9", b"49.90"),
]


@pytest.mark.parametrize("raw", CASES, ids=lambda raw: repr(raw[:24]))
def test_the_fast_path_decodes_the_cases_as_the_strict_decoder(raw):
    assert outcome(decode_json, raw) == outcome(decode_json_strict, raw)


@settings(max_examples=1500, deadline=None)
@given(bodies())
@example(b'{"dup": 1, "dup" : 2}')
def test_the_fast_path_decodes_any_body_as_the_strict_decoder(raw):
    assert outcome(decode_json, raw) == outcome(decode_json_strict, raw)


@settings(max_examples=600, deadline=None)
@given(bodies())
def test_the_intake_answers_any_body_the_same_whichever_decodes(raw):
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast = intake_outcome(raw, monkeypatch, decode_json)
        strict = intake_outcome(raw, monkeypatch, decode_json_strict)
    assert fast == strict


def test_valid_events_take_the_fast_path(monkeypatch):
    """The common case is fast: a valid event or batch never reaches the standard library's decoder."""
    monkeypatch.setattr(parsing, "decode_json_strict", lambda raw: pytest.fail("the strict decoder was used"))
    for raw in [json.dumps(full(k)).encode() for k in sorted(VALID)] + [json.dumps([full("share")] * 3).encode()]:
        decode_json(raw)


def test_a_duplicate_key_spaced_out_still_goes_to_the_strict_decoder():
    with pytest.raises(EventRejected) as rejected:
        decode_json(b'{"type": "share", "type" \n : "click"}')
    assert rejected.value.as_json()[0]["rule"] == "duplicate_field"


def test_an_integer_too_long_to_read_is_rejected_not_an_error():
    with pytest.raises(EventRejected) as rejected:
        decode_json(b'{"amount": ' + b"9" * 5000 + b"}")
    assert rejected.value.as_json()[0]["rule"] == "json_number"


def test_nesting_near_the_interpreters_limit_is_ruled_on_by_the_strict_decoder():
    """msgspec reads a few levels deeper than the standard library (998 against 993 here) and where the latter
    gives out depends on the caller's stack: both give way to the one documented limit."""
    def decoded_or_rejection(decode, raw):  # the value is nested lists only: decoded or not is the question
        try:
            decode(raw)
            return "decoded"
        except EventRejected as rejected:
            return rejected.as_json()

    for depth in [*range(60, 70), *range(900, 1010)]:
        raw = b"[" * depth + b"]" * depth
        assert decoded_or_rejection(decode_json, raw) == decoded_or_rejection(decode_json_strict, raw), depth
