"""A small, fixed story of one referral, as inbound events: what `referrals demo` sends."""

from __future__ import annotations

from datetime import datetime, timedelta

from schemas.events import ClickEvent, InboundEventBase, OrderEvent, RefundEvent, ShareEvent, SignupEvent


def referral_story(now: datetime, prefix: str = "demo") -> list[InboundEventBase]:
    """Anna shares over WhatsApp, Ben clicks, signs up with the code, orders, and returns a part."""
    t0 = now - timedelta(minutes=10)

    def at(minutes: int) -> datetime:
        return t0 + timedelta(minutes=minutes)

    return [
        ShareEvent(type="share", event_id=f"{prefix}-share-1", occurred_at=at(0),
                   referrer_id="cust-anna", channel="whatsapp", campaign_id="spring"),
        ClickEvent(type="click", event_id=f"{prefix}-click-1", occurred_at=at(1),
                   referral_code="ANNA7K2Q", visitor_id="visitor-ben", channel="whatsapp"),
        SignupEvent(type="signup", event_id=f"{prefix}-signup-1", occurred_at=at(3), customer_id="cust-ben",
                    referral_code="ANNA7K2Q", visitor_id="visitor-ben"),
        OrderEvent(type="order", event_id=f"{prefix}-order-1", occurred_at=at(6), order_id="order-1001",
                   customer_id="cust-ben", amount="49.90", currency="EUR"),
        RefundEvent(type="refund", event_id=f"{prefix}-refund-1", occurred_at=at(9), order_id="order-1001",
                    customer_id="cust-ben", amount="9.90", currency="EUR"),
    ]
