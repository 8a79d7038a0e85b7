"""Abuse through the real worker: one code on 300 signups within a minute (1,000 in the pure core's test: tests/unit/streams/test_rules.py), one device on 50 referees of a
referrer over 50 days, and a referrer referring themselves through a second account. Every reward of them is
held for review with its reason code and no points; the worker's rewards are the pure core's."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from referrals.code_registry import CodeRegistry
from tests.integration.support.worker import expected, matches, reward_changes, send, wait_for

pytestmark = pytest.mark.faults

BURST = 300


def signup(customer: str, at: datetime, code: str | None = None, email: str | None = None,
           device: str | None = None) -> dict:
    event = {"type": "signup", "event_id": f"signup-{customer}", "customer_id": customer, "occurred_at": at.isoformat()}
    for key, value in (("referral_code", code), ("email_hash", email), ("device_id", device)):
        if value:
            event[key] = value
    return event


def order(customer: str, at: datetime) -> dict:
    return {"type": "order", "event_id": f"order-{customer}", "customer_id": customer, "order_id": f"o-{customer}",
            "amount": "49.90", "currency": "EUR", "occurred_at": at.isoformat()}


def test_a_burst_a_device_farm_and_a_second_account_get_no_points_and_say_why(pipeline_factory):
    own, worker = pipeline_factory()
    registry = CodeRegistry.from_settings(own)
    burst, farm, cheat = (registry.issue(name).code for name in ("burst-referrer", "farm-referrer", "cheat"))
    now = datetime.now(UTC)
    events = [signup("burst-referrer", now - timedelta(days=90)), signup("farm-referrer", now - timedelta(days=90)),
              signup("cheat", now - timedelta(days=90), email="h-cheat", device="d-cheat")]
    start = now - timedelta(minutes=30)
    for i in range(BURST):  # one code, many signups within a minute
        at = start + timedelta(seconds=i * 60 / BURST)
        events += [signup(f"burst-{i}", at, burst), order(f"burst-{i}", at + timedelta(minutes=5))]
    for i in range(50):  # one device, 50 referees, one a day
        at = now - timedelta(days=60 - i)
        events += [signup(f"farm-{i}", at, farm, device="d-farm"), order(f"farm-{i}", at + timedelta(hours=1))]
    events += [signup("cheat-2", now - timedelta(days=3), cheat, email="h-cheat"),  # a second account
               order("cheat-2", now - timedelta(days=3) + timedelta(hours=1))]
    events.sort(key=lambda e: e["occurred_at"])
    worker.start()
    send(own, events)
    wait_for(matches(own, expected(own, events), worker), timeout_s=240)

    last: dict[str, dict] = {}
    for change in reward_changes(own, timeout_s=5):
        last[change["reward_id"]] = change
    seen = Counter()
    for change in last.values():
        referee = change["reward_id"].split(":")[2] if ":milestone:" not in change["reward_id"] else None
        kind = referee.split("-")[0] if referee else "milestone"
        assert kind != "milestone", change  # nobody got to a milestone
        assert (change["status"], change["points"]) == ("held_for_review", 0), change
        seen[(kind, change["reason"])] += 1
    assert seen == {("burst", "velocity_limit"): 2 * BURST, ("farm", "device_reused"): 100,
                    ("cheat", "shared_email"): 2}


def test_a_bot_replaying_one_visitor_cookie_is_capped_and_stops_no_one(pipeline_factory):
    """3,000 clicks under one visitor id (a bot keeping its cookie, or an app sending one id): before the cap the
    visitor's record, one changelog value, grew about 180 bytes a click, past Kafka's limit at about 5,800. The
    record keeps 300 (``visitor_fact_cap``); the clicks after are not counted, the worker goes on."""
    from consumers.erasure_command import _caught_up
    from streams.stages import VISITOR_FACTS_KEPT
    from tests.integration.support.kafka_reading import read_topic
    from tests.integration.support.worker import redis_funnel

    own, worker = pipeline_factory("bot")
    code = CodeRegistry.from_settings(own).issue("bot-target").code
    start = datetime.now(UTC) - timedelta(hours=2)
    clicks = [{"type": "click", "event_id": f"bot-click-{i}", "occurred_at": (start + timedelta(seconds=i)).isoformat(),
               "referral_code": code, "visitor_id": "bot-cookie-0123456789", "channel": "whatsapp"}
              for i in range(3_000)]
    human = {"type": "click", "event_id": "human-click", "occurred_at": start.isoformat(), "referral_code": code,
             "visitor_id": "a-person", "channel": "whatsapp"}
    worker.start()
    send(own, [*clicks, human])
    # every input committed to its end, twice (the clicks, then the referrer's counts of them): all were read
    assert all(_caught_up(own, 240) for _ in range(2))
    worker.assert_alive()
    assert redis_funnel(own)["click:whatsapp"] == VISITOR_FACTS_KEPT + 1
    changelog = read_topic(own, f"{own.streams.app_id}-visitors-changelog", expected=0, timeout_s=60)
    largest = max(len(r.value or b"") for r in changelog)
    assert largest < 100 * 1024, f"a visitor record of {largest:,} bytes"


def test_a_customer_with_thousands_of_orders_is_one_small_record_and_stops_no_one(pipeline_factory):
    """A business customer ordering many times a day: 7,500 orders of one referred customer. Before the limit the
    customer's record, one changelog value, grew about 120 bytes an order (890 KB here), past Kafka's limit at about
    8,800: every restart would have stopped on it. The record keeps the first 50 orders (``customer_orders_kept``): the referral qualified
    with the first, the later orders are not taken, the worker goes on and another customer is still served."""
    from consumers.erasure_command import _caught_up
    from tests.integration.support.kafka_reading import read_topic
    from tests.integration.support.worker import redis_referrals

    own, worker = pipeline_factory("b2b")
    code = CodeRegistry.from_settings(own).issue("b2b-referrer").code
    start = datetime.now(UTC) - timedelta(days=30)
    orders = [{"type": "order", "event_id": f"b2b-order-{i}", "customer_id": "b2b-buyer", "order_id": f"b2b-{i}",
               "amount": "49.90", "currency": "EUR", "occurred_at": (start + timedelta(minutes=5 * i)).isoformat()}
              for i in range(7_500)]
    worker.start()
    send(own, [signup("b2b-buyer", start - timedelta(minutes=1), code=code), *orders,
               signup("someone-else", start, code=code), order("someone-else", start + timedelta(hours=1))])
    assert all(_caught_up(own, 240) for _ in range(2))
    worker.assert_alive()
    statuses = wait_for(lambda: (len(got := redis_referrals(own)) == 2, got), timeout_s=60)
    assert sorted(statuses.values()) == ["qualified", "qualified"]
    changelog = read_topic(own, f"{own.streams.app_id}-customers-changelog", expected=0, timeout_s=60)
    largest = max(len(r.value or b"") for r in changelog)
    assert largest < 100 * 1024, f"a customer record of {largest:,} bytes"
