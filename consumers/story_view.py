"""One page of a customer's story as the read API and ``referrals explain`` show it: the kept steps in event-time
order, told in a language, with the shop's fulfilment of each reward (the reward book) and the customer's shares
and the clicks on their links per day and channel (the referrer's funnel cells in the live view) between them.

A page costs its steps (a sorted-set range and one read of each step's reward in the book) and one read of the
customer's funnel cells (one field per campaign, day, stage and channel they were active on).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import redis

from consumers.live_counters import as_text
from consumers.story import told
from consumers.story_store import StoryKeys, read_page
from consumers.story_texts import sentence
from consumers.webhooks.reward_book import fulfilment_view, read_entries_of
from referrals.privacy import pseudonym
from referrals.settings import Settings
from schemas.fields import rfc3339
from streams import erasure_registry, redis_views
from streams.counters import NO_CHANNEL

_ACTIVITY = {"share": "shares", "click": "clicks"}


def _activity(client: redis.Redis, settings: Settings, customer_id: str, lo_ms: float, hi_ms: float,
              language: str) -> list[dict[str, Any]]:
    layout = redis_views.active_layout(client, settings.redis.key_prefix, settings.kafka.partitions)
    out = []
    for name, n in client.hgetall(layout.cells(customer_id)).items():
        campaign_id, day, field = as_text(name).split("\t")
        stage, _, channel = field.partition(":")
        if stage not in _ACTIVITY or not day or not int(n):
            continue
        at = datetime.fromisoformat(day).replace(tzinfo=UTC)
        if lo_ms <= at.timestamp() * 1000 < hi_ms:
            kind = _ACTIVITY[stage]
            shown = channel if channel != NO_CHANNEL else "link"
            out.append({"at": rfc3339(at), "kind": kind, "campaign_id": campaign_id, "channel": shown,
                        "count": int(n), "text": sentence(kind, language, day=at.date(), count=int(n), channel=shown)})
    return out


def story_page(client: redis.Redis, settings: Settings, customer_id: str, *, limit: int, cursor: str | None,
               language: str) -> dict[str, Any] | None:
    """The page, or None for an erased customer. ``cursor``: from a previous page's ``next_cursor``."""
    secret = settings.privacy.pseudonym_key.get_secret_value()
    if client.sismember(erasure_registry.erased_key(settings.redis.key_prefix), pseudonym(secret, customer_id)):
        return None
    page = read_page(client, StoryKeys(settings.redis.key_prefix, settings.kafka.partitions), customer_id, limit,
                     cursor)
    rewards = [s["reward"] for s in page.steps if s["kind"] == "reward"]
    book = dict(zip(rewards, read_entries_of(client, settings.redis.key_prefix, rewards), strict=True))
    shown = []
    for step in page.steps:
        item = {k: step[k] for k in ("at", "kind", "role", "campaign_id", "friend") if k in step}
        text = told(step, language)
        if step["kind"] == "reward":
            item.update(status=step["status"], points=step["points"])
            fulfilment = fulfilment_view(book.get(step["reward"], {}))
            if fulfilment is not None:
                at = datetime.fromisoformat(fulfilment["at"])
                text += " " + sentence(f"fulfilment.{fulfilment['status']}", language, day=at.date())
                if fulfilment["take_back"]:
                    text += " " + sentence("fulfilment.take_back", language)
            item["fulfilment"] = fulfilment
        item["text"] = text
        shown.append(item)
    lo = float(cursor.split(":")[0]) if cursor else -math.inf
    hi = float(page.next_cursor.split(":")[0]) if page.next_cursor else math.inf
    shown += _activity(client, settings, customer_id, lo, hi, language)
    shown.sort(key=lambda item: datetime.fromisoformat(item["at"]))  # stable: steps of one time keep their order
    earlier = None
    if page.horizon_ms is not None:
        earlier = {"until": rfc3339(datetime.fromtimestamp(page.horizon_ms / 1000, UTC)), "steps": page.earlier}
    return {"customer_id": customer_id, "language": language, "steps": shown, "next_cursor": page.next_cursor,
            "earlier": earlier}
