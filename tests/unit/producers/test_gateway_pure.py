"""The gateway's pure parts: intake, the rate limiter, link building."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from producers.gateway.intake import IntakeRejected, read_events
from producers.gateway.links import valid_visitor_id, with_ref
from producers.gateway.rate_limit import RateLimiter

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SHARE = {"type": "share", "event_id": "e1", "occurred_at": "2026-05-01T11:00:00Z", "referrer_id": "r",
         "channel": "sms"}
ALL = frozenset({"share", "click", "signup", "order", "refund"})


def intake(body, types=ALL, max_batch=500):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return read_events(raw, allowed_types=types, principal="app", now=NOW, max_batch=max_batch)


def rejection(body, **kw) -> IntakeRejected:
    with pytest.raises(IntakeRejected) as info:
        intake(body, **kw)
    return info.value


def test_one_object_or_an_array():
    assert not intake(SHARE).batch and len(intake(SHARE).events) == 1
    assert intake([SHARE, {**SHARE, "event_id": "e2"}]).batch


def test_statuses():
    assert rejection(b"{").status == 400
    assert rejection(b"\xff").status == 400
    assert rejection(b'{"a":1,"a":2}').status == 422
    assert rejection([]).status == 422
    assert rejection([SHARE] * 3, max_batch=2).status == 422
    assert rejection([SHARE, {**SHARE, "channel": "fax"}]).errors[0]["index"] == 1
    assert rejection({**SHARE, "channel": "fax"}).errors[0]["index"] == 0
    forbidden = rejection([SHARE, {**SHARE, "type": "order"}], types=frozenset({"share"}))
    assert forbidden.status == 403 and forbidden.errors[0]["index"] == 1


def test_forbidden_type_wins_over_invalid_fields():
    body = [{"type": "order", "event_id": ""}]
    assert rejection(body, types=frozenset({"share"})).status == 403


def test_rate_limiter_bucket():
    limiter = RateLimiter(rate_per_s=2, burst=3)
    assert [limiter.allow("k", 0)[0] for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("k", 0) == (False, 1)
    assert limiter.allow("k", 0.5)[0]
    assert limiter.allow("other", 0)[0]


def test_with_ref_keeps_the_landing_query():
    assert with_ref("https://shop.example/welcome?utm=x#top", "ABC") == "https://shop.example/welcome?utm=x&ref=ABC#top"
    assert with_ref("https://shop.example", "ABC") == "https://shop.example/?ref=ABC"
    assert with_ref("https://shop.example/?ref=OLD", "NEW") == "https://shop.example/?ref=NEW"


def test_visitor_ids():
    assert valid_visitor_id("a" * 24)
    assert not valid_visitor_id("short") and not valid_visitor_id(None) and not valid_visitor_id("a" * 23 + ";")
