"""The story keeper (``referrals dispatcher`` runs it beside the reward book): every referral fact the worker decides
(``referrals.referrer-facts``: each version of a referral, as the referee stage sends it to the referrer stage)
and every reward change (``referrals.rewards``) into the stories of the customers they concern
(``consumers.story_store``), as group ``<app_id>.story``. At least once; the store's writes are idempotent and a
referral's older version never replaces a newer one's steps.

An erased customer's story is not written again (their pseudonym is in the erased set): the log keeps their old
facts until its retention deletes them, and a keeper that lags behind would otherwise bring the story back.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from consumers import kafka_log
from consumers.story import referral_steps, reward_step
from consumers.story_store import StoryKeys, StoryWriter, delete_all
from consumers.webhooks.patience import follow, patiently
from referrals.privacy import pseudonym
from referrals.redis_client import async_redis_client, redis_client
from referrals.settings import Settings
from schemas.derived import RewardChange
from schemas.topics import REFERRER_FACTS, REWARDS
from streams import erasure_registry, record_codec
from streams.campaigns import CampaignBook
from streams.referee_ledger import Referral
from streams.stages import Versioned

log = logging.getLogger("referrals.dispatcher")
ERASED_TTL_S = 5.0  # how long the keeper trusts its copy of the erased set


def group_id(settings: Settings) -> str:
    return f"{settings.streams.app_id}.story"


class StoryKeeper:
    def __init__(self, settings: Settings, client: aioredis.Redis, campaigns: CampaignBook):
        self.settings, self.client, self.campaigns = settings, client, campaigns
        self.secret = settings.privacy.pseudonym_key.get_secret_value()
        self.writer = StoryWriter(client, StoryKeys(settings.redis.key_prefix, settings.kafka.partitions),
                                  settings.story.max_steps)
        self._erased: set[str] = set()
        self._erased_at = float("-inf")

    async def _is_erased(self, customer_id: str) -> bool:
        if time.monotonic() - self._erased_at > ERASED_TTL_S:
            members = await self.client.smembers(erasure_registry.erased_key(self.settings.redis.key_prefix))
            self._erased = {m.decode() if isinstance(m, bytes) else m for m in members}
            self._erased_at = time.monotonic()
        return pseudonym(self.secret, customer_id) in self._erased

    async def referral(self, fact: Versioned) -> None:
        r: Referral = fact.fact
        key = pseudonym(self.secret, r.referral_id)
        for customer_id in dict.fromkeys((r.referrer_id, r.referee_id)):
            if not await self._is_erased(customer_id):
                steps = referral_steps(r, customer_id, self.campaigns, self.secret)
                await self.writer.put_referral(customer_id, key, fact.version, steps)

    async def reward(self, change: RewardChange) -> None:
        if not await self._is_erased(change.customer_id):
            step = reward_step(change, self.campaigns, self.secret)
            await self.writer.put_reward(change.customer_id, pseudonym(self.secret, change.event_id), step)

    async def handle(self, topic: str, record: ConsumerRecord) -> None:
        if topic == REWARDS.name:
            try:
                change = RewardChange.model_validate_json(record.value)
            except (ValidationError, ValueError, TypeError):
                log.error("the story keeper: %s[%d]@%d is no reward change; skipped", record.topic, record.partition,
                          record.offset)
                return
            await patiently("Redis (stories)", lambda: self.reward(change))
            return
        fact = record_codec.decode_or_unread(record.value or b"")
        if isinstance(fact, Versioned) and isinstance(fact.fact, Referral):  # ticks, clicks, profiles: no step
            await patiently("Redis (stories)", lambda: self.referral(fact))


async def keep_stories(settings: Settings, client: aioredis.Redis, campaigns: CampaignBook) -> None:
    keeper = StoryKeeper(settings, client, campaigns)
    await follow(settings, group_id(settings), "referrals-story", [REFERRER_FACTS.name, REWARDS.name], keeper.handle)


def rebuild_stories(settings: Settings, campaigns: CampaignBook) -> tuple[int, int]:
    """Every story written again from the logs the keeper reads (``referrals rebuild``): the stories deleted, then
    the referral facts and reward changes on Kafka replayed through the keeper, to where the logs ended when it
    began (the live keeper goes on beside it: its writes and these are idempotent and fenced alike). What the logs
    no longer hold (their retention) is not in the rebuilt stories. Returns (story keys deleted, records read)."""
    prefix = settings.kafka.topic_prefix
    with redis_client(settings) as client:
        deleted = delete_all(client, StoryKeys(settings.redis.key_prefix, settings.kafka.partitions))
    until = kafka_log.end_offsets(settings, [prefix + REFERRER_FACTS.name, prefix + REWARDS.name])

    async def replay() -> int:
        client = async_redis_client(settings, timeout_s=30)
        keeper, read = StoryKeeper(settings, client, campaigns), 0
        try:
            for record in kafka_log.read(settings, until):
                await keeper.handle(record.topic[len(prefix):], record)
                read += 1
        finally:
            await client.aclose()
        return read

    return deleted, asyncio.run(replay())
