"""Inbound event contracts: what apps and shops send.

One strict pydantic model per event type. Strict means: no type coercion (an id
sent as a number is rejected, not turned into a string), unknown fields are
rejected by name, models are immutable.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from schemas.fields import (
    Amount,
    ChannelField,
    Currency3,
    EventId,
    Identifier,
    OccurredAt,
    decimal_places,
    minor_units,
)


class InboundEventBase(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    event_id: EventId
    occurred_at: OccurredAt


class ShareEvent(InboundEventBase):
    """A customer shared their referral link (sent by the mobile app)."""

    type: Literal["share"]
    referrer_id: Identifier
    channel: ChannelField
    campaign_id: Identifier | None = None


class ClickEvent(InboundEventBase):
    """A friend opened a referral link."""

    type: Literal["click"]
    referral_code: Identifier
    visitor_id: Identifier
    channel: ChannelField | None = None
    campaign_id: Identifier | None = None


class SignupEvent(InboundEventBase):
    """A new customer account was created."""

    type: Literal["signup"]
    customer_id: Identifier
    referral_code: Identifier | None = None
    visitor_id: Identifier | None = None
    email_hash: Identifier | None = Field(
        None, description="a hash of the normalised e-mail address, never the address itself"
    )
    device_id: Identifier | None = None
    claim: bool | None = Field(
        None, description="true: an app's or a web page's word that the customer signed up (the gateway sets it "
        "on every signup sent with a publishable key); it counts once the shop's server confirms the customer "
        "with a signup of its own (docs/rules.md, claims)"
    )


class _MoneyEvent(InboundEventBase):
    order_id: Identifier
    customer_id: Identifier
    amount: Amount
    currency: Currency3

    @model_validator(mode="after")
    def _amount_fits_currency(self) -> _MoneyEvent:
        allowed = minor_units(self.currency)
        # Trailing zeros carry no precision: "19.990" EUR is 19.99 EUR.
        if decimal_places(self.amount.normalize()) > allowed:
            raise PydanticCustomError(
                "currency_precision",
                "amount has more decimals than {currency} allows ({allowed})",
                {"currency": self.currency, "allowed": allowed, "field": "amount"},
            )
        canonical = self.amount.quantize(Decimal(1).scaleb(-allowed))
        if str(canonical) != str(self.amount):
            # the model is frozen; this is its own validator settling the canonical form
            object.__setattr__(self, "amount", canonical)
        return self

    @property
    def amount_minor(self) -> int:
        """The amount in minor units (cents for EUR), exact."""
        return int(self.amount.scaleb(minor_units(self.currency)))


class OrderEvent(_MoneyEvent):
    """A purchase in the webshop."""

    type: Literal["order"]
    referral_code: Identifier | None = Field(None, description="a referral code typed at checkout")


class RefundEvent(_MoneyEvent):
    """Money given back for (part of) an order."""

    type: Literal["refund"]


InboundEvent = Annotated[
    ShareEvent | ClickEvent | SignupEvent | OrderEvent | RefundEvent,
    Field(discriminator="type"),
]

EVENT_MODELS: dict[str, type[InboundEventBase]] = {
    "share": ShareEvent,
    "click": ClickEvent,
    "signup": SignupEvent,
    "order": OrderEvent,
    "refund": RefundEvent,
}
