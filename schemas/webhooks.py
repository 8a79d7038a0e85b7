"""Outbound webhooks: the payload a shop receives for each change, and a delivery that died.

Payloads follow the Standard Webhooks format: ``{"type", "id", "timestamp", "data"}``. ``id`` is the id of the
change (the worker's event id, the same whenever the change is sent again), so a receiver drops repeats by the
``webhook-id`` header, which carries the same value. ``timestamp`` is when the change happened (event time);
when it was sent is the ``webhook-timestamp`` header. docs/webhooks.md is the catalogue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from schemas.derived import Attribution, RewardChange
from schemas.fields import Identifier, rfc3339

REWARD_TYPES = {"pending": "reward.pending", "confirmed": "reward.confirmed", "revoked": "reward.revoked",
                "capped": "reward.capped", "held_for_review": "reward.held_for_review"}
ATTRIBUTED = "referral.attributed"
TEST = "webhook.test"  # `referrals webhooks test`: sent to one endpoint whatever it subscribed to


@dataclass(frozen=True, slots=True)
class Change:
    """One change as an endpoint receives it: the body, signed and sent as it is on every attempt."""

    webhook_id: str
    type: str
    ordering_key: str  # changes with the same key reach an endpoint in their order: one reward, one referee
    campaign_id: str | None
    body: bytes


def _change(webhook_id: str, kind: str, ordering_key: str, campaign_id: str | None, at: datetime,
            data: dict[str, Any]) -> Change:
    body = {"type": kind, "id": webhook_id, "timestamp": rfc3339(at), "data": data}
    return Change(webhook_id, kind, ordering_key, campaign_id,
                  json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())


def reward_change(change: RewardChange) -> Change:
    data = {"reward_id": change.reward_id, "referral_id": change.referral_id, "role": change.role.value,
            "customer_id": change.customer_id, "points": change.points, "status": change.status.value,
            "reason": change.reason.value if change.reason else None, "campaign_id": change.campaign_id,
            "occurred_at": rfc3339(change.occurred_at)}
    return _change(change.event_id, REWARD_TYPES[change.status.value], f"reward:{change.reward_id}",
                   change.campaign_id, change.occurred_at, data)


def attribution_change(attribution: Attribution) -> Change:
    data = {"referee_id": attribution.referee_id, "referrer_id": attribution.referrer_id,
            "referral_code": attribution.referral_code, "method": attribution.method.value,
            "source_event_id": attribution.source_event_id, "campaign_id": attribution.campaign_id,
            "occurred_at": rfc3339(attribution.occurred_at)}
    return _change(attribution.event_id, ATTRIBUTED, f"referee:{attribution.referee_id}", attribution.campaign_id,
                   attribution.occurred_at, data)


def probe_change(webhook_id: str, at: datetime, endpoint: str) -> Change:
    return _change(webhook_id, TEST, f"test:{webhook_id}", None, at,
                   {"endpoint": endpoint, "message": "a signed test event from referral-pipeline"})


class DeadDelivery(BaseModel):
    """A change an endpoint refused (a 4xx other than 408 and 429, a redirect) or did not take within the retry
    period, kept with the last answer; ``referrals webhooks replay`` sends it again."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    type: Literal["webhook_deadletter"] = "webhook_deadletter"
    endpoint: Identifier
    webhook_id: str = Field(min_length=1)
    event_type: str = Field(min_length=1)
    ordering_key: str = Field(min_length=1)
    body: str = Field(description="the payload as it was sent, JSON text")
    source_topic: str
    source_partition: NonNegativeInt
    source_offset: NonNegativeInt
    attempts: NonNegativeInt
    first_attempt_at: datetime
    dead_at: datetime
    cause: str = Field(min_length=1, description="status_<code>, retries_exhausted, redirect or "
                       "behind_dead_delivery (an earlier change of the same reward is dead)")
    last_status: int | None = None
    last_error: str | None = None
    last_answer: str | None = Field(None, description="the start of the endpoint's last answer body")

    def change(self) -> Change:
        campaign = json.loads(self.body).get("data", {}).get("campaign_id")
        return Change(self.webhook_id, self.event_type, self.ordering_key, campaign, self.body.encode())
