"""Webhook endpoints and changes for the webhook tests."""

from __future__ import annotations

from datetime import UTC, datetime

from consumers.webhooks.signing import new_secret
from referrals.settings import WebhookEndpoint
from schemas.derived import RewardChange, RewardRole, RewardStatus

__all__ = ["endpoint", "new_secret", "reward"]


def endpoint(name: str = "shop", url: str = "http://127.0.0.1:9/hooks", secret: str | list[str] | None = None,
             types: tuple[str, ...] = ("reward.pending", "reward.confirmed", "reward.revoked"),
             campaigns: list[str] | None = None) -> WebhookEndpoint:
    return WebhookEndpoint(name=name, url=url, secret=secret or new_secret(), types=frozenset(types),
                           campaigns=frozenset(campaigns) if campaigns else None)


def reward(reward_id: str = "rw-1", status: RewardStatus = RewardStatus.PENDING, change: int = 1,
           campaign: str | None = "spring", reason=None, points: int = 500) -> RewardChange:
    return RewardChange(event_id=f"{reward_id}:{status.value}:{change}", occurred_at=datetime(2026, 3, 1, 12, tzinfo=UTC),
                        reward_id=reward_id, referral_id="ref-1", role=RewardRole.REFERRER, customer_id="cust-1",
                        points=points, status=status, reason=reason, campaign_id=campaign)
