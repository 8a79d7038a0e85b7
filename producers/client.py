"""A small typed client for shop backends that run Python next to the broker.

    from producers.client import ReferralEvents

    with ReferralEvents(bootstrap_servers="kafka:9092", source="shop/berlin") as events:
        events.signup("c-829", referral_code="K7M2Q9XHC4", email_hash=sha256_hex(email))
        events.order("1001", "c-829", Decimal("49.90"), "EUR")
        events.refund("1001", "c-829", Decimal("9.90"), "EUR", event_id="credit-note-77")
    # leaving the block flushes: every event is acknowledged by Kafka, or PublishError is raised

Events are validated with the same models as the gateway; invalid input raises
``InvalidEvent`` naming each field and rule, before anything is sent. Event ids default
to stable values (``signup:<customer_id>``, ``order:<order_id>``) so a retried call is the
same event; a refund needs an ``event_id`` of its own (a credit-note or refund id), since
one order may be refunded more than once. Amounts are ``Decimal``, ``int`` or decimal
strings; a float is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from kafka.producer.future import FutureRecordMetadata

from referrals.publisher import EventPublisher
from referrals.settings import KafkaSettings, Settings, changed
from schemas.events import InboundEventBase
from schemas.parsing import EventRejected, Problem, parse_event
from schemas.records import inbound_record


class InvalidEvent(EventRejected):
    """The event breaks the contract; ``problems`` names each field and rule."""


class ReferralEvents:
    def __init__(
        self,
        bootstrap_servers: str | None = None,
        *,
        settings: Settings | None = None,
        source: str = "shop-client",
        clock: Callable[[], datetime] | None = None,
        **producer_options: Any,
    ):
        if settings is None:
            settings = Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap_servers))
        elif bootstrap_servers is not None:
            settings = changed(settings, kafka={"bootstrap_servers": bootstrap_servers})
        self._clock = clock or (lambda: datetime.now(UTC))
        self._publisher = EventPublisher(settings, source=source, **producer_options)
        self._prefix = settings.kafka.topic_prefix
        self._pending: list[FutureRecordMetadata] = []

    def _send(self, data: dict[str, Any]) -> str:
        data = {k: v for k, v in data.items() if v is not None}
        now = self._clock()
        data.setdefault("occurred_at", now)
        if isinstance(data.get("occurred_at"), datetime):
            data["occurred_at"] = data["occurred_at"].isoformat()
        if isinstance(data.get("amount"), float):
            raise InvalidEvent([Problem("amount", "amount_type", "must be a Decimal, int or decimal string, not a float")])
        if isinstance(data.get("amount"), Decimal | int):
            data["amount"] = str(data["amount"])
        try:
            event: InboundEventBase = parse_event(data, now=now)
        except EventRejected as exc:
            raise InvalidEvent(exc.problems) from None
        self._pending.append(self._publisher.send_nowait(inbound_record(event, self._publisher.source, self._prefix)))
        return event.event_id

    def signup(self, customer_id: str, *, occurred_at: datetime | None = None, event_id: str | None = None,
               referral_code: str | None = None, visitor_id: str | None = None, email_hash: str | None = None,
               device_id: str | None = None) -> str:
        """A new customer account. Returns the event id."""
        return self._send({"type": "signup", "event_id": event_id or f"signup:{customer_id}",
                           "occurred_at": occurred_at, "customer_id": customer_id, "referral_code": referral_code,
                           "visitor_id": visitor_id, "email_hash": email_hash, "device_id": device_id})

    def order(self, order_id: str, customer_id: str, amount: Decimal | int | str, currency: str, *,
              occurred_at: datetime | None = None, event_id: str | None = None,
              referral_code: str | None = None) -> str:
        """A purchase. Returns the event id."""
        return self._send({"type": "order", "event_id": event_id or f"order:{order_id}", "occurred_at": occurred_at,
                           "order_id": order_id, "customer_id": customer_id, "amount": amount,
                           "currency": currency, "referral_code": referral_code})

    def refund(self, order_id: str, customer_id: str, amount: Decimal | int | str, currency: str, *,
               event_id: str, occurred_at: datetime | None = None) -> str:
        """Money given back for (part of) an order. ``event_id``: your refund or credit-note id."""
        return self._send({"type": "refund", "event_id": event_id, "occurred_at": occurred_at,
                           "order_id": order_id, "customer_id": customer_id, "amount": amount,
                           "currency": currency})

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait until Kafka acknowledged every event sent so far; PublishError if it did not."""
        pending, self._pending = self._pending, []
        return len(self._publisher.wait(pending, deadline=time.monotonic() + timeout_s))

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._publisher.close()

    def __enter__(self) -> ReferralEvents:
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is None:
            self.close()
        else:
            self._publisher.close()
