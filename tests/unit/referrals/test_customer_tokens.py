"""Customer tokens (referrals.customer_tokens): what the shop's backend issues and the gateway checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from referrals import customer_tokens
from referrals.customer_tokens import TokenProblem, issue, verify

SECRET = "ts_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
NOW = 1_800_000_000


def check(token: str, *, secret: str = SECRET, key_name: str = "web", now: float = NOW, max_ttl_s: int = 86400):
    return verify(token, secret=secret, key_name=key_name, now=now, max_ttl_s=max_ttl_s)


@given(st.text(min_size=1).filter(lambda s: "\x00" not in s), st.integers(min_value=1, max_value=86400))
def test_a_token_vouches_for_exactly_its_customer(customer_id, ttl):
    assert check(issue(SECRET, "web", customer_id, NOW + ttl)) == customer_id


@pytest.mark.parametrize(("token", "rule"), [
    ("", "token_malformed"),
    ("v2.1800000600.ZXZh.AAAA", "token_malformed"),
    ("v1.soon.ZXZh.AAAA", "token_malformed"),
    ("v1.1800000600.ZXZh", "token_malformed"),
    ("v1.1800000600.ZXZh.%%%", "token_malformed"),
    ("v1.1800000600.ZXZh.AAAA", "token_invalid"),
])
def test_what_is_not_a_token_is_refused_by_rule(token, rule):
    with pytest.raises(TokenProblem) as refused:
        check(token)
    assert refused.value.rule == rule


def test_a_forged_changed_foreign_expired_or_long_lived_token_is_refused():
    good = issue(SECRET, "web", "eva", NOW + 600)
    version, expires, customer, mac = good.split(".")
    other = customer_tokens._b64(b"mallory")
    cases = {
        "token_invalid": [
            issue("another-secret-of-32-characters!!", "web", "eva", NOW + 600),  # not the shop's secret
            issue(SECRET, "app", "eva", NOW + 600),  # made for another publishable key
            f"{version}.{expires}.{other}.{mac}",  # the customer swapped
            f"{version}.{int(expires) + 3600}.{customer}.{mac}",  # the expiry pushed back
        ],
        "token_expired": [issue(SECRET, "web", "eva", NOW), issue(SECRET, "web", "eva", NOW - 1)],
        "token_too_long_lived": [issue(SECRET, "web", "eva", NOW + 86401)],
    }
    for rule, tokens in cases.items():
        for token in tokens:
            with pytest.raises(TokenProblem) as refused:
                check(token)
            assert refused.value.rule == rule, token
