"""Every rule of the inbound event contracts: valid cases, invalid cases, and each rejection's message."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from schemas import EVENT_MODELS, Channel, EventRejected, parse_event, parse_event_json
from schemas.fields import PAYMENT_CURRENCIES
from tests.unit.schemas.factories import ID_FIELDS, NOW, OPTIONAL, REQUIRED, VALID, event, full

KINDS = list(EVENT_MODELS)


def rejected(data, now=NOW) -> list[dict[str, str]]:
    with pytest.raises(EventRejected) as info:
        if isinstance(data, bytes | str):
            parse_event_json(data, now=now)
        else:
            parse_event(data, now=now)
    problems = info.value.as_json()
    # Every problem is JSON an API can return as it is: field, rule and message, all strings.
    assert problems and json.loads(json.dumps(problems)) == problems
    assert all(set(p) == {"field", "rule", "message"} and all(isinstance(v, str) and v for v in p.values())
               for p in problems)
    return problems


def only(data, now=NOW) -> dict[str, str]:
    problems = rejected(data, now)
    assert len(problems) == 1, problems
    return problems[0]


# -- shape ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_minimal_event_of_every_type_is_valid(kind):
    parsed = parse_event(event(kind), now=NOW)
    assert type(parsed) is EVENT_MODELS[kind]
    assert parsed.type == kind


@pytest.mark.parametrize("kind", KINDS)
def test_every_optional_field_is_accepted(kind):
    parsed = parse_event(full(kind), now=NOW)
    for name, value in OPTIONAL[kind].items():
        assert getattr(parsed, name) == value


@pytest.mark.parametrize(("kind", "field"), [(k, f) for k in KINDS for f in REQUIRED[k]])
def test_every_required_field_is_required(kind, field):
    problem = only(event(kind, **{field: ...}))
    assert problem == {"field": field, "rule": "missing", "message": "Field required"}


@pytest.mark.parametrize("kind", KINDS)
def test_optional_fields_are_exactly_the_documented_ones(kind):
    model = EVENT_MODELS[kind]
    required = {n for n, f in model.model_fields.items() if f.is_required()}
    assert required == set(REQUIRED[kind]) | {"type"}
    assert set(model.model_fields) - required == set(OPTIONAL[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_top_level_field_is_rejected_by_name(kind):
    problem = only(event(kind, colour="blue"))
    assert problem["field"] == "colour"
    assert problem["rule"] == "unknown_field"


def test_typo_of_a_field_name_is_rejected_with_a_suggestion():
    data = event("order", customer_id=..., custmer_id="cust-2")
    problems = {p["field"]: p for p in rejected(data)}
    assert problems["custmer_id"]["rule"] == "unknown_field"
    assert "did you mean 'customer_id'" in problems["custmer_id"]["message"]
    assert problems["customer_id"]["rule"] == "missing"


def test_missing_type_is_named():
    problem = only(event("share", type=...))
    assert problem["field"] == "type" and problem["rule"] == "missing"
    assert "share, click, signup, order, refund" in problem["message"]


@pytest.mark.parametrize("value", ["purchase", "Share", 1, None, ["share"]])
def test_unknown_type_is_rejected(value):
    data = event("share", type=value)
    if value is None:
        data["type"] = None
    problem = only(data)
    assert problem["field"] == "type"


def test_all_problems_are_reported_at_once():
    data = event("order", event_id="", occurred_at="yesterday", amount="-3", currency="eur", extra=1)
    fields = {p["field"] for p in rejected(data)}
    assert fields == {"event_id", "occurred_at", "amount", "currency", "extra"}


# -- strictness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "field"), [(k, f) for k in KINDS for f in ID_FIELDS[k]] +
                         [(k, "event_id") for k in KINDS])
@pytest.mark.parametrize("value", [123, 1.5, True, ["a"], {"a": 1}])
def test_ids_are_strings_never_coerced(kind, field, value):
    problem = only(event(kind, **{field: value}))
    assert problem["field"] == field
    assert problem["rule"] == "string_type"


# -- event_id ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "x" * 128, "order 42 / line 3", "bestellung-ä-ß-€", "🙂" * 128])
def test_event_id_accepts_1_to_128_printable_characters(value):
    assert parse_event(event("share", event_id=value), now=NOW).event_id == value


def test_event_id_must_not_be_empty():
    assert only(event("share", event_id="")) == {
        "field": "event_id", "rule": "string_too_short", "message": "String should have at least 1 character"}


def test_event_id_at_most_128_characters():
    assert only(event("share", event_id="x" * 129)) == {
        "field": "event_id", "rule": "string_too_long", "message": "String should have at most 128 characters"}


@pytest.mark.parametrize(("value", "char"), [("a\nb", "U+000A"), ("a\x00", "U+0000"), ("a\u200bb", "U+200B"),
                                             ("tab\t", "U+0009"), ("a\u2028", "U+2028")])
def test_event_id_must_be_printable(value, char):
    assert only(event("share", event_id=value)) == {
        "field": "event_id", "rule": "printable_characters",
        "message": f"must contain printable characters only (found {char})"}


def test_same_event_id_is_the_idempotency_key():
    # Two deliveries of one event parse to equal, hashable values: a set keeps one.
    a = parse_event(event("share"), now=NOW)
    b = parse_event_json(json.dumps(event("share")), now=NOW)
    assert a == b and len({a, b}) == 1


# -- ids and codes -------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "field"), [(k, f) for k in KINDS for f in ID_FIELDS[k]])
def test_ids_and_codes_are_1_to_128_characters(kind, field):
    assert getattr(parse_event(event(kind, **{field: "x" * 128}), now=NOW), field) == "x" * 128
    assert only(event(kind, **{field: ""}))["rule"] == "string_too_short"
    assert only(event(kind, **{field: "x" * 129}))["rule"] == "string_too_long"


@pytest.mark.parametrize(("kind", "field"), [(k, f) for k in KINDS for f in ID_FIELDS[k]])
@pytest.mark.parametrize("bad", ["\x00", "\x1b", "\n", "\x7f", "\x85"])
def test_ids_and_codes_have_no_control_characters(kind, field, bad):
    problem = only(event(kind, **{field: f"ab{bad}cd"}))
    assert problem == {"field": field, "rule": "control_characters",
                       "message": f"must not contain control characters (found U+{ord(bad):04X})"}


# -- occurred_at ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "utc"), [
    ("2026-05-01T11:00:00Z", datetime(2026, 5, 1, 11, 0, tzinfo=UTC)),
    ("2026-05-01T11:00:00z", datetime(2026, 5, 1, 11, 0, tzinfo=UTC)),
    ("2026-05-01t11:00:00+00:00", datetime(2026, 5, 1, 11, 0, tzinfo=UTC)),
    ("2026-05-01T13:00:00+02:00", datetime(2026, 5, 1, 11, 0, tzinfo=UTC)),
    ("2026-05-01T06:30:00-04:30", datetime(2026, 5, 1, 11, 0, tzinfo=UTC)),
    ("2026-05-01T11:00:00.123456789Z", datetime(2026, 5, 1, 11, 0, 0, 123456, tzinfo=UTC)),
    ("1999-12-31T23:59:59Z", datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)),
])
def test_occurred_at_is_rfc3339_with_offset_held_in_utc(text, utc):
    parsed = parse_event(event("share", occurred_at=text), now=NOW)
    assert parsed.occurred_at == utc
    assert parsed.occurred_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["2026-05-01T11:00:00", "2026-05-01T11:00:00.5"])
def test_occurred_at_without_offset_is_rejected(text):
    assert only(event("share", occurred_at=text)) == {
        "field": "occurred_at", "rule": "timezone_required",
        "message": "needs a UTC offset, e.g. 2026-05-01T12:00:00Z"}


@pytest.mark.parametrize("text", ["2026-05-01", "11:00:00Z", "2026-05-01 11:00:00Z", "1 May 2026",
                                  "2026-05-01T11:00Z", "2026-05-01T11:00:00+0200", "2026-05-01T11:00:00 Z",
                                  "20260501T110000Z", ""])
def test_occurred_at_must_be_rfc3339(text):
    assert only(event("share", occurred_at=text)) == {
        "field": "occurred_at", "rule": "rfc3339",
        "message": "must be an RFC 3339 date-time such as 2026-05-01T12:00:00Z"}


@pytest.mark.parametrize("text", ["2026-02-30T11:00:00Z", "2026-13-01T11:00:00Z", "2026-05-01T25:00:00Z"])
def test_occurred_at_must_be_a_real_date(text):
    assert only(event("share", occurred_at=text)) == {
        "field": "occurred_at", "rule": "rfc3339", "message": "is not a valid calendar date and time"}


@pytest.mark.parametrize("value", [1714561200, 1714561200.5, None, True])
def test_occurred_at_is_a_string_not_a_number(value):
    assert only(event("share", occurred_at=value))["rule"] == "rfc3339"


def test_occurred_at_up_to_5_minutes_ahead_is_clock_skew():
    at = NOW + timedelta(minutes=5)
    assert parse_event(event("share", occurred_at=at.isoformat()), now=NOW).occurred_at == at


def test_occurred_at_more_than_5_minutes_ahead_is_rejected():
    at = NOW + timedelta(minutes=5, seconds=1)
    assert only(event("share", occurred_at=at.isoformat())) == {
        "field": "occurred_at", "rule": "future_time",
        "message": "is more than 5 minutes in the future (clock skew allowed: 5 minutes)"}


def test_future_rule_compares_in_utc_whatever_the_offset():
    # 14:04+02:00 is 12:04Z: within 5 minutes of NOW (12:00Z) although "14:04" looks far ahead.
    assert parse_event(event("share", occurred_at="2026-05-01T14:04:00+02:00"), now=NOW)
    assert only(event("share", occurred_at="2026-05-01T12:06:00+00:00"))["rule"] == "future_time"


def test_without_a_clock_the_system_time_is_used():
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    with pytest.raises(EventRejected):
        parse_event(event("share", occurred_at=ahead))
    assert parse_event(event("share", occurred_at=datetime.now(UTC).isoformat()))


# -- channel -------------------------------------------------------------------------------------


def test_channels_are_exactly_the_documented_ones():
    assert [c.value for c in Channel] == ["whatsapp", "email", "sms", "facebook", "instagram", "x", "telegram",
                                          "messenger", "copy_link", "qr", "other"]


@pytest.mark.parametrize("channel", [c.value for c in Channel])
def test_every_channel_is_accepted_on_shares_and_clicks(channel):
    assert parse_event(event("share", channel=channel), now=NOW).channel == channel
    assert parse_event(event("click", channel=channel), now=NOW).channel == channel


@pytest.mark.parametrize("kind", ["share", "click"])
@pytest.mark.parametrize("channel", ["fax", "WhatsApp", "whatsapp ", "", 1])
def test_unknown_channel_is_rejected(kind, channel):
    problem = only(event(kind, channel=channel))
    assert problem["field"] == "channel"
    assert problem["rule"] == "enum"
    assert "'whatsapp'" in problem["message"] and "'copy_link'" in problem["message"]


# -- amount and currency -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["order", "refund"])
@pytest.mark.parametrize(("amount", "currency", "exact", "minor"), [
    ("49.90", "EUR", Decimal("49.90"), 4990),
    ("49.9", "EUR", Decimal("49.90"), 4990),
    ("49", "EUR", Decimal("49.00"), 4900),
    ("49.900", "EUR", Decimal("49.90"), 4990),  # trailing zeros carry no precision
    ("0.01", "EUR", Decimal("0.01"), 1),
    ("1500", "JPY", Decimal("1500"), 1500),
    ("1.234", "KWD", Decimal("1.234"), 1234),
    ("999999999.99", "EUR", Decimal("999999999.99"), 99999999999),
])
def test_amount_as_decimal_string_is_exact(kind, amount, currency, exact, minor):
    parsed = parse_event(event(kind, amount=amount, currency=currency), now=NOW)
    assert isinstance(parsed.amount, Decimal)
    assert parsed.amount == exact and str(parsed.amount) == str(exact)
    assert parsed.amount_minor == minor


@pytest.mark.parametrize(("number", "exact"), [("19.99", "19.99"), ("0.1", "0.10"), ("49", "49.00"),
                                                ("1e2", "100.00"), ("2.50", "2.50"), ("0.29", "0.29")])
def test_amount_as_json_number_is_exact_never_a_float(number, exact):
    raw = json.dumps(event("order", amount="X")).replace('"X"', number)
    parsed = parse_event_json(raw, now=NOW)
    assert str(parsed.amount) == exact
    assert not isinstance(parsed.amount, float)


def test_amount_given_as_a_python_float_keeps_what_was_typed():
    assert str(parse_event(event("order", amount=19.99), now=NOW).amount) == "19.99"


def test_a_float_artifact_is_not_silently_rounded():
    problem = only(event("order", amount=0.1 + 0.2))
    assert problem["field"] == "amount" and problem["rule"] == "currency_precision"


@pytest.mark.parametrize("kind", ["order", "refund"])
@pytest.mark.parametrize(("amount", "rule"), [
    ("0", "amount_positive"), ("0.00", "amount_positive"), (0, "amount_positive"), (-5, "amount_positive"),
    ("-5", "decimal_format"), ("+5", "decimal_format"), ("1e3", "decimal_format"), (" 5", "decimal_format"),
    ("5.", "decimal_format"), (".5", "decimal_format"), ("1,50", "decimal_format"), ("NaN", "decimal_format"),
    ("", "decimal_format"), ("1000000000", "amount_too_large"), (10**12, "amount_too_large"),
    (True, "amount_type"), (None, "amount_type"), (["5"], "amount_type"), ({"value": 5}, "amount_type"),
])
def test_amount_must_be_a_positive_plain_decimal(kind, amount, rule):
    problem = only(event(kind, amount=amount))
    assert problem["field"] == "amount"
    assert problem["rule"] == rule


def test_amount_rejection_messages():
    assert only(event("order", amount="0"))["message"] == "must be greater than 0"
    assert only(event("order", amount="1e3"))["message"] == \
        'must be a plain decimal such as "19.99" (no sign, exponent or spaces)'
    assert only(event("order", amount=None))["message"] == "must be a decimal string or a JSON number"


@pytest.mark.parametrize(("amount", "currency", "allowed"), [
    ("19.999", "EUR", 2), ("100.5", "JPY", 0), ("1.2345", "KWD", 3), ("0.001", "USD", 2),
])
def test_amount_has_no_more_decimals_than_the_currency_allows(amount, currency, allowed):
    assert only(event("order", amount=amount, currency=currency)) == {
        "field": "amount", "rule": "currency_precision",
        "message": f"amount has more decimals than {currency} allows ({allowed})"}


def test_json_nan_and_infinity_are_not_numbers():
    for constant in ("NaN", "Infinity", "-Infinity"):
        raw = json.dumps(event("order", amount="X")).replace('"X"', constant)
        assert only(raw)["rule"] == "json"


@pytest.mark.parametrize("currency", ["EUR", "USD", "GBP", "CHF", "JPY", "KWD", "PLN", "SEK"])
def test_iso4217_currencies_are_accepted(currency):
    assert parse_event(event("order", amount="100", currency=currency), now=NOW).currency == currency


@pytest.mark.parametrize("currency", ["eur", "EURO", "ABC", "XXX", "XAU", "", "€"])
def test_currency_must_be_an_iso4217_payment_currency(currency):
    assert only(event("order", currency=currency)) == {
        "field": "currency", "rule": "iso4217",
        "message": "must be an ISO 4217 currency code such as EUR (upper case)"}


def test_currency_table_knows_minor_units():
    assert (PAYMENT_CURRENCIES["EUR"], PAYMENT_CURRENCIES["JPY"], PAYMENT_CURRENCIES["KWD"]) == (2, 0, 3)


# -- raw input -----------------------------------------------------------------------------------


def test_raw_json_bytes_are_parsed():
    assert parse_event_json(json.dumps(full("signup")).encode(), now=NOW).customer_id == "cust-2"


@pytest.mark.parametrize(("raw", "rule"), [
    (b"\xff\xfe{}", "utf8"), (b"{", "json"), (b"", "json"), (b"not json", "json"), (b"[]", "object"),
    (b"42", "object"), (b'"share"', "object"), (b"null", "object"), (b"[" * 100_000, "json_depth"),
])
def test_raw_input_that_is_no_json_object_is_rejected(raw, rule):
    problem = only(raw)
    assert problem["rule"] == rule
    assert problem["field"] == "(event)"


def test_a_field_given_twice_is_rejected():
    raw = '{"type":"share","event_id":"a","event_id":"b","occurred_at":"2026-05-01T11:00:00Z",' \
          '"referrer_id":"r","channel":"sms"}'
    assert only(raw) == {"field": "event_id", "rule": "duplicate_field",
                         "message": "appears more than once in the object"}


def test_events_are_immutable():
    parsed = parse_event(event("order"), now=NOW)
    with pytest.raises(ValidationError, match="frozen"):
        parsed.amount = Decimal("1")  # type: ignore[misc]


@pytest.mark.parametrize("kind", KINDS)
def test_canonical_json_parses_back_to_the_same_event(kind):
    parsed = parse_event(full(kind), now=NOW)
    again = parse_event_json(parsed.model_dump_json(exclude_none=True), now=NOW)
    assert again == parsed
    assert VALID[kind]["type"] == again.type
