"""Campaigns: the typed rules of a referral programme, from a TOML file.

A bad file stops the worker with a message that names the key. Durations are written
in the unit their name says (``hold_period_days = 14``). Several campaigns may live in
one file as ``[[campaign]]`` tables; referral codes carry their campaign id.
"""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.fields import PAYMENT_CURRENCIES, decimal_places


class CampaignError(ValueError):
    """The campaign file is not usable; the message names the file and the key."""


class Campaign(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=128)
    starts_at: datetime
    ends_at: datetime | None = None
    landing_url: str = Field(pattern=r"^https?://")
    referrer_points: int = Field(500, ge=0)
    referee_points: int = Field(500, ge=0)
    minimum_order: dict[str, Decimal] = Field(default_factory=lambda: {"EUR": Decimal("20.00")})
    attribution_window_days: int = Field(30, ge=1)
    qualification_window_days: int = Field(90, ge=1)
    hold_period_days: int = Field(14, ge=0)
    monthly_cap: int = Field(10, ge=0, description="rewarded referrals per referrer and calendar month (UTC)")
    milestones: dict[int, int] = Field(
        default_factory=lambda: {3: 250, 5: 500, 10: 1000},
        description="extra referrer points at the n-th confirmed referral",
    )
    velocity_limit: int = Field(5, ge=1, description="more signups than this on one code within the window: review")
    velocity_window_minutes: int = Field(60, ge=1)
    referees_per_device: int = Field(
        1, ge=1, description="more of one referrer's referees than this signed up on one device_id: review")
    attribution_policy: Literal["last_click", "first_click"] = "last_click"
    lateness_minutes: int = Field(60, ge=0, description="how late an event may arrive and still count in order")
    claim_window_minutes: int = Field(
        1440, ge=1, description="an app's claimed signup counts with the shop's own signup of the customer within "
        "this many minutes of it (docs/rules.md, claims)")

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-03-01T00:00:00Z")
        return value

    @field_validator("minimum_order")
    @classmethod
    def _minimums(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for currency, amount in value.items():
            if currency not in PAYMENT_CURRENCIES:
                raise ValueError(f"{currency} is not an ISO 4217 currency code")
            if amount < 0 or decimal_places(amount.normalize()) > PAYMENT_CURRENCIES[currency]:
                raise ValueError(f"{amount} is not a valid {currency} amount")
        return value

    @field_validator("milestones")
    @classmethod
    def _milestones(cls, value: dict[int, int]) -> dict[int, int]:
        if any(n < 1 or points < 0 for n, points in value.items()):
            raise ValueError("milestones map a referral count >= 1 to points >= 0")
        return dict(sorted(value.items()))

    @model_validator(mode="after")
    def _period(self) -> Campaign:
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    @property
    def attribution_window(self) -> timedelta:
        return timedelta(days=self.attribution_window_days)

    @property
    def qualification_window(self) -> timedelta:
        return timedelta(days=self.qualification_window_days)

    @property
    def hold_period(self) -> timedelta:
        return timedelta(days=self.hold_period_days)

    @property
    def velocity_window(self) -> timedelta:
        return timedelta(minutes=self.velocity_window_minutes)

    @property
    def lateness(self) -> timedelta:
        return timedelta(minutes=self.lateness_minutes)

    @property
    def claim_window(self) -> timedelta:
        return timedelta(minutes=self.claim_window_minutes)

    def active(self, at: datetime) -> bool:
        return self.starts_at <= at and (self.ends_at is None or at < self.ends_at)

    def minimum_for(self, currency: str) -> Decimal | None:
        """The minimum first order in that currency; None: orders in it never qualify."""
        return self.minimum_order.get(currency)


class CampaignBook(BaseModel):
    """Every campaign of a file, by id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    campaign: list[Campaign] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CampaignBook:
        ids = [c.id for c in self.campaign]
        if len(ids) != len(set(ids)):
            raise ValueError("campaign ids must be unique")
        return self

    def get(self, campaign_id: str) -> Campaign | None:
        return next((c for c in self.campaign if c.id == campaign_id), None)


def load_campaigns(path: Path) -> CampaignBook:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CampaignError(f"{path}: no such campaign file") from None
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(f"{path}: not valid TOML: {exc}") from None
    try:
        return CampaignBook.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            loc = list(err["loc"])
            if len(loc) >= 2 and loc[0] == "campaign" and isinstance(loc[1], int):
                loc = [f"campaign[{loc[1]}]", *loc[2:]]
            key = ".".join(str(p) for p in loc) or "(file)"
            lines.append(f"{path}: {key}: {err['msg']}")
        raise CampaignError("\n".join(lines)) from None
