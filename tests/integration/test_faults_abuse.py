"""Abuse through the real worker: one code on 300 signups within a minute (1,000 in the pure core's test: tests/unit/streams/test_rules.py), one device on 50 referees of a
referrer over 50 days, and a referrer referring themselves through a second account. Every reward of them is
held for review with its reason code and no points; the worker's rewards are the pure core's."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from producers.code_registry import CodeRegistry
from tests.integration.worker_support import expected, matches, reward_changes, send, wait_for

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
