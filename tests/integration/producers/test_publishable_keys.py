"""Publishable keys over real HTTP against the real broker: customer tokens, origins, limits per token, CORS
(docs/security.md). Every refused request leaves Kafka as it was."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from referrals.code_registry import CodeRegistry
from referrals.customer_tokens import issue
from tests.integration.fixtures.gateway import SHOP_KEY
from tests.integration.producers.test_gateway import inbound_counts, now_text, post
from tests.integration.support.kafka_reading import read_topic

WEB_KEY = "pk_test_web_0123456789abcdef"
TOKEN_SECRET = "ts_test_0123456789abcdef0123456789"
ORIGIN = "https://shop.example.com"


def web_key(**changes) -> dict:
    return {"name": "web", "key": WEB_KEY, "publishable": True, "types": ["share", "click", "signup"],
            "token_secret": TOKEN_SECRET, "origins": [ORIGIN], **changes}


@pytest.fixture
def gateway(app_factory):
    """A gateway with a shop's secret key and a publishable key for pages on ``ORIGIN``."""
    def make(**gateway):
        keys = [{"name": "shop", "key": SHOP_KEY, "types": ["signup", "order", "refund"]}, web_key()]
        return app_factory(api_keys=keys, **gateway)
    return make


def token(customer: str, ttl: int = 600, secret: str = TOKEN_SECRET, key: str = "web") -> str:
    return issue(secret, key, customer, int(time.time()) + ttl)


def share(customer: str = "cust-eva", n: int = 1) -> dict:
    return {"type": "share", "event_id": f"share-{customer}-{n}", "occurred_at": now_text(),
            "referrer_id": customer, "channel": "whatsapp"}


def signup(customer: str = "cust-eva", **more) -> dict:
    return {"type": "signup", "event_id": f"signup-{customer}", "occurred_at": now_text(), "customer_id": customer,
            **more}


def click(n: int = 1) -> dict:
    return {"type": "click", "event_id": f"click-{n}", "occurred_at": now_text(), "referral_code": "ANNA7K2Q",
            "visitor_id": f"visitor-{n:016d}"}


def refused(response: httpx.Response, status: int, rule: str) -> None:
    assert response.status_code == status, response.text
    assert rule in [e["rule"] for e in response.json()["errors"]], response.text


def test_without_a_valid_token_or_from_a_foreign_origin_nothing_is_produced_and_with_one_it_is(gateway):
    gw = gateway()
    before = inbound_counts(gw)
    now = int(time.time())
    cases = [
        (post(gw, share(), key=WEB_KEY), 401, "token_required"),
        (post(gw, [click(), signup()], key=WEB_KEY), 401, "token_required"),  # a batch: the click does not pass either
        (post(gw, share(), key=WEB_KEY, headers={"X-Customer-Token": issue(TOKEN_SECRET, "web", "cust-eva", now - 1)}),
         401, "token_expired"),
        (post(gw, share(), key=WEB_KEY, headers={"X-Customer-Token": token("cust-eva", secret="f" * 32)}),
         401, "token_invalid"),
        (post(gw, share(), key=WEB_KEY, headers={"X-Customer-Token": token("cust-eva", key="app")}),
         401, "token_invalid"),
        (post(gw, share(), key=WEB_KEY, headers={"X-Customer-Token": "v1.123.abc"}), 401, "token_malformed"),
        (post(gw, share(), key=WEB_KEY, headers={"X-Customer-Token": token("cust-eva", ttl=2 * 86400)}),
         401, "token_too_long_lived"),
        (post(gw, share(), key=WEB_KEY, headers={"X-Customer-Token": token("cust-mallory")}),
         403, "not_token_customer"),
        (post(gw, signup(), key=WEB_KEY, headers={"X-Customer-Token": token("cust-mallory")}),
         403, "not_token_customer"),
        (post(gw, share(), key=WEB_KEY, headers={"X-Customer-Token": token("cust-eva"),
                                                 "Origin": "https://evil.example"}), 403, "origin_not_allowed"),
        (post(gw, {**click(), "type": "order", "order_id": "o-1", "customer_id": "cust-eva", "amount": "20.00",
                   "currency": "EUR"}, key=WEB_KEY, headers={"X-Customer-Token": token("cust-eva")}),
         403, "forbidden_type"),
        (post(gw, signup(), key=SHOP_KEY, headers={"Origin": ORIGIN}), 403, "secret_key_in_browser"),
    ]
    for response, status, rule in cases:
        refused(response, status, rule)
    assert inbound_counts(gw) == before  # nothing of any refused request reached Kafka

    eva = {"X-Customer-Token": token("cust-eva")}
    assert post(gw, share(), key=WEB_KEY, headers=eva).status_code == 202  # an app: no Origin
    assert post(gw, [signup(referral_code="ANNA7K2Q"), click()], key=WEB_KEY,
                headers={**eva, "Origin": ORIGIN}).json() == {"accepted": 2}
    assert post(gw, click(2), key=WEB_KEY).status_code == 202  # a click needs no token
    assert post(gw, signup("cust-ben", event_id="signup-shop-ben"), key=SHOP_KEY).status_code == 202
    [shared] = read_topic(gw.settings, gw.topic("referrals.shares"), expected=1)
    assert json.loads(shared.value)["referrer_id"] == "cust-eva" and dict(shared.headers)["ce_source"] == b"gateway/web"
    signups = {json.loads(r.value)["customer_id"]: json.loads(r.value)
               for r in read_topic(gw.settings, gw.topic("customers.signups"), expected=2)}
    assert signups["cust-eva"]["claim"] is True  # the app's word: a claim
    assert "claim" not in signups["cust-ben"]  # the shop's signup: as before
    assert len(read_topic(gw.settings, gw.topic("referrals.clicks"), expected=2)) == 2


