"""What an inbound event is to the stage that takes it: its key there and its fact. Pure, apart from
``resolve`` (a referral code -> its owner; the registry in the worker, a table in tests).

One place for the worker (``streams.app``), the in-memory reference (``tests.oracle.pipeline``)
and the tests' model of the shell, so that all three read an event the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from schemas.events import ClickEvent, InboundEventBase, OrderEvent, RefundEvent, ShareEvent, SignupEvent
from streams import referee_ledger, visitor_attribution
from streams.referee_ledger import CodeOwner
from streams.stages import Share

DEFAULT_CAMPAIGN = "default"  # an event that names no campaign, and whose code does not either

Resolve = Callable[[str], CodeOwner | None]
Fact = visitor_attribution.Click | referee_ledger.Signup | referee_ledger.Order | referee_ledger.Refund | Share


def to_fact(event: InboundEventBase, resolve: Resolve) -> tuple[str, Fact]:
    """(the stage's key, the fact): clicks by visitor, signups/orders/refunds by customer, shares by referrer."""
    if isinstance(event, ClickEvent):
        owner = resolve(event.referral_code)
        return event.visitor_id, visitor_attribution.Click(
            event.event_id, event.occurred_at, event.referral_code, owner.referrer_id if owner else None,
            owner.campaign_id if owner else (event.campaign_id or DEFAULT_CAMPAIGN),
            event.channel.value if event.channel else None, event.visitor_id)
    if isinstance(event, SignupEvent):
        owner = resolve(event.referral_code) if event.referral_code else None
        return event.customer_id, referee_ledger.Signup(
            event.event_id, event.occurred_at, event.referral_code, owner, event.visitor_id, event.email_hash,
            event.device_id, bool(event.claim))
    if isinstance(event, OrderEvent):
        owner = resolve(event.referral_code) if event.referral_code else None
        return event.customer_id, referee_ledger.Order(
            event.event_id, event.occurred_at, event.order_id, event.amount, event.currency, event.referral_code,
            owner)
    if isinstance(event, RefundEvent):
        return event.customer_id, referee_ledger.Refund(
            event.event_id, event.occurred_at, event.order_id, event.amount, event.currency)
    if isinstance(event, ShareEvent):
        return event.referrer_id, Share(event.event_id, event.campaign_id or DEFAULT_CAMPAIGN, event.channel.value,
                                        event.occurred_at)
    raise TypeError(f"not an inbound event: {type(event).__name__}")
