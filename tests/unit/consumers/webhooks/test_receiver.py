"""The demo's receiver accepts what the reference implementation signs, and nothing else."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from standardwebhooks import Webhook

from consumers.webhooks.receiver import TOLERANCE_S, summary, verified
from tests.unit.consumers.webhooks.factories import endpoint, new_secret


def signed_by_reference(secret: str, webhook_id: str, at: float, body: bytes) -> dict[str, str]:
    sig = Webhook(secret).sign(webhook_id, datetime.fromtimestamp(at, UTC), body.decode())
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(at)), "webhook-signature": sig}


def test_a_message_the_reference_implementation_signed_verifies_with_any_of_the_endpoints_secrets():
    old, new = new_secret(), new_secret()
    keys = endpoint(secret=[old, new]).keys()
    now = time.time()
    body = b'{"type":"reward.confirmed","data":{"points":500}}'
    assert verified(keys, signed_by_reference(new, "rw-1:confirmed:1", now, body), body, now)
    assert verified(keys, signed_by_reference(old, "rw-1:confirmed:1", now, body), body, now)


def test_a_forged_changed_or_stale_message_does_not():
    secret = new_secret()
    keys = endpoint(secret=secret).keys()
    now = time.time()
    body = b'{"points":500}'
    good = signed_by_reference(secret, "rw-1:pending:1", now, body)
    assert not verified(keys, signed_by_reference(new_secret(), "rw-1:pending:1", now, body), body, now)
    assert not verified(keys, good, b'{"points":5000}', now)
    assert not verified(keys, {**good, "webhook-id": "rw-2:pending:1"}, body, now)
    assert not verified(keys, good, body, now + TOLERANCE_S + 1)
    assert not verified(keys, {k: v for k, v in good.items() if k != "webhook-signature"}, body, now)
    assert not verified(keys, {**good, "webhook-timestamp": "soon"}, body, now)


def test_the_receiver_notes_what_a_shop_acts_on():
    payload = {"type": "reward.confirmed", "data": {"reward_id": "r", "customer_id": "c", "points": 5, "x": 1}}
    assert summary(payload) == {"reward_id": "r", "customer_id": "c", "points": 5}