def test_one_customer_token_has_its_own_limit_and_the_keys_other_customers_do_not_feel_it(gateway):
    gw = gateway(token_rate_limit_per_s=0.05, token_rate_limit_burst=3)
    eva = {"X-Customer-Token": token("cust-eva")}
    answers = [post(gw, share("cust-eva", n), key=WEB_KEY, headers=eva) for n in range(5)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
    assert int(answers[3].headers["Retry-After"]) >= 1
    assert "customer token" in answers[3].json()["errors"][0]["message"]
    ben = {"X-Customer-Token": token("cust-ben")}
    assert [post(gw, share("cust-ben", n), key=WEB_KEY, headers=ben).status_code for n in range(3)] == [202] * 3
    assert post(gw, click(), key=WEB_KEY).status_code == 202  # tokenless clicks: the key's own limit only
    assert len(read_topic(gw.settings, gw.topic("referrals.shares"), expected=6)) == 6


def test_browsers_get_cors_from_the_configured_origins_on_the_browser_routes_only(gateway):
    gw = gateway()
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type, x-customer-token"}
    ok = httpx.options(f"{gw.url}/v1/events", headers={"Origin": ORIGIN, **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "x-customer-token" in ok.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in ok.headers
    foreign = httpx.options(f"{gw.url}/v1/events", headers={"Origin": "https://evil.example", **preflight})
    assert foreign.status_code == 400 and "access-control-allow-origin" not in foreign.headers
    read_api = httpx.options(f"{gw.url}/v1/referrers/cust-eva", headers={"Origin": ORIGIN, **preflight})
    assert "access-control-allow-origin" not in read_api.headers  # no page reads the read API

    answer = post(gw, click(), key=WEB_KEY, headers={"Origin": ORIGIN})
    assert answer.status_code == 202 and answer.headers["access-control-allow-origin"] == ORIGIN


def test_a_page_elsewhere_fetching_a_referral_link_records_no_click_and_a_followed_link_does(gateway):
    gw = gateway()
    code = CodeRegistry.from_settings(gw.settings).issue("cust-anna", "default").code
    fetched = httpx.get(f"{gw.url}/r/{code}", headers={"Origin": "https://evil.example"})
    refused(fetched, 403, "origin_not_allowed")
    allowed = httpx.get(f"{gw.url}/r/{code}", headers={"Origin": ORIGIN})
    assert allowed.status_code == 302 and allowed.headers["access-control-allow-origin"] == ORIGIN
    followed = httpx.get(f"{gw.url}/r/{code}")  # a link followed: no Origin
    assert followed.status_code == 302
    clicks = read_topic(gw.settings, gw.topic("referrals.clicks"), expected=2)
    assert len(clicks) == 2  # the allowed page's and the followed link's (two visitors: no cookie kept)
