"""The gateway over real HTTP against the real broker: every status code, batches, signatures, limits."""

from __future__ import annotations

import json
import re
import socket
import time
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client import REGISTRY

from referrals.http_auth import sign
from schemas.topics import INBOUND
from tests.integration.fixtures.gateway import APP_KEY, READ_KEY, SHOP_KEY, WEBHOOK_SECRET
from tests.integration.support.kafka_reading import end_offsets, read_topic


def now_text() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def share(i: int = 1, **changes) -> dict:
    return {"type": "share", "event_id": f"share-{i}", "occurred_at": now_text(), "referrer_id": f"cust-{i}",
            "channel": "whatsapp", **changes}


def order(i: int = 1, **changes) -> dict:
    return {"type": "order", "event_id": f"order-{i}", "occurred_at": now_text(), "order_id": f"o-{i}",
            "customer_id": f"cust-{i}", "amount": "49.90", "currency": "EUR", **changes}


def post(gw, body, key: str | None = APP_KEY, headers: dict | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json", **(headers or {})}
    if key:
        h["Authorization"] = f"Bearer {key}"
    return httpx.post(f"{gw.url}/v1/events", content=content, headers=h, timeout=30)


def inbound_counts(gw) -> dict[str, int]:
    return end_offsets(gw.settings, [gw.topic(t.name) for t in INBOUND])


def test_one_valid_event_is_202_and_on_its_topic_with_cloudevents_headers(app_factory):
    gw = app_factory()
    response = post(gw, share(1, campaign_id="spring"))
    assert response.status_code == 202
    assert response.json() == {"accepted": 1}
    [record] = read_topic(gw.settings, gw.topic("referrals.shares"), expected=1)
    assert record.key == b"cust-1"
    assert json.loads(record.value)["event_id"] == "share-1"
    headers = dict(record.headers)
    assert headers["ce_id"] == b"share-1"
    assert headers["ce_type"] == b"io.referral-pipeline.share.v1"
    assert headers["ce_source"] == b"gateway/app"
    assert headers["ce_specversion"] == b"1.0"


def test_a_batch_is_202_with_every_event_on_its_topic(app_factory):
    gw = app_factory()
    batch = [order(i) for i in range(120)] + [
        {"type": "signup", "event_id": "s-1", "occurred_at": now_text(), "customer_id": "cust-x"}]
    response = post(gw, batch, key=SHOP_KEY)
    assert response.status_code == 202 and response.json() == {"accepted": 121}
    counts = inbound_counts(gw)
    assert counts[gw.topic("shop.orders")] == 120
    assert counts[gw.topic("customers.signups")] == 1


def test_one_invalid_event_makes_the_batch_422_and_nothing_is_produced(app_factory):
    gw = app_factory()
    batch = [share(1), share(2, channel="fax"), share(3), share(4, occurred_at="2026-01-01T00:00:00")]
    response = post(gw, batch)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert {(e["index"], e["field"], e["rule"]) for e in errors} == {
        (1, "channel", "enum"), (3, "occurred_at", "timezone_required")}
    assert all(e["message"] for e in errors)
    time.sleep(0.5)
    assert set(inbound_counts(gw).values()) == {0}


def test_a_single_invalid_event_is_422_at_index_0(app_factory):
    gw = app_factory()
    response = post(gw, share(1, colour="red"))
    assert response.status_code == 422
    assert response.json()["errors"] == [{"index": 0, "field": "colour", "rule": "unknown_field",
                                          "message": "is not a field of this event"}]


@pytest.mark.parametrize(("body", "rule"), [(b"{not json", "json"), (b"\xff\xfe", "utf8"), (b"", "json")])
def test_not_json_is_400(app_factory, body, rule):
    gw = app_factory(create_topics=False)
    response = post(gw, body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["rule"] == rule


@pytest.mark.parametrize(("body", "rule"), [([], "empty_batch"), ("share", "object"), ([share(i) for i in range(501)],
                                                                                        "batch_too_large")])
def test_bad_batch_shapes_are_422(app_factory, body, rule):
    gw = app_factory(create_topics=False)
    response = post(gw, body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["rule"] == rule


def test_a_body_over_1_mib_is_413_whether_declared_or_streamed(app_factory):
    gw = app_factory(create_topics=False)
    big = b"[" + b" " * (1024 * 1024) + b"]"
    assert post(gw, big).status_code == 413

    def chunks():
        for _ in range(20):
            yield b" " * 65536

    response = httpx.post(f"{gw.url}/v1/events", content=chunks(),
                          headers={"Authorization": f"Bearer {APP_KEY}"}, timeout=30)
    assert response.status_code == 413


def test_a_client_gone_before_its_body_ends_is_counted_499_not_an_error_and_nothing_is_produced(app_factory):
    gw = app_factory()
    status = {"route": "/v1/events", "method": "POST"}

    def count(code: str) -> float:
        return REGISTRY.get_sample_value("referral_gateway_requests_total", {**status, "status": code}) or 0.0

    before = {code: count(code) for code in ("499", "500")}
    host, port = gw.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {APP_KEY}\r\n"
                    "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode() + b'{"type": "sh')
    deadline = time.monotonic() + 10
    while count("499") == before["499"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count("499") == before["499"] + 1 and count("500") == before["500"]
    assert sum(end_offsets(gw.settings, gw.topics).values()) == 0


def test_missing_or_unknown_key_is_401(app_factory):
    gw = app_factory(create_topics=False)
    missing = post(gw, share(), key=None)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.json()["errors"][0]["rule"] == "missing_credentials"
    unknown = post(gw, share(), key="not-a-key-0123456789")
    assert unknown.status_code == 401 and unknown.json()["errors"][0]["rule"] == "unknown_key"
    assert "not-a-key" not in unknown.text  # a key is never echoed


def test_a_type_the_key_may_not_send_is_403(app_factory):
    gw = app_factory()
    response = post(gw, [share(1), order(1)], key=APP_KEY)
    assert response.status_code == 403
    assert response.json()["errors"] == [{"index": 1, "field": "type", "rule": "forbidden_type",
                                          "message": "key 'app' may not send order events"}]
    assert set(inbound_counts(gw).values()) == {0}


def signed_post(gw, body: bytes, header: str) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/events", content=body, timeout=30,
                      headers={"Content-Type": "application/json", "X-Signature": header})


def test_signed_webhooks_accepted_tampered_stale_wrong_secret_and_replay_refused(app_factory):
    gw = app_factory()
    body = json.dumps(order(7)).encode()
    t = int(time.time())
    good = sign(WEBHOOK_SECRET, t, body)
    assert signed_post(gw, body, good).status_code == 202

    replay = signed_post(gw, body, good)
    assert replay.status_code == 401 and replay.json()["errors"][0]["rule"] == "signature_replayed"

    tampered = body.replace(b"49.90", b"4990.00")
    r = signed_post(gw, tampered, sign(WEBHOOK_SECRET, t + 1, body))
    assert r.status_code == 401 and r.json()["errors"][0]["rule"] == "signature_invalid"

    r = signed_post(gw, body, sign("a-wrong-secret-0123456789", t, body))
    assert r.status_code == 401 and r.json()["errors"][0]["rule"] == "signature_invalid"

    r = signed_post(gw, body, sign(WEBHOOK_SECRET, t - 301, body))
    assert r.status_code == 401 and r.json()["errors"][0]["rule"] == "signature_stale"

    r = signed_post(gw, body, "v1=abc")
    assert r.status_code == 401 and r.json()["errors"][0]["rule"] == "signature_malformed"

    shares = json.dumps(share(1)).encode()  # the webhook secret is scoped to orders and refunds
    assert signed_post(gw, shares, sign(WEBHOOK_SECRET, t, shares)).status_code == 403

    [record] = read_topic(gw.settings, gw.topic("shop.orders"), expected=1)
    assert dict(record.headers)["ce_source"] == b"gateway/shop-webhook"


def test_rate_limit_is_429_with_retry_after(app_factory):
    gw = app_factory(create_topics=False, rate_limit_per_s=0.5, rate_limit_burst=2)
    statuses = [post(gw, b"{").status_code for _ in range(3)]
    assert statuses == [400, 400, 429]
    limited = post(gw, b"{")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    # another key has its own bucket
    assert post(gw, b"{", key=SHOP_KEY).status_code == 400


def test_kafka_unreachable_is_503_with_retry_after_not_a_hang(app_factory):
    from deploy.local.processes import free_port

    gw = app_factory(create_topics=False, kafka_bootstrap=f"127.0.0.1:{free_port()}", kafka_timeout_s=2.0)
    started = time.monotonic()
    response = post(gw, share())
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json()["errors"][0]["rule"] == "kafka_unavailable"
    assert time.monotonic() - started < 25  # bounded, never a hang (the client's own timeout is 30 s)
    assert httpx.get(f"{gw.url}/readyz", timeout=30).status_code == 503
    assert httpx.get(f"{gw.url}/healthz", timeout=30).status_code == 200


def test_health_readiness_and_openapi(app_factory):
    gw = app_factory(create_topics=False)
    assert httpx.get(f"{gw.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{gw.url}/readyz", timeout=10).json() == {"status": "ready"}
    spec = httpx.get(f"{gw.url}/openapi.json").json()
    assert {"/v1/events", "/r/{code}", "/healthz", "/readyz"} <= set(spec["paths"])
    post_op = spec["paths"]["/v1/events"]["post"]
    assert {"202", "400", "401", "403", "413", "422", "429", "503"} <= set(post_op["responses"])
    assert {"ShareEvent", "OrderEvent"} <= set(spec["components"]["schemas"])


PUBLIC = {"/r/{code:path}", "/healthz", "/readyz"}
DESCRIPTION = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def every_route(gw) -> list[tuple[str, str, str]]:
    """(path template, method, a URL for it) for every route the running gateway serves, included routers'
    too (FastAPI keeps those as the router they were, under ``original_router``)."""
    out = []

    def walk(routes, prefix: str) -> None:
        for route in routes:
            if hasattr(route, "original_router"):
                walk(route.original_router.routes, prefix + route.include_context.prefix)
                continue
            assert hasattr(route, "path"), f"a route the walk cannot read: {route!r}"
            path = prefix + route.path
            for method in sorted(getattr(route, "methods", None) or ()):
                if method != "HEAD":
                    out.append((path, method, gw.url + re.sub(r"\{[^}]+\}", "x", path)))

    walk(gw.server.config.app.routes, "")
    return out


@pytest.mark.parametrize("public_docs", [True, False])
def test_every_route_but_links_health_and_readiness_needs_a_key_and_each_key_only_its_scope(app_factory,
                                                                                           public_docs):
    gw = app_factory(public_docs=public_docs)
    routes = every_route(gw)
    paths = {path for path, _, _ in routes}
    assert {"/v1/events", "/v1/referrers/{customer_id}", "/v1/campaigns/{campaign_id}/funnel"} <= paths
    assert (DESCRIPTION <= paths) if public_docs else not DESCRIPTION & paths
    open_paths = PUBLIC | (DESCRIPTION if public_docs else set())
    with httpx.Client(timeout=30, follow_redirects=False) as client:
        for path, method, url in routes:
            anonymous = client.request(method, url, content=b"{}", headers={"Content-Type": "application/json"})
            if path in open_paths:
                assert anonymous.status_code in (200, 302), (method, path, anonymous.status_code)
                continue
            assert anonymous.status_code == 401, (method, path, anonymous.status_code, anonymous.text)
            assert anonymous.json()["errors"][0]["rule"] == "missing_credentials"
            # a key for what the route does not do: the read API's key cannot send, the senders cannot read
            wrong = READ_KEY if path == "/v1/events" else APP_KEY
            scoped = client.request(method, url, content=json.dumps(share()).encode(),
                                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {wrong}"})
            assert scoped.status_code == 403, (method, path, scoped.status_code, scoped.text)
            assert wrong not in scoped.text
    for path in DESCRIPTION - open_paths:
        assert httpx.get(f"{gw.url}{path}", timeout=30).status_code == 404
