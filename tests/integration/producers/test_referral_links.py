"""Referral codes in the real Redis, and `/r/{code}` over real HTTP with clicks on the real broker."""

from __future__ import annotations

import json
import threading

import httpx

from referrals.code_registry import CodeRegistry
from schemas.referral_codes import is_well_formed, new_code
from tests.integration.support.kafka_reading import end_offsets, read_topic


def registry_for(gw) -> CodeRegistry:
    return CodeRegistry.from_settings(gw.settings)


def test_issuing_is_stable_per_customer_and_campaign_and_resolvable(app_factory):
    gw = app_factory(create_topics=False)
    registry = registry_for(gw)
    first = registry.issue("cust-anna", "spring")
    assert first.new and is_well_formed(first.code)
    assert registry.issue("cust-anna", "spring") == first.__class__(first.code, "cust-anna", "spring", False)
    other = registry.issue("cust-anna", "summer")
    assert other.code != first.code
    assert registry.issue("cust-ben", "spring").code != first.code
    owner = registry.resolve(first.code.lower())
    assert (owner.referrer_id, owner.campaign_id) == ("cust-anna", "spring")
    assert registry.resolve(new_code()) is None  # well-formed, never issued
    assert registry.resolve("NOT-A-CODE") is None
    unknown = new_code()
    many = registry.resolve_many([first.code.lower(), other.code, unknown, "NOT-A-CODE"])
    assert many == {first.code.lower(): owner, other.code: owner.__class__("cust-anna", "summer"), unknown: None,
                    "NOT-A-CODE": None}
    assert registry.resolve_many([]) == {}
    assert registry.forget("cust-anna") == 2
    assert registry.resolve(first.code) is None


def test_concurrent_issuing_gives_one_code(app_factory):
    gw = app_factory(create_topics=False)
    results: list[str] = []

    def issue():
        results.append(registry_for(gw).issue("cust-race", "spring").code)

    threads = [threading.Thread(target=issue) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1


def test_link_redirects_to_the_campaign_landing_with_ref_sets_cookie_and_records_one_click(app_factory):
    gw = app_factory(landing_urls={"spring": "http://127.0.0.1:9/spring?utm_source=ref"})
    code = registry_for(gw).issue("cust-anna", "spring").code
    with httpx.Client(base_url=gw.url) as client:
        response = client.get(f"/r/{code}", params={"c": "whatsapp"})
        assert response.status_code == 302
        assert response.headers["location"] == f"http://127.0.0.1:9/spring?utm_source=ref&ref={code}"
        cookie = response.headers["set-cookie"]
        assert "rp_vid=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert "Max-Age=2592000" in cookie
        visitor = client.cookies["rp_vid"]
        # a reload within the window: same visitor, same code -> no second click, no new cookie
        again = client.get(f"/r/{code}")
        assert again.status_code == 302 and "set-cookie" not in again.headers
    [record] = read_topic(gw.settings, gw.topic("referrals.clicks"), expected=1)
    click = json.loads(record.value)
    assert click["referral_code"] == code and click["visitor_id"] == visitor
    assert click["channel"] == "whatsapp" and click["campaign_id"] == "spring"
    assert record.key == visitor.encode()


def test_another_visitor_is_another_click(app_factory):
    gw = app_factory()
    code = registry_for(gw).issue("cust-anna", "default").code
    for _ in range(2):
        with httpx.Client(base_url=gw.url) as fresh_browser:
            assert fresh_browser.get(f"/r/{code}").status_code == 302
    assert len(read_topic(gw.settings, gw.topic("referrals.clicks"), expected=2)) == 2


def test_unknown_or_malformed_codes_go_to_the_default_landing_without_a_click(app_factory):
    gw = app_factory()
    for code in (new_code(), "HELLO", "a" * 300, "%00%0a", "", "ABC/DEF", "..%2Fadmin"):
        response = httpx.get(f"{gw.url}/r/{code}")
        assert response.status_code == 302, code
        assert response.headers["location"] == "http://127.0.0.1:9/default"
    assert end_offsets(gw.settings, [gw.topic("referrals.clicks")]) == {gw.topic("referrals.clicks"): 0}


def test_an_unknown_channel_parameter_is_ignored(app_factory):
    gw = app_factory()
    code = registry_for(gw).issue("cust-anna").code
    assert httpx.get(f"{gw.url}/r/{code}", params={"c": "carrier-pigeon"}).status_code == 302
    [record] = read_topic(gw.settings, gw.topic("referrals.clicks"), expected=1)
    assert "channel" not in json.loads(record.value)
