"""What a publishable key's events may be (producers.gateway.browsers): pure parts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from starlette.responses import JSONResponse

from producers.gateway.browsers import BrowserRules, token_bucket, vouched_events
from producers.gateway.intake import IntakeRejected
from referrals.http_auth import Principal
from schemas import parse_event

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def event(kind: str, **fields):
    base = {"type": kind, "event_id": f"{kind}-{len(fields)}-{sorted(fields.items())}"[:60],
            "occurred_at": "2026-12-02T11:59:00Z"}
    return parse_event({**base, **fields}, now=NOW)


SHARE = event("share", referrer_id="eva", channel="whatsapp")
SIGNUP = event("signup", customer_id="eva", referral_code="ANNA7K2Q")
CLICK = event("click", referral_code="ANNA7K2Q", visitor_id="visitor-0123456789abcdef")


def test_the_tokens_customer_may_share_and_claim_signups_and_clicks_need_no_token():
    out = vouched_events([SHARE, SIGNUP, CLICK], "eva", batch=True)
    assert [e.type for e in out] == ["share", "signup", "click"]
    assert out[1].claim is True and out[1].model_dump(exclude={"claim"}) == SIGNUP.model_dump(exclude={"claim"})
    assert out[0] is SHARE and out[2] is CLICK
    assert vouched_events([CLICK], None, batch=False) == [CLICK]


def test_an_app_cannot_unclaim_its_signup():
    sent = event("signup", customer_id="eva", claim=False)
    assert vouched_events([sent], "eva", batch=False)[0].claim is True


def test_without_a_token_or_for_another_customer_nothing_of_the_request_passes():
    with pytest.raises(IntakeRejected) as missing:
        vouched_events([CLICK, SHARE], None, batch=True)
    assert missing.value.status == 401
    assert [(e["index"], e["rule"]) for e in missing.value.errors] == [(1, "token_required")]
    with pytest.raises(IntakeRejected) as foreign:
        vouched_events([SIGNUP, event("share", referrer_id="mallory", channel="sms")], "eva", batch=True)
    assert foreign.value.status == 403
    assert [(e["index"], e["field"], e["rule"]) for e in foreign.value.errors] == [
        (1, "referrer_id", "not_token_customer")]


def test_which_origin_may_use_which_key():
    rules = BrowserRules(frozenset({"https://shop.example.com"}), lambda status, errors: JSONResponse(
        {"errors": errors}, status_code=status))
    web = Principal("web", frozenset({"share"}), publishable=True, origins=frozenset({"https://shop.example.com"}))
    shop = Principal("shop", frozenset({"order"}))
    assert rules.refuse(web, None) is None  # an app sends no Origin
    assert rules.refuse(web, "https://shop.example.com") is None
    assert rules.refuse(web, "https://evil.example").status_code == 403
    assert rules.refuse(shop, None) is None
    refused = rules.refuse(shop, "https://shop.example.com")
    assert refused.status_code == 403 and b"secret_key_in_browser" in refused.body


def test_a_token_bucket_names_no_customer():
    bucket = token_bucket("web", "eva@example.com")
    assert bucket.startswith("web:token:") and "eva" not in bucket
    assert bucket != token_bucket("web", "eva@example.co") and bucket != token_bucket("app", "eva@example.com")
