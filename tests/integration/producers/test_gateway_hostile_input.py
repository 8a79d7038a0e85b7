"""Hostile input against the real gateway: always a 4xx with a JSON error, never a 5xx, nothing produced."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.topics import INBOUND
from tests.integration.fixtures.gateway import APP_KEY
from tests.integration.support.kafka_reading import end_offsets

pytestmark = pytest.mark.faults

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
FIELDS = ["type", "event_id", "occurred_at", "referrer_id", "channel", "customer_id", "order_id", "amount",
          "currency", "referral_code", "visitor_id", "campaign_id"]
nasty_strings = st.sampled_from([
    "", " ", "\u0000", "x" * 5000, "ｓｈａｒｅ", "shаre", "\u202e", "9" * 400, "-1", "1e309", "NaN", "0.0000001",
    "2026-05-01T11:00:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "../../etc/passwd", "{\"$ne\": 1}",
])
almost_events = st.fixed_dictionaries({}, optional={
    f: st.one_of(nasty_strings, json_values) for f in FIELDS
})


def assert_refused(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    body = response.json()
    assert body["errors"] and all("rule" in e and "message" in e for e in body["errors"])


@pytest.fixture
def gw(app_factory):
    return app_factory(rate_limit_per_s=100000, rate_limit_burst=100000)


def test_random_json_and_almost_events_are_refused_and_nothing_is_produced(gw, soak_factor):
    client = httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {APP_KEY}"}, timeout=30)

    @settings(max_examples=150 * soak_factor, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.one_of(json_values, almost_events, st.lists(almost_events, min_size=1, max_size=20)))
    def check(value):
        response = client.post("/v1/events", content=json.dumps(value).encode())
        if response.status_code == 202:  # a draw that happens to be a valid event is fine, but must be rare
            pytest.fail(f"accepted: {value!r}")
        assert_refused(response)

    @settings(max_examples=100 * soak_factor, deadline=None)
    @given(st.binary(max_size=2000))
    def check_bytes(raw):
        assert_refused(client.post("/v1/events", content=raw))

    try:
        check()
        check_bytes()
        for body in (b"[" * 200_000 + b"]" * 200_000, json.dumps([{}] * 10_000).encode(),
                     b'{"type":"order","amount":1e999999}', b'"\\ud800"', b"\xef\xbb\xbf{}"):
            assert_refused(client.post("/v1/events", content=body))
    finally:
        client.close()
    assert set(end_offsets(gw.settings, [gw.topic(t.name) for t in INBOUND]).values()) == {0}
