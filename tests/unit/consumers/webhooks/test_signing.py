"""Signatures as Standard Webhooks defines them, verified by the `standardwebhooks` package (written elsewhere)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from consumers.webhooks.signing import headers
from tests.unit.consumers.webhooks.factories import endpoint, new_secret


@given(body=st.binary(max_size=300).map(lambda b: b.hex().encode()), webhook_id=st.from_regex(r"[a-z0-9:_-]{1,40}",
                                                                                                fullmatch=True))
def test_the_reference_implementation_verifies_every_signature(body, webhook_id):
    secret = new_secret()
    now = int(time.time())
    signed = headers(endpoint(secret=secret).keys(), webhook_id, now, body)
    assert Webhook(secret).verify(body, signed, json_parse=False) is None


def test_while_a_secret_is_rotated_either_one_verifies_and_a_stranger_does_not():
    old, new = new_secret(), new_secret(48)
    body = b'{"type":"reward.pending"}'
    signed = headers(endpoint(secret=[old, new]).keys(), "rw-1:pending:1", int(time.time()), body)
    assert signed["webhook-signature"].count("v1,") == 2
    Webhook(old).verify(body, signed, json_parse=False)
    Webhook(new).verify(body, signed, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, signed, json_parse=False)


def test_a_changed_body_id_or_timestamp_fails_verification():
    secret = new_secret()
    now = int(time.time())
    body = b'{"points":500}'
    signed = headers(endpoint(secret=secret).keys(), "rw-1:pending:1", now, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"points":5000}', signed, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**signed, "webhook-id": "rw-2:pending:1"}, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**signed, "webhook-timestamp": str(now - 1)}, json_parse=False)
