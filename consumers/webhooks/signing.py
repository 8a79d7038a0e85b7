"""Standard Webhooks signatures: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one per secret.

Signing is three lines of the standard library (hmac, base64); the tests verify every signature with the
``standardwebhooks`` package, an implementation written elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def signature(keys: list[bytes], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: one ``v1,<sig>`` per key, separated by spaces (a receiver accepts the
    message when any of them matches its secret, so a secret can be rotated without a gap)."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")
                    for key in keys)


def headers(keys: list[bytes], webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(keys, webhook_id, timestamp, body),
            "content-type": "application/json", "user-agent": "referral-pipeline-webhooks/1"}


def new_secret(size: int = 32) -> str:
    """A new endpoint secret in the Standard Webhooks form: ``whsec_`` and ``size`` random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(size)).decode("ascii")
