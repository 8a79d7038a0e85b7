"""Claims on the real stack: an app's signup (a publishable key with the customer's token) earns nothing until the
shop's server confirms the customer; the read API and the story say why; confirmed, it earns as before."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx

from referrals.code_registry import CodeRegistry
from referrals.customer_tokens import issue
from referrals.privacy import pseudonym
from tests.integration.fixtures.gateway import READ_KEY, SHOP_KEY
from tests.integration.producers.test_publishable_keys import TOKEN_SECRET, WEB_KEY, web_key
from tests.integration.support.worker import wait_for

START = datetime.now(UTC) - timedelta(hours=2)


def at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).isoformat()


def test_a_claim_never_confirmed_earns_nothing_and_says_why_and_confirmed_it_earns(pipeline_factory, app_factory,
                                                                                  dispatcher_factory):
    own, worker = pipeline_factory("claims")
    code = CodeRegistry.from_settings(own).issue("anna", "default").code
    worker.start()
    dispatcher_factory(own)  # its story keeper writes the stories
    gw = app_factory(data_of=own, api_keys=[
        web_key(), {"name": "shop", "key": SHOP_KEY, "types": ["signup", "order", "refund"]},
        {"name": "support", "key": READ_KEY, "read": True}])

    def send(key: str, events: list[dict], customer: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        if customer is not None:
            headers["X-Customer-Token"] = issue(TOKEN_SECRET, "web", customer, int(time.time()) + 600)
        answer = httpx.post(f"{gw.url}/v1/events", json=events, headers=headers, timeout=30)
        assert answer.status_code == 202, answer.text

    def order(customer: str, minutes: float) -> dict:
        return {"type": "order", "event_id": f"order-{customer}", "customer_id": customer, "order_id": f"o-{customer}",
                "amount": "30.00", "currency": "EUR", "occurred_at": at(minutes)}

    for customer in ("eva", "ben"):  # each app tells its customer's code (only its own: the token's)
        send(WEB_KEY, [{"type": "signup", "event_id": f"app-signup-{customer}", "customer_id": customer,
                        "referral_code": code, "occurred_at": at(0)}], customer)
    # the shop's server confirms ben (it did not see a code), and both order
    send(SHOP_KEY, [{"type": "signup", "event_id": "shop-signup-ben", "customer_id": "ben", "occurred_at": at(1)},
                    order("ben", 30), order("eva", 30)])

    http = httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {READ_KEY}"}, timeout=30)
    secret = own.privacy.pseudonym_key.get_secret_value()
    eva, ben = pseudonym(secret, "eva"), pseudonym(secret, "ben")

    def referrals() -> dict[str, dict]:
        answer = http.get("/v1/referrers/anna", params={"issue": "false"})
        return {r["referee"]: r for r in answer.json().get("referrals", [])} if answer.status_code == 200 else {}

    got = wait_for(lambda: ((r := referrals()) and len(r) == 2
                            and r[ben]["reward"] is not None and r[eva]["status"] == "rejected", r), timeout_s=120)
    assert (got[eva]["status"], got[eva]["reason"], got[eva]["reward"]) == ("rejected", "claim_unconfirmed", None)
    assert (got[ben]["status"], got[ben]["reason"]) == ("qualified", None)
    assert (got[ben]["reward"]["status"], got[ben]["reward"]["points"]) == ("pending", 500)

    def told(customer: str) -> list[str]:
        answer = http.get(f"/v1/customers/{customer}/story", params={"limit": 200})
        return [s["text"] for s in answer.json()["steps"]] if answer.status_code == 200 else []

    day = START.date().isoformat()
    said = wait_for(lambda: ((t := told("anna")) and any(eva in x for x in t), t), timeout_s=60)
    assert (f"The referral of {eva} on {day} does not count. Only the app said that the friend signed up with this "
            "code; the shop has not confirmed the signup, so it does not count (yet).") in said, said
    ledger = http.get("/v1/campaigns/default/rewards").json()
    assert "claim_unconfirmed" not in str(ledger)  # waiting for the shop is not counted as withheld

    # the shop's server confirms eva after all, within the day: her referral earns as ben's did
    send(SHOP_KEY, [{"type": "signup", "event_id": "shop-signup-eva", "customer_id": "eva", "occurred_at": at(5)}])
    got = wait_for(lambda: ((r := referrals()) and r.get(eva, {}).get("reward") is not None, r), timeout_s=120)
    assert (got[eva]["status"], got[eva]["reason"]) == ("qualified", None)
    assert (got[eva]["reward"]["status"], got[eva]["reward"]["points"]) == ("pending", 500)
    assert wait_for(lambda: ((t := told("eva")) and any("are pending" in x for x in t), t), timeout_s=60)
