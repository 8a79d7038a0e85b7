"""The shop's confirmation back: a reward was issued (a coupon, a credit, points in the shop) or could not be.

``POST /v1/rewards/{reward_id}/fulfilment`` takes a ``FulfilmentRequest``; the gateway turns it into a
``Fulfilment`` event on ``referrals.fulfilments`` (keyed by the reward). Its id is derived from the reward and
the request's content, so the same call sent again is the same event: the call is idempotent.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import EventId, Identifier, OccurredAt, Text

MAX_REWARD_ID_LENGTH = 512  # campaign, referrer and referee ids (128 each) and a role: the worker's reward ids


class FulfilmentRequest(BaseModel):
    """What the shop says about one reward."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    status: Literal["fulfilled", "failed"] = Field(description="fulfilled: issued to the customer; failed: could not "
                                                   "be (say why in note)")
    reference: Identifier | None = Field(None, description="the shop's reference: a coupon code's id, a credit "
                                         "note, an order; no personal data")
    note: Text | None = Field(None, max_length=500, description="for support; no personal data")


class Fulfilment(BaseModel):
    """The event: a shop's fulfilment of one reward, as the gateway took it."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    type: Literal["fulfilment"] = "fulfilment"
    event_id: EventId
    occurred_at: OccurredAt = Field(description="when the gateway took the call")
    reward_id: Text = Field(min_length=1, max_length=MAX_REWARD_ID_LENGTH)
    status: Literal["fulfilled", "failed"]
    reference: Identifier | None = None
    note: Text | None = Field(None, max_length=500)
    key: str = Field(min_length=1, description="the name of the API key that sent it")

    @classmethod
    def of(cls, reward_id: str, request: FulfilmentRequest, at: datetime, key: str) -> Fulfilment:
        content = "\x00".join((reward_id, request.status, request.reference or "", request.note or ""))
        digest = hashlib.sha256(content.encode()).hexdigest()[:24]
        return cls(event_id=f"fulfilment:{digest}", occurred_at=at, reward_id=reward_id, status=request.status,
                   reference=request.reference, note=request.note, key=key)
