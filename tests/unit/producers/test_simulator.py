"""The traffic simulator: reproducible, valid, and near the configured funnel."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from producers.simulator import DEFAULT_CHANNEL_MIX, Simulation, SimulationConfig
from schemas import parse_event
from schemas.referral_codes import is_well_formed

START = datetime(2026, 5, 1, tzinfo=UTC)


def take(sim: Simulation, n: int) -> list[tuple[float, dict]]:
    return list(itertools.islice(sim.events(), n))


def test_same_seed_same_events_other_seed_other_events():
    a = take(Simulation(SimulationConfig(), 7, START, 50), 5000)
    b = take(Simulation(SimulationConfig(), 7, START, 50), 5000)
    c = take(Simulation(SimulationConfig(), 8, START, 50), 5000)
    assert a == b
    assert a != c


def test_events_are_valid_and_in_time_order():
    events = take(Simulation(SimulationConfig(), 3, START, 50), 20000)
    times = [t for t, _ in events]
    assert times == sorted(times)
    end = START + timedelta(seconds=times[-1])
    for _, event in events:
        parse_event(event, now=end)


def test_referrers_have_well_formed_distinct_codes():
    sim = Simulation(SimulationConfig(customers=2000), 3, START, 50)
    codes = [c.code for c in sim.customers]
    assert all(is_well_formed(c) for c in codes) and len(set(codes)) == 2000


@pytest.fixture(scope="module")
def clean_funnel():
    """A large sample without fraud or duplicates, delays negligible against the span."""
    config = SimulationConfig(self_referral_rate=0, burst_rate=0, duplicate_rate=0, time_compression=1e6,
                              customers=500)
    events = [e for _, e in take(Simulation(config, 11, START, 100), 150_000)]
    return config, events


def test_funnel_rates_come_out_near_the_configured_ones(clean_funnel):
    config, events = clean_funnel
    kinds = Counter(e["type"] for e in events)
    referred = [e for e in events if e["type"] == "signup" and not e["event_id"].endswith("-signup")]
    new_customers = {e["customer_id"] for e in referred}
    first_orders = {e["customer_id"] for e in events if e["type"] == "order" and e["customer_id"] in new_customers}
    assert kinds["click"] / kinds["share"] == pytest.approx(config.click_rate * (1 + config.extra_click_rate), abs=0.02)
    assert len(referred) / kinds["click"] == pytest.approx(config.signup_rate, abs=0.01)
    assert len(first_orders) / len(referred) == pytest.approx(config.order_rate, abs=0.015)
    assert kinds["refund"] / kinds["order"] == pytest.approx(config.refund_rate, abs=0.01)


def test_channel_mix_is_mobile_heavy_with_whatsapp_at_44_percent(clean_funnel):
    _, events = clean_funnel
    shares = Counter(e["channel"] for e in events if e["type"] == "share")
    total = sum(shares.values())
    assert shares.most_common(1)[0][0] == "whatsapp"
    for channel, expected in DEFAULT_CHANNEL_MIX.items():
        assert shares[channel] / total == pytest.approx(expected, abs=0.01)


def test_order_amounts_are_exact_and_near_the_mean(clean_funnel):
    config, events = clean_funnel
    amounts = [e["amount"] for e in events if e["type"] == "order"]
    assert all(len(a.split(".")[1]) == 2 for a in amounts)
    mean = sum(float(a) for a in amounts) / len(amounts)
    assert mean == pytest.approx(float(config.mean_order_amount), rel=0.05)


def test_fraud_is_mixed_in():
    sim = Simulation(SimulationConfig(self_referral_rate=0.05, burst_rate=0.01, duplicate_rate=0.02), 5, START, 50)
    events = [e for _, e in take(sim, 60_000)]
    by_email = {c.email_hash: c for c in sim.customers}
    self_referrals = [e for e in events if e["type"] == "signup" and not e["event_id"].endswith("-signup")
                      and e.get("email_hash") in by_email]
    assert self_referrals
    assert all(e["referral_code"] == by_email[e["email_hash"]].code for e in self_referrals)
    per_code = Counter(e.get("referral_code") for e in events if e["type"] == "signup" and "visitor_id" not in e)
    per_code.pop(None, None)
    assert per_code.most_common(1)[0][1] >= 8  # a burst of signups on one code
    ids = Counter(e["event_id"] for e in events)
    duplicates = [i for i, n in ids.items() if n > 1]
    assert duplicates
    first = {}
    for e in events:
        if e["event_id"] in first:
            assert e == first[e["event_id"]]  # a duplicate is the same event sent again
        first.setdefault(e["event_id"], e)
