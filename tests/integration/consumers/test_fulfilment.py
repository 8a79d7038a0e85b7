"""The shop's confirmation back (POST /v1/rewards/{id}/fulfilment) on the real stack: the gateway in-process,
the reward book kept by a real `referrals dispatcher`, and, end to end, the real worker and the read API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from consumers import kafka_log
from consumers.webhooks.reward_book import read_entries
from referrals.privacy import pseudonym
from referrals.settings import changed
from schemas.derived import ReasonCode, RewardChange, RewardRole, RewardStatus
from schemas.topics import FULFILMENTS
from tests.integration.fixtures.gateway import APP_KEY, FULFIL_KEY, READ_KEY
from tests.integration.support.webhooks import produce
from tests.integration.support.worker import client, reference, run_through, simulated, wait_for

pytestmark = pytest.mark.integration
FULFIL = {"Authorization": f"Bearer {FULFIL_KEY}"}
AT = datetime(2026, 3, 1, tzinfo=UTC)


def change(reward_id: str, status: RewardStatus, n: int) -> RewardChange:
    reason = {RewardStatus.REVOKED: ReasonCode.REFUNDED_IN_HOLD, RewardStatus.CAPPED: ReasonCode.MONTHLY_CAP}
    return RewardChange(event_id=f"{reward_id}:{status.value}:{n}", occurred_at=AT + timedelta(days=n),
                        reward_id=reward_id, referral_id=reward_id.rsplit(":", 1)[0], role=RewardRole.REFERRER,
                        customer_id="anna", points=0 if status is RewardStatus.CAPPED else 500, status=status,
                        reason=reason.get(status), campaign_id="spring")


def book(gw, reward_id: str) -> dict[str, str]:
    own = gw.settings
    with client(own) as c:
        return read_entries(c, own.redis.key_prefix, own.privacy.pseudonym_key.get_secret_value(), [reward_id])[0]


def fulfilments(own) -> list[dict]:
    topic = own.kafka.topic_prefix + FULFILMENTS.name
    return [json.loads(r.value) for r in kafka_log.read(own, kafka_log.end_offsets(own, [topic]))]


def test_a_shop_confirms_a_reward_once_however_often_it_calls_and_is_told_why_it_cannot_otherwise(
        app_factory, dispatcher_factory, unique_name):
    gw = app_factory()
    own = changed(gw.settings, streams={"app_id": unique_name("book").replace(".", "-")})
    dispatcher = dispatcher_factory(own)  # no endpoints: the reward book's keeper
    ok, revoked, capped = "spring:anna:ben:referrer", "spring:anna:cleo:referrer", "spring:anna:dora:referrer"
    produce(own, [change(ok, RewardStatus.PENDING, 1), change(ok, RewardStatus.CONFIRMED, 2),
                  change(revoked, RewardStatus.PENDING, 1), change(revoked, RewardStatus.REVOKED, 2),
                  change(capped, RewardStatus.CAPPED, 1)], {ok: "anna", revoked: "anna", capped: "anna"})
    wait_for(lambda: ([book(gw, r).get("status") for r in (ok, revoked, capped)] == ["confirmed", "revoked", "capped"],
                      [book(gw, r) for r in (ok, revoked, capped)]), 60, interval_s=0.2)
    http = httpx.Client(base_url=gw.url, timeout=30)
    body = {"status": "fulfilled", "reference": "CPN-20931", "note": "coupon sent with the order confirmation"}

    first = http.post(f"/v1/rewards/{ok}/fulfilment", json=body, headers=FULFIL)
    assert first.status_code == 202, first.text
    again = http.post(f"/v1/rewards/{ok}/fulfilment", json=body, headers=FULFIL)
    assert again.status_code == 202 and again.json() == first.json()
    assert first.json()["event_id"].startswith("fulfilment:") and first.json()["reward_id"] == ok

    def refused(path: str, status: int, rule: str, payload=None, headers=None) -> None:
        answer = http.post(path, json=body if payload is None else payload, headers=FULFIL if headers is None
                           else headers)
        assert answer.status_code == status and answer.json()["errors"][0]["rule"] == rule, answer.text

    refused(f"/v1/rewards/{revoked}/fulfilment", 409, "reward_revoked")
    refused(f"/v1/rewards/{capped}/fulfilment", 409, "reward_capped")
    refused("/v1/rewards/spring:anna:nobody:referrer/fulfilment", 404, "unknown_reward")
    refused(f"/v1/rewards/{ok}/fulfilment", 422, "type", {"status": "sent"})
    refused(f"/v1/rewards/{ok}/fulfilment", 422, "unknown_field", {**body, "customer_email": "x@example.com"})
    refused(f"/v1/rewards/{ok}/fulfilment", 413, "too_large", {**body, "note": "x" * 5000})
    refused(f"/v1/rewards/{ok}/fulfilment", 403, "not_allowed", headers={"Authorization": f"Bearer {APP_KEY}"})
    refused(f"/v1/rewards/{ok}/fulfilment", 401, "missing_credentials", headers={})

    # produced like every event, once per call (the same event id twice); nothing for the refused calls
    produced = fulfilments(own)
    assert [f["event_id"] for f in produced] == [first.json()["event_id"]] * 2
    assert {(f["reward_id"], f["status"], f["reference"], f["key"]) for f in produced} == {
        (ok, "fulfilled", "CPN-20931", "shop-fulfil")}
    wait_for(lambda: (book(gw, ok).get("f_status") == "fulfilled", book(gw, ok)), 30, interval_s=0.2)
    assert book(gw, ok).get("take_back") is None

    # revoked after it was fulfilled: the book marks it to take back
    produce(own, [change(ok, RewardStatus.REVOKED, 3)], {ok: "anna"})
    wait_for(lambda: (book(gw, ok).get("take_back") == "1", book(gw, ok)), 30, interval_s=0.2)
    assert dispatcher.stop() == 0


def test_the_read_api_shows_what_the_shop_said_about_a_reward_the_worker_decided(pipeline_factory, app_factory,
                                                                                dispatcher_factory):
    own, worker = pipeline_factory("fulfil")
    gw = app_factory(data_of=own)
    dispatcher = dispatcher_factory(own)
    events = simulated(own, 71, 800)
    run_through(own, worker, events)
    ref, _, _ = reference(own, events, datetime.now(UTC))
    rewarded = sorted((w for w in ref.rewards().values() if w.status in (RewardStatus.CONFIRMED, RewardStatus.PENDING)
                       and w.reward_id.endswith(":referrer")), key=lambda w: w.reward_id)
    assert rewarded, "the simulated run rewards some referrers"
    w = rewarded[0]
    http = httpx.Client(base_url=gw.url, timeout=30)
    read = {"Authorization": f"Bearer {READ_KEY}"}

    referral = ref.referrers[w.customer_id].referrals[w.referral_id]
    referee = pseudonym(own.privacy.pseudonym_key.get_secret_value(), referral.referee_id)

    def shown() -> dict | None:
        response = http.get(f"/v1/referrers/{w.customer_id}", headers=read)
        assert referral.referee_id not in response.text  # the reward's id names the referee: not shown
        (reward,) = [r["reward"] for r in response.json()["referrals"]
                     if r["referee"] == referee and r["campaign_id"] == referral.campaign_id]
        return reward

    assert shown()["fulfilment"] is None
    wait_for(lambda: (book(gw, w.reward_id).get("status") == w.status.value, book(gw, w.reward_id)), 60,
             interval_s=0.2)
    answer = http.post(f"/v1/rewards/{w.reward_id}/fulfilment", json={"status": "fulfilled", "reference": "CPN-7"},
                       headers=FULFIL)
    assert answer.status_code == 202, answer.text
    wait_for(lambda: ((shown()["fulfilment"] or {}).get("reference") == "CPN-7", shown()), 30, interval_s=0.2)
    fulfilment = shown()["fulfilment"]
    assert (fulfilment["status"], fulfilment["take_back"], fulfilment["note"]) == ("fulfilled", False, None)
    assert dispatcher.stop() == 0
