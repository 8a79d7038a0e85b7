"""Property-based checks of the contract rules (hypothesis)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from schemas import EventRejected, parse_event, parse_event_json
from schemas.fields import MAX_AMOUNT, PAYMENT_CURRENCIES
from schemas.records import inbound_record
from tests.unit.schemas.factories import NOW, event, full

ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=128
)
printable_ids = ids.filter(str.isprintable)
times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2026, 5, 1, 12, 5), timezones=st.just(UTC)
)
currencies = st.sampled_from(sorted(PAYMENT_CURRENCIES))


@st.composite
def amounts(draw):
    currency = draw(currencies)
    units = PAYMENT_CURRENCIES[currency]
    minor = draw(st.integers(min_value=1, max_value=int(MAX_AMOUNT * 10**units) - 1))
    return currency, Decimal(minor).scaleb(-units), minor


@given(ids, printable_ids, times)
def test_any_valid_share_survives_its_own_record(referrer, event_id, at):
    parsed = parse_event(event("share", referrer_id=referrer, event_id=event_id, occurred_at=at.isoformat()),
                         now=NOW)
    record = inbound_record(parsed, "test")
    assert parse_event_json(record.value, now=NOW) == parsed
    assert record.key == referrer.encode()


@given(amounts(), st.booleans())
def test_any_amount_within_currency_precision_is_exact(amount, as_string):
    currency, value, minor = amount
    text = format(value, "f")
    raw = json.dumps(event("order", amount="X", currency=currency)).replace(
        '"X"', json.dumps(text) if as_string else text
    )
    parsed = parse_event_json(raw, now=NOW)
    assert parsed.amount == value
    assert parsed.amount_minor == minor


@given(currencies, st.integers(min_value=1, max_value=4))
def test_one_decimal_more_than_the_currency_allows_is_rejected(currency, extra):
    units = PAYMENT_CURRENCIES[currency]
    value = "1." + "0" * units + "0" * (extra - 1) + "7"
    try:
        parse_event(event("order", amount=value, currency=currency), now=NOW)
    except EventRejected as exc:
        assert [p.rule for p in exc.problems] == ["currency_precision"]
    else:
        raise AssertionError(f"{value} {currency} was accepted")


@given(st.timedeltas(min_value=timedelta(minutes=5, microseconds=1), max_value=timedelta(days=3650)))
def test_anything_more_than_5_minutes_ahead_is_rejected(ahead):
    try:
        parse_event(event("click", occurred_at=(NOW + ahead).isoformat()), now=NOW)
    except EventRejected as exc:
        assert [p.rule for p in exc.problems] == ["future_time"]
    else:
        raise AssertionError("accepted")


@given(st.dictionaries(st.text(max_size=20), st.none() | st.integers() | st.text(max_size=20), max_size=8))
def test_arbitrary_objects_are_rejected_with_problems_never_crashes(data):
    try:
        parse_event(data, now=NOW)
    except EventRejected as exc:
        assert exc.problems
        assert all(p.field and p.rule and p.message for p in exc.problems)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_rejected_with_problems_never_crashes(raw):
    try:
        parse_event_json(raw, now=NOW)
    except EventRejected as exc:
        assert exc.problems


@given(st.sampled_from(["share", "click", "signup", "order", "refund"]), st.text(min_size=1, max_size=30))
def test_any_unknown_field_is_named(kind, name):
    data = full(kind)
    if name in data:
        return
    data[name] = "x"
    try:
        parse_event(data, now=NOW)
    except EventRejected as exc:
        assert any(p.field == name and p.rule == "unknown_field" for p in exc.problems)
    else:
        raise AssertionError("accepted")
