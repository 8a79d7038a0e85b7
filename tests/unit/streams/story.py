"""Writing referral stories for the stream tests in a few words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from schemas import parse_event
from streams.campaigns import Campaign, CampaignBook, load_campaigns
from streams.referee_ledger import CodeOwner
from tests.oracle.pipeline import ReferencePipeline

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
FAR = T0 + timedelta(days=3650)
EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "campaigns" / "example.toml"

CODES = {"ANNA": "anna", "BEN": "ben", "CARL": "carl", "SELF": "zoe"}


def campaigns(**changes) -> CampaignBook:
    base = load_campaigns(EXAMPLE).campaign[0]
    return CampaignBook(campaign=[Campaign.model_validate({**base.model_dump(), **changes})])


def resolve(code: str) -> CodeOwner | None:
    referrer = CODES.get(code)
    return CodeOwner(referrer, "default") if referrer else None


def at(minutes: float = 0, days: float = 0) -> str:
    return (T0 + timedelta(minutes=minutes, days=days)).isoformat()


class Story:
    """s = Story(); s.signup("eva", code="ANNA"); s.order("eva", "30.00"); s.run() -> pipeline"""

    def __init__(self, **campaign_changes):
        self.book = campaigns(**campaign_changes) if campaign_changes else campaigns()
        self.events: list = []
        self._n = 0

    def _add(self, data: dict) -> dict:
        self._n += 1
        data.setdefault("event_id", f"e{self._n}")
        self.events.append(parse_event(data, now=FAR))
        return data

    def click(self, visitor: str, code: str, minutes: float = 0, days: float = 0):
        return self._add({"type": "click", "occurred_at": at(minutes, days), "referral_code": code,
                          "visitor_id": visitor})

    def share(self, referrer: str, channel: str = "whatsapp", minutes: float = 0, days: float = 0):
        return self._add({"type": "share", "occurred_at": at(minutes, days), "referrer_id": referrer,
                          "channel": channel})

    def resend(self, index: int) -> None:
        """An event sent again by its client: the same event (id and all) once more."""
        self.events.append(self.events[index])

    def signup(self, customer: str, code: str | None = None, visitor: str | None = None, minutes: float = 0,
               days: float = 0, email: str | None = None, device: str | None = None, claim: bool = False):
        """``claim``: sent with a publishable key (an app's word; the gateway marks it)."""
        data = {"type": "signup", "occurred_at": at(minutes, days), "customer_id": customer}
        if claim:
            data["claim"] = True
        for key, value in (("referral_code", code), ("visitor_id", visitor), ("email_hash", email),
                           ("device_id", device)):
            if value:
                data[key] = value
        return self._add(data)

    def order(self, customer: str, amount: str, minutes: float = 0, days: float = 0, order_id: str | None = None,
              code: str | None = None, currency: str = "EUR"):
        data = {"type": "order", "occurred_at": at(minutes, days), "customer_id": customer,
                "order_id": order_id or f"o{self._n + 1}", "amount": amount, "currency": currency}
        if code:
            data["referral_code"] = code
        return self._add(data)

    def refund(self, customer: str, order_id: str, amount: str, minutes: float = 0, days: float = 0):
        return self._add({"type": "refund", "occurred_at": at(minutes, days), "customer_id": customer,
                          "order_id": order_id, "amount": amount, "currency": "EUR"})

    def run(self, events=None, tick_days: float | None = None) -> ReferencePipeline:
        pipeline = ReferencePipeline(self.book, resolve)
        for event in self.events if events is None else events:
            pipeline.feed(event)
        if tick_days is not None:
            pipeline.tick(T0 + timedelta(days=tick_days))
        return pipeline


def statuses(pipeline: ReferencePipeline) -> dict[str, tuple[str, int, str | None]]:
    return {k: (w.status.value, w.points, w.reason.value if w.reason else None)
            for k, w in sorted(pipeline.rewards().items())}

