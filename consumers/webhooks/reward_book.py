"""The reward book: every reward's latest status and the shop's fulfilment of it, in Redis, for the fulfilment
call (``consumers.webhooks.fulfilment_api``: is there such a reward, may it be fulfilled?) and the read API
(what the shop said, and whether a fulfilled reward was revoked: take it back).

Kept by ``referrals dispatcher``: its book keeper reads ``referrals.rewards`` and ``referrals.fulfilments``, and
each endpoint's lane writes a reward's change to the book before it POSTs it, so a shop never hears of a
reward the book does not know. Writes are idempotent and fenced, so the order they come in does not matter: a
reward change counts if its offset on the rewards topic is past the one the book has (a reward's changes are in
one partition, in order); a fulfilment if it is not older (the gateway's clock) than the one the book has.

    <prefix>{fl}:reward:<pseudonym of the reward id>   hash  status, offset, points, role, campaign_id,
        changed_at; f_status, f_reference, f_note, f_at, f_event; take_back (1: revoked after it was fulfilled)

One hash per reward, of fixed size. The key is a pseudonym (``referrals.privacy``) and the hash holds no
customer id: a reward id names its referrer and referee, and an erased customer's rewards stay unlinkable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
import redis.asyncio as aioredis

from consumers.live_counters import as_text
from referrals.privacy import pseudonym
from schemas.derived import RewardChange, RewardStatus
from schemas.fields import rfc3339
from schemas.fulfilment import Fulfilment

Entry = dict[str, str]


def _take_back(entry: Entry) -> Entry:
    if entry.get("status") == RewardStatus.REVOKED.value and entry.get("f_status") == "fulfilled":
        entry["take_back"] = "1"
    else:
        entry.pop("take_back", None)
    return entry


def with_change(entry: Mapping[str, str], change: RewardChange, offset: int) -> Entry | None:
    """The entry with the reward change at ``offset`` of the rewards topic; None if it has that one or a later."""
    if "offset" in entry and int(entry["offset"]) >= offset:
        return None
    return _take_back({**entry, "status": change.status.value, "offset": str(offset), "points": str(change.points),
                       "role": change.role.value, "campaign_id": change.campaign_id or "",
                       "changed_at": change.occurred_at.isoformat()})


def with_fulfilment(entry: Mapping[str, str], fulfilment: Fulfilment) -> Entry | None:
    """The entry with the shop's fulfilment; None if it has this one, or a later one."""
    at = fulfilment.occurred_at.timestamp()
    if entry.get("f_event") == fulfilment.event_id or ("f_at" in entry and float(entry["f_at"]) > at):
        return None
    return _take_back({**entry, "f_status": fulfilment.status, "f_reference": fulfilment.reference or "",
                       "f_note": fulfilment.note or "", "f_at": repr(at), "f_event": fulfilment.event_id})


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    rule: str
    message: str


def refusal(entry: Mapping[str, str]) -> Refusal | None:
    """Why a reward in this state cannot be fulfilled; None if it can (pending or confirmed)."""
    status = entry.get("status")
    if status is None:
        return Refusal(404, "unknown_reward", "no reward with this id (yet): the id is the reward_id of a "
                       "webhook; a reward is known here before its webhook is sent")
    if status == RewardStatus.REVOKED.value:
        return Refusal(409, "reward_revoked", "the reward was revoked; there is nothing to fulfil")
    if status == RewardStatus.CAPPED.value:
        return Refusal(409, "reward_capped", "the reward is over the referrer's cap and carries no points")
    if status == RewardStatus.HELD_FOR_REVIEW.value:
        return Refusal(409, "reward_held_for_review", "the reward is held for review; fulfil it once it is pending "
                       "or confirmed")
    return None


def fulfilment_view(entry: Mapping[str, str]) -> dict[str, object] | None:
    """What the read API shows of the shop's fulfilment; None while there is none."""
    if not entry.get("f_status"):
        return None
    return {"status": entry["f_status"], "reference": entry.get("f_reference") or None,
            "note": entry.get("f_note") or None, "at": rfc3339(datetime.fromtimestamp(float(entry["f_at"]), UTC)),
            "take_back": entry.get("take_back") == "1"}


def entry_key(prefix: str, reward_pseudonym: str) -> str:
    """The book's key of a reward, by the pseudonym of its id (what a story step names it by)."""
    return f"{prefix}{{fl}}:reward:{reward_pseudonym}"


def book_key(prefix: str, secret: str, reward_id: str) -> str:
    return entry_key(prefix, pseudonym(secret, reward_id))


def _text(raw: Mapping) -> Entry:
    return {as_text(k): as_text(v) for k, v in raw.items()}


class RewardBook:
    """The book on an asyncio Redis client (the dispatcher's)."""

    def __init__(self, client: aioredis.Redis, prefix: str, secret: str):
        self.client, self.prefix, self.secret = client, prefix, secret

    async def _update(self, reward_id: str, step) -> None:
        """Read, change and write one entry atomically (optimistic: WATCH, and again if it changed meanwhile)."""
        key = book_key(self.prefix, self.secret, reward_id)
        async with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    new = step(_text(await pipe.hgetall(key)))
                    if new is None:
                        await pipe.unwatch()
                        return
                    pipe.multi()
                    pipe.delete(key)
                    pipe.hset(key, mapping=new)
                    await pipe.execute()
                    return
                except redis.WatchError:
                    continue

    async def apply_change(self, change: RewardChange, offset: int) -> None:
        await self._update(change.reward_id, lambda entry: with_change(entry, change, offset))

    async def apply_fulfilment(self, fulfilment: Fulfilment) -> None:
        await self._update(fulfilment.reward_id, lambda entry: with_fulfilment(entry, fulfilment))


def read_entries(client: redis.Redis, prefix: str, secret: str, reward_ids: list[str]) -> list[Entry]:
    """The book's entries of ``reward_ids`` ({} for one it does not know), in one round trip (the gateway's and
    the read API's synchronous client)."""
    return read_entries_of(client, prefix, [pseudonym(secret, reward_id) for reward_id in reward_ids])


def read_entries_of(client: redis.Redis, prefix: str, reward_pseudonyms: list[str]) -> list[Entry]:
    """``read_entries`` by the pseudonyms of the reward ids (what a story step names a reward by)."""
    pipe = client.pipeline(transaction=False)
    for reward in reward_pseudonyms:
        pipe.hgetall(entry_key(prefix, reward))
    return [_text(raw) for raw in pipe.execute()] if reward_pseudonyms else []
