"""Waiting out Redis and Kafka outages: a call tried again every ``WAIT_S`` until it answers, the outage logged
once (the dispatcher's and the book keeper's lanes wait rather than skip a change)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import kafka.errors
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from redis.exceptions import RedisError

from referrals.settings import Settings

log = logging.getLogger("referrals.dispatcher")
T = TypeVar("T")
WAIT_S = 1.0  # between two tries of Redis or Kafka while they do not answer


async def patiently(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """``call`` until it answers: Redis and Kafka outages are waited out, logged once per outage."""
    failing = False
    while True:
        try:
            result = await call()
        except (RedisError, KafkaError, kafka.errors.KafkaError, OSError, asyncio.TimeoutError) as exc:
            if not failing:
                log.warning("%s failed (%s: %s); trying again every %.0f s", what, type(exc).__name__, exc, WAIT_S)
                failing = True
            await asyncio.sleep(WAIT_S)
            continue
        if failing:
            log.info("%s works again", what)
        return result


async def started_consumer(what: str, make: Callable[[], AIOKafkaConsumer]) -> AIOKafkaConsumer:
    """A consumer from ``make``, started; while Kafka does not answer (or a topic is not there yet), a new one
    every ``WAIT_S``: a consumer whose start failed is stopped, not started again."""

    async def attempt() -> AIOKafkaConsumer:
        consumer = make()
        try:
            await consumer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        return consumer

    return await patiently(what, attempt)


async def follow(settings: Settings, group_id: str, client_id: str, topics: list[str],
                 handle: Callable[[str, ConsumerRecord], Awaitable[None]]) -> None:
    """Read ``topics`` (their names without the topic prefix given to ``handle``) as consumer group ``group_id``
    from the earliest offset, each record through ``handle``, a batch's offsets committed after every record of
    it was handled: at least once, so ``handle`` must be idempotent."""
    prefix = settings.kafka.topic_prefix

    def make() -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            **settings.kafka.aiokafka_options(), group_id=group_id, client_id=client_id, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=int(settings.streams.session_timeout_s * 1000))
        consumer.subscribe([prefix + t for t in topics])
        return consumer

    consumer = await started_consumer(f"{client_id}: starting its Kafka consumer", make)
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            for tp, records in batches.items():
                for record in records:
                    await handle(tp.topic[len(prefix):], record)
            if batches:
                try:
                    await consumer.commit()
                except KafkaError as exc:  # a rebalance, Kafka away: the next batch commits (handling is idempotent)
                    log.warning("%s: commit failed (%s)", client_id, exc)
    finally:
        with contextlib.suppress(KafkaError, OSError):
            await consumer.stop()
