"""The reward book's keeper (``referrals dispatcher`` runs it beside the endpoints' lanes): it reads every reward
change from ``referrals.rewards`` and every fulfilment from ``referrals.fulfilments`` (group
``<app_id>.reward-book``) into the book (``consumers.webhooks.reward_book``), whatever the endpoints subscribed
to. At least once: a batch's offsets are committed after the book has it, and the book's writes are idempotent.
A record that is no change or fulfilment is skipped, logged (the dispatcher's metric
``referral_webhook_unreadable_total``)."""

from __future__ import annotations

import functools
import logging

from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from consumers.webhooks import metrics
from consumers.webhooks.patience import follow, patiently
from consumers.webhooks.reward_book import RewardBook
from referrals.settings import Settings
from schemas.derived import RewardChange
from schemas.fulfilment import Fulfilment
from schemas.topics import FULFILMENTS, REWARDS

log = logging.getLogger("referrals.dispatcher")


def group_id(settings: Settings) -> str:
    return f"{settings.streams.app_id}.reward-book"


async def keep_book(settings: Settings, book: RewardBook) -> None:
    async def handle(topic: str, record: ConsumerRecord) -> None:
        try:
            if topic == REWARDS.name:
                write = functools.partial(book.apply_change, RewardChange.model_validate_json(record.value),
                                          record.offset)
            else:
                write = functools.partial(book.apply_fulfilment, Fulfilment.model_validate_json(record.value))
        except (ValidationError, ValueError, TypeError):
            metrics.SKIPPED.labels(topic).inc()
            log.error("the reward book: %s[%d]@%d is not of its topic's contract; skipped", record.topic,
                      record.partition, record.offset)
            return
        await patiently("Redis (reward book)", write)

    await follow(settings, group_id(settings), "referrals-reward-book", [REWARDS.name, FULFILMENTS.name], handle)
