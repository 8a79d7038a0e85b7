"""Realistic referral traffic, reproducible from a seed. Pure: no clock, no I/O.

The story: a customer base signs up first; base customers share their referral link
(channel mix from the field: mobile-heavy, WhatsApp the largest at about 44 %); some
shares are clicked by a friend; some clicks become signups (with the code, or without it
and attributed by the visitor's click, or by a code typed at checkout); some signups
buy, some buy again; a few orders are refunded. Fraud is mixed in: self-referrals (the
referrer's own e-mail hash and device), bursts of signups on one code, and events sent
twice with the same event_id.

Time is virtual: seconds after ``start``; follow-ups are scheduled with delays divided
by ``time_compression`` (60 turns minutes into seconds, for a live demo). Events come out
in time order. The same seed and start give the same events, byte for byte.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.referral_codes import new_code

DEFAULT_CHANNEL_MIX: dict[str, float] = {
    "whatsapp": 0.44, "email": 0.12, "sms": 0.08, "facebook": 0.08, "instagram": 0.08, "copy_link": 0.08,
    "messenger": 0.04, "telegram": 0.03, "x": 0.02, "qr": 0.02, "other": 0.01,
}


class SimulationConfig(BaseModel):
    """Funnel rates default near published benchmarks; every rate is a probability per step."""

    model_config = ConfigDict(extra="forbid")

    customers: int = Field(1000, ge=1, description="size of the existing customer base (the referrers)")
    campaign_id: str = "default"
    channel_mix: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_CHANNEL_MIX))
    click_rate: float = Field(0.6, ge=0, le=1, description="share -> a friend clicks")
    extra_click_rate: float = Field(0.25, ge=0, le=1, description="another friend clicks the same share")
    signup_rate: float = Field(0.15, ge=0, le=1, description="click -> signup")
    signup_with_code_rate: float = Field(0.7, ge=0, le=1, description="signup carries the code (else by click)")
    checkout_code_rate: float = Field(0.1, ge=0, le=1, description="of signups without code: code at checkout")
    order_rate: float = Field(0.12, ge=0, le=1, description="signup -> first order")
    repeat_order_rate: float = Field(0.2, ge=0, le=1, description="a buyer orders again")
    base_order_rate: float = Field(0.3, ge=0, le=1, description="a share is followed by the referrer's own order")
    mean_order_amount: Decimal = Decimal("60.00")
    currency: str = "EUR"
    refund_rate: float = Field(0.04, ge=0, le=1, description="order -> (full or partial) refund")
    self_referral_rate: float = Field(0.01, ge=0, le=1, description="share -> the referrer signs up again")
    burst_rate: float = Field(0.002, ge=0, le=1, description="share -> a burst of signups on its code")
    burst_size: tuple[int, int] = (8, 20)
    duplicate_rate: float = Field(0.01, ge=0, le=1, description="event sent a second time, same event_id")
    time_compression: float = Field(1.0, gt=0, description="divide every funnel delay by this")

    def events_per_share(self) -> float:
        """Expected events caused by one share (for pacing shares to a target event rate)."""
        clicks = self.click_rate * (1 + self.extra_click_rate)
        signups = clicks * self.signup_rate
        orders = signups * self.order_rate * (1 + self.repeat_order_rate) + self.base_order_rate
        refunds = orders * self.refund_rate
        fraud = self.self_referral_rate + self.burst_rate * sum(self.burst_size) / 2
        return (1 + clicks + signups + orders + refunds + fraud) * (1 + self.duplicate_rate)


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    code: str
    email_hash: str
    device_id: str


@dataclass(order=True)
class _Pending:
    at: float
    seq: int
    event: dict[str, Any] = field(compare=False)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Simulation:
    def __init__(self, config: SimulationConfig, seed: int, start: datetime, share_rate: float):
        if start.tzinfo is None:
            raise ValueError("start needs a time zone")
        self.config = config
        self.seed = seed
        self.start = start
        self.share_rate = share_rate
        self.rng = random.Random(seed)
        self._n = 0
        self._queue: list[_Pending] = []
        tag = f"s{seed}"
        self.tag = tag
        self.customers = [
            Customer(f"{tag}-cust-{i}", new_code(self.rng.randrange), _hash(f"{tag}-cust-{i}@mail.example"),
                     f"{tag}-dev-{self.rng.getrandbits(48):012x}")
            for i in range(config.customers)
        ]
        channels = list(config.channel_mix)
        weights = [config.channel_mix[c] for c in channels]
        self._channels, self._cum = channels, _cumulative(weights)

    # -- helpers -------------------------------------------------------------------------------

    def _id(self, kind: str) -> str:
        self._n += 1
        return f"{self.tag}-{kind}-{self._n}"

    def _time(self, at: float) -> str:
        return (self.start + timedelta(seconds=at)).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _later(self, at: float, low_s: float, high_s: float) -> float:
        """A delay drawn log-uniformly between low and high seconds (compressed)."""
        delay = math.exp(self.rng.uniform(math.log(low_s), math.log(high_s)))
        return at + delay / self.config.time_compression

    def _push(self, at: float, event: dict[str, Any]) -> None:
        event["occurred_at"] = self._time(at)
        heapq.heappush(self._queue, _Pending(at, self._n, event))
        if self.rng.random() < self.config.duplicate_rate:
            heapq.heappush(self._queue, _Pending(self._later(at, 1, 120), self._n, dict(event)))

    def _channel(self) -> str:
        return self._channels[_pick(self._cum, self.rng.random())]

    def _amount(self) -> str:
        mean = float(self.config.mean_order_amount)
        value = mean * math.exp(self.rng.gauss(0, 0.5) - 0.125)
        return str(Decimal(max(value, 1.0)).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))

    # -- the story -----------------------------------------------------------------------------

    def _share(self, at: float) -> None:
        cfg, rng = self.config, self.rng
        referrer = self.customers[rng.randrange(len(self.customers))]
        channel = self._channel()
        self._push(at, {"type": "share", "event_id": self._id("share"), "referrer_id": referrer.customer_id,
                        "channel": channel, "campaign_id": cfg.campaign_id})
        if rng.random() < cfg.click_rate:
            self._click(referrer, channel, self._later(at, 5, 600))
            if rng.random() < cfg.extra_click_rate:
                self._click(referrer, channel, self._later(at, 30, 3600))
        if rng.random() < cfg.base_order_rate:
            self._order(referrer.customer_id, self._later(at, 60, 7200), None)
        if rng.random() < cfg.self_referral_rate:
            self._signup(self._later(at, 60, 3600), referrer.code, None, email_hash=referrer.email_hash,
                         device_id=referrer.device_id)
        if rng.random() < cfg.burst_rate:
            t = self._later(at, 60, 1800)
            for _ in range(rng.randint(*cfg.burst_size)):
                t += rng.uniform(0.5, 6) / cfg.time_compression
                self._signup(t, referrer.code, None, device_id=f"{self.tag}-burst-{rng.getrandbits(32):08x}")

    def _click(self, referrer: Customer, channel: str, at: float) -> None:
        visitor = f"{self.tag}-v-{self.rng.getrandbits(64):016x}"
        self._push(at, {"type": "click", "event_id": self._id("click"), "referral_code": referrer.code,
                        "visitor_id": visitor, "channel": channel, "campaign_id": self.config.campaign_id})
        if self.rng.random() < self.config.signup_rate:
            with_code = self.rng.random() < self.config.signup_with_code_rate
            self._signup(self._later(at, 30, 1800), referrer.code if with_code else None, visitor,
                         checkout_code=None if with_code or self.rng.random() >= self.config.checkout_code_rate
                         else referrer.code)

    def _signup(self, at: float, code: str | None, visitor: str | None, *, email_hash: str | None = None,
                device_id: str | None = None, checkout_code: str | None = None) -> None:
        customer = self._id("new")
        event = {"type": "signup", "event_id": self._id("signup"), "customer_id": customer,
                 "email_hash": email_hash or _hash(f"{customer}@mail.example"),
                 "device_id": device_id or f"{self.tag}-dev-{self.rng.getrandbits(48):012x}"}
        if code:
            event["referral_code"] = code
        if visitor:
            event["visitor_id"] = visitor
        self._push(at, event)
        if self.rng.random() < self.config.order_rate:
            t = self._later(at, 60, 7200)
            self._order(customer, t, checkout_code)
            if self.rng.random() < self.config.repeat_order_rate:
                self._order(customer, self._later(t, 600, 86400), None)

    def _order(self, customer: str, at: float, code: str | None) -> None:
        order_id = self._id("order")
        amount = self._amount()
        event = {"type": "order", "event_id": self._id("order-ev"), "order_id": order_id,
                 "customer_id": customer, "amount": amount, "currency": self.config.currency}
        if code:
            event["referral_code"] = code
        self._push(at, event)
        if self.rng.random() < self.config.refund_rate:
            full = self.rng.random() < 0.5
            part = Decimal(amount) if full else (Decimal(amount) * Decimal("0.3")).quantize(Decimal("0.01"))
            self._push(self._later(at, 600, 172800), {
                "type": "refund", "event_id": self._id("refund"), "order_id": order_id, "customer_id": customer,
                "amount": str(max(part, Decimal("0.01"))), "currency": self.config.currency})

    # -- the stream ----------------------------------------------------------------------------

    def events(self) -> Iterator[tuple[float, dict[str, Any]]]:
        """(virtual seconds after start, event) in time order, without end: the base's signups
        first, then shares as a Poisson process at ``share_rate`` with everything they cause."""
        base_rate = max(self.share_rate, 1.0) * 10
        t = 0.0
        for customer in self.customers:
            t += self.rng.expovariate(base_rate)
            self._push(t, {"type": "signup", "event_id": f"{customer.customer_id}-signup",
                           "customer_id": customer.customer_id, "email_hash": customer.email_hash,
                           "device_id": customer.device_id})
        next_share = t
        while True:
            next_share += self.rng.expovariate(self.share_rate)
            while self._queue and self._queue[0].at <= next_share:
                item = heapq.heappop(self._queue)
                yield item.at, item.event
            self._share(next_share)


def _cumulative(weights: list[float]) -> list[float]:
    total, out = sum(weights), []
    acc = 0.0
    for w in weights:
        acc += w / total
        out.append(acc)
    return out


def _pick(cumulative: list[float], u: float) -> int:
    for i, edge in enumerate(cumulative):
        if u < edge:
            return i
    return len(cumulative) - 1
