"""API keys and signed webhooks: what both HTTP sides (events in, the read API) check a caller with."""

from __future__ import annotations

import pytest

from referrals.http_auth import KeyRing, ReplayGuard, SignatureProblem, WebhookVerifier, sign
from referrals.settings import ApiKey, WebhookSecret


def keyring():
    return KeyRing([ApiKey(name="app", key="k" * 20, types={"share"}),
                    ApiKey(name="shop", key="s" * 20, types={"order"})])


def test_keys():
    ring = keyring()
    assert ring.authenticate("Bearer " + "k" * 20).name == "app"
    assert ring.authenticate("Bearer " + "s" * 20).name == "shop"
    assert ring.authenticate("Bearer " + "x" * 20) is None
    assert ring.authenticate("k" * 20) is None
    assert ring.authenticate("Basic abc") is None
    assert ring.authenticate(None) is None


def verifier():
    return WebhookVerifier([WebhookSecret(name="shop", secret="w" * 20, types={"order"})], tolerance_s=300)


def test_signatures():
    v = verifier()
    body = b'{"x":1}'
    assert v.verify(sign("w" * 20, 1000, body), body, now=1000).name == "shop"
    for header, body_, now, rule in [
        (sign("w" * 20, 1000, body).replace("t=1000", "t=1001"), body, 1000, "signature_invalid"),  # t changed
        (sign("w" * 20, 1000, body), b'{"x":2}', 1000, "signature_invalid"),  # body tampered
        (sign("z" * 20, 1000, body), body, 1000, "signature_invalid"),  # wrong secret
        (sign("w" * 20, 1000, body), body, 1301, "signature_stale"),
        (sign("w" * 20, 1000, body), body, 1000, "signature_replayed"),
        ("t=abc,v1=00", body, 1000, "signature_malformed"),
        ("", body, 1000, "signature_malformed"),
    ]:
        with pytest.raises(SignatureProblem) as info:
            v.verify(header, body_, now)
        assert info.value.rule == rule


def test_secret_rotation_two_v1_values():
    v = verifier()
    body = b"{}"
    old = sign("o" * 20, 1000, body).split("v1=")[1]
    header = sign("w" * 20, 1000, body) + f",v1={old}"
    assert v.verify(header, body, now=1000).name == "shop"


def test_replay_guard_forgets_after_the_window():
    guard = ReplayGuard(window_s=10)
    assert guard.first_time("a", 0) and not guard.first_time("a", 5)
    assert guard.first_time("a", 11)
