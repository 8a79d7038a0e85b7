"""Derived event contracts: what the pipeline itself writes.

Attributions and reward state changes are decisions of the stream agents; dead-letter
records keep every inbound record that could not be used, byte for byte, with the reason.
"""

from __future__ import annotations

import base64
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_validator
from pydantic_core import PydanticCustomError

from schemas.fields import EventId, Identifier, OccurredAt


class AttributionMethod(StrEnum):
    """How a referee was tied to a referrer."""

    SIGNUP_CODE = "signup_code"  # the signup carried a referral_code
    LAST_CLICK = "last_click"  # the visitor's latest click within the attribution window
    FIRST_CLICK = "first_click"  # the visitor's earliest click within the attribution window
    ORDER_CODE = "order_code"  # a referral code typed at checkout (coupon-code attribution)


class RewardRole(StrEnum):
    REFERRER = "referrer"
    REFEREE = "referee"


class RewardStatus(StrEnum):
    PENDING = "pending"  # qualified, waiting out the hold period
    CONFIRMED = "confirmed"  # final: the points are the customer's
    REVOKED = "revoked"  # taken back (refund within the hold period)
    CAPPED = "capped"  # over the referrer's monthly cap: visible, no points
    HELD_FOR_REVIEW = "held_for_review"  # a fraud rule fired; a person decides


#: Statuses that withhold points; a change to one of them must say why.
WITHHOLDING_STATUSES = frozenset({RewardStatus.REVOKED, RewardStatus.CAPPED, RewardStatus.HELD_FOR_REVIEW})


class ReasonCode(StrEnum):
    """Why a reward was withheld or a referral not counted. docs/rules.md lists these for support."""

    SELF_REFERRAL = "self_referral"  # the referee is the referrer
    SHARED_EMAIL = "shared_email"  # the referee's email_hash is the referrer's
    SHARED_DEVICE = "shared_device"  # the referee's device_id is the referrer's
    DEVICE_REUSED = "device_reused"  # more of the referrer's referees on one device_id than the campaign allows
    DUPLICATE_ATTRIBUTION = "duplicate_attribution"  # the referee was already attributed
    VELOCITY_LIMIT = "velocity_limit"  # too many signups on one code within an hour
    MONTHLY_CAP = "monthly_cap"  # the referrer reached the monthly cap of rewarded referrals
    REFUNDED_IN_HOLD = "refunded_in_hold"  # the qualifying order was refunded within the hold period
    EXISTING_CUSTOMER = "existing_customer"  # the referee had ordered before being referred
    UNKNOWN_CODE = "unknown_code"  # the referral code resolves to no referrer
    CAMPAIGN_INACTIVE = "campaign_inactive"  # outside the campaign's start/end
    LATE_EVENT = "late_event"  # a late event voided a reward that, in time order, would never have existed
    CLAIM_UNCONFIRMED = "claim_unconfirmed"  # an app's claimed signup the shop's server has not confirmed


class _Derived(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    event_id: EventId
    occurred_at: OccurredAt


class Attribution(_Derived):
    """A referee was attributed to a referrer. At most one per referee, ever."""

    type: Literal["attribution"] = "attribution"
    referee_id: Identifier
    referrer_id: Identifier
    referral_code: Identifier
    method: AttributionMethod
    source_event_id: EventId = Field(description="the signup or order that caused the attribution")
    campaign_id: Identifier | None = None


class RewardChange(_Derived):
    """A reward was created or changed status."""

    type: Literal["reward"] = "reward"
    reward_id: Identifier
    referral_id: Identifier
    role: RewardRole
    customer_id: Identifier = Field(description="who receives the points")
    points: NonNegativeInt
    status: RewardStatus
    reason: ReasonCode | None = None
    campaign_id: Identifier | None = None
    count: NonNegativeInt | None = Field(
        default=None, description="held for review: what the rule counted when it held the reward (velocity_limit: "
        "the signups on the code within the window; device_reused: the referees on one device)")

    @model_validator(mode="after")
    def _withholding_needs_reason(self) -> RewardChange:
        if self.status in WITHHOLDING_STATUSES and self.reason is None:
            raise PydanticCustomError(
                "reason_required",
                "status {status} withholds points and needs a reason code",
                {"status": self.status.value, "field": "reason"},
            )
        return self


class DeadLetter(BaseModel):
    """An inbound record that could not be used, kept whole with where it came from and why."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    type: Literal["deadletter"] = "deadletter"
    source_topic: Identifier
    source_partition: NonNegativeInt
    source_offset: NonNegativeInt
    original_value_b64: str = Field(description="the record value, base64, byte for byte")
    original_key_b64: str | None = None
    reason: str = Field(min_length=1, description="the rule that failed, e.g. json, unknown_field")
    problems: list[dict[str, str]] = Field(default_factory=list)
    received_at: datetime

    @classmethod
    def for_record(
        cls,
        *,
        topic: str,
        partition: int,
        offset: int,
        value: bytes | None,
        key: bytes | None,
        reason: str,
        problems: list[dict[str, str]],
        received_at: datetime,
    ) -> DeadLetter:
        return cls(
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            original_value_b64=base64.b64encode(value or b"").decode("ascii"),
            original_key_b64=base64.b64encode(key).decode("ascii") if key is not None else None,
            reason=reason,
            problems=problems,
            received_at=received_at,
        )

    @property
    def original_value(self) -> bytes:
        return base64.b64decode(self.original_value_b64)
