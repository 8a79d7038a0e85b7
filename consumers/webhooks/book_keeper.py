"""The reward book's keeper (``referrals dispatcher`` runs it beside the endpoints' lanes): it reads every reward
change from ``referrals.rewards`` and every fulfilment from ``referrals.fulfilments`` (group
``<app_id>.reward-book``) into the book (``consumers.webhooks.reward_book``), whatever the endpoints subscribed
to. At least once: a batch's offsets are committed after the book has it, and the book's writes are idempotent.
A record that is no change or fulfilment is skipped, logged (the dispatcher's metric
``referral_webhook_unreadable_total``)."""

from __future__ import annotations

import contextlib
import functools
import logging

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from consumers.webhooks import metrics
from consumers.webhooks.patience import patiently, started_consumer
from consumers.webhooks.reward_book import RewardBook
from referrals.settings import Settings
from schemas.derived import RewardChange
from schemas.fulfilment import Fulfilment
from schemas.topics import FULFILMENTS, REWARDS

log = logging.getLogger("referrals.dispatcher")


def group_id(settings: Settings) -> str:
    return f"{settings.streams.app_id}.reward-book"


async def keep_book(settings: Settings, book: RewardBook) -> None:
    prefix = settings.kafka.topic_prefix

    def make() -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            **settings.kafka.aiokafka_options(), group_id=group_id(settings), client_id="referrals-reward-book",
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=int(settings.streams.session_timeout_s * 1000))
        consumer.subscribe([prefix + REWARDS.name, prefix + FULFILMENTS.name])
        return consumer

    consumer = await started_consumer("the reward book: starting its Kafka consumer", make)
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            for tp, records in batches.items():
                topic = tp.topic[len(prefix):]
                for record in records:
                    try:
                        if topic == REWARDS.name:
                            write = functools.partial(book.apply_change, RewardChange.model_validate_json(
                                record.value), record.offset)
                        else:
                            write = functools.partial(book.apply_fulfilment,
                                                      Fulfilment.model_validate_json(record.value))
                    except (ValidationError, ValueError, TypeError):
                        metrics.SKIPPED.labels(topic).inc()
                        log.error("the reward book: %s[%d]@%d is not of its topic's contract; skipped", tp.topic,
                                  tp.partition, record.offset)
                        continue
                    await patiently("Redis (reward book)", write)
            if batches:
                try:
                    await consumer.commit()
                except KafkaError as exc:  # a rebalance, Kafka away: the next batch commits (writes are idempotent)
                    log.warning("the reward book: commit failed (%s)", exc)
    finally:
        with contextlib.suppress(KafkaError, OSError):
            await consumer.stop()
