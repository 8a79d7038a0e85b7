"""Valid events as plain JSON-like dicts, for tests to break one rule at a time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
T = "2026-05-01T11:00:00Z"

VALID: dict[str, dict[str, Any]] = {
    "share": {"type": "share", "event_id": "ev-share-1", "occurred_at": T, "referrer_id": "cust-1",
              "channel": "whatsapp"},
    "click": {"type": "click", "event_id": "ev-click-1", "occurred_at": T, "referral_code": "ANNA7K2Q",
              "visitor_id": "v-1"},
    "signup": {"type": "signup", "event_id": "ev-signup-1", "occurred_at": T, "customer_id": "cust-2"},
    "order": {"type": "order", "event_id": "ev-order-1", "occurred_at": T, "order_id": "o-1",
              "customer_id": "cust-2", "amount": "49.90", "currency": "EUR"},
    "refund": {"type": "refund", "event_id": "ev-refund-1", "occurred_at": T, "order_id": "o-1",
               "customer_id": "cust-2", "amount": "9.90", "currency": "EUR"},
}

OPTIONAL: dict[str, dict[str, Any]] = {
    "share": {"campaign_id": "spring"},
    "click": {"channel": "sms", "campaign_id": "spring"},
    "signup": {"referral_code": "ANNA7K2Q", "visitor_id": "v-1", "email_hash": "9f86d081884c7d65",
               "device_id": "dev-1", "claim": True},
    "order": {"referral_code": "ANNA7K2Q"},
    "refund": {},
}

REQUIRED: dict[str, list[str]] = {
    "share": ["event_id", "occurred_at", "referrer_id", "channel"],
    "click": ["event_id", "occurred_at", "referral_code", "visitor_id"],
    "signup": ["event_id", "occurred_at", "customer_id"],
    "order": ["event_id", "occurred_at", "order_id", "customer_id", "amount", "currency"],
    "refund": ["event_id", "occurred_at", "order_id", "customer_id", "amount", "currency"],
}

ID_FIELDS: dict[str, list[str]] = {
    "share": ["referrer_id", "campaign_id"],
    "click": ["referral_code", "visitor_id", "campaign_id"],
    "signup": ["customer_id", "referral_code", "visitor_id", "email_hash", "device_id"],
    "order": ["order_id", "customer_id", "referral_code"],
    "refund": ["order_id", "customer_id"],
}


def event(kind: str, **changes: Any) -> dict[str, Any]:
    """A valid event of ``kind`` with ``changes`` applied; a value of ``...`` removes the field."""
    data = dict(VALID[kind])
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def full(kind: str) -> dict[str, Any]:
    return {**VALID[kind], **OPTIONAL[kind]}
