"""``referrals dispatcher``: every reward and attribution change POSTed to each endpoint that subscribed to it.

Per endpoint one Kafka consumer (group ``<app_id>.webhooks.<endpoint>``) reads ``referrals.rewards`` and
``referrals.attributions``; so one slow or dead endpoint holds back no other. Within an endpoint each
partition is a lane that takes its changes in the partition's order and sends each at once, unless an earlier
change of the same reward (ordering key) is being retried: then it waits behind that one. All changes of a
reward are in one partition, so they arrive in their order, and a reward being retried holds back no other
(up to ``lane_retrying`` rewards retried apart per lane; past that, a failing change is retried in line). A lane commits up to its oldest change not
yet settled: delivered (2xx), or dead (on the dead-letter topic, acknowledged). The retry schedule of each
change being retried is in Redis (``consumers.webhooks.store``), so a restart or a SIGKILL resumes it where it
was, and the changes settled after the oldest open one are sent again (at least once; receivers drop repeats
by ``webhook-id``).

While Redis or Kafka does not answer, the lanes wait for them (the schedule and the dead-letter topic live
there) and nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from consumers.story_keeper import keep_stories
from consumers.webhooks import http_post, metrics
from consumers.webhooks.book_keeper import keep_book
from consumers.webhooks.patience import patiently, started_consumer
from consumers.webhooks.retry import Answer, Attempts, Dead, Delivered, Policy, RetryAt, next_step
from consumers.webhooks.reward_book import RewardBook
from consumers.webhooks.store import DeliveryStore
from referrals.kafka_admin import ensure_topics
from referrals.redis_client import async_redis_client
from referrals.settings import Settings, WebhookEndpoint
from schemas.derived import Attribution, RewardChange
from schemas.topics import ATTRIBUTIONS, FULFILMENTS, REWARDS, WEBHOOK_DEADLETTER
from schemas.webhooks import Change, DeadDelivery, attribution_change, reward_change
from streams.campaigns import CampaignBook

log = logging.getLogger("referrals.dispatcher")
REDIS_CONNECTIONS = 32  # the dispatcher's connections to Redis; its tasks wait for a free one


def decoded(topic: str, value: bytes | None) -> RewardChange | Attribution | None:
    """What a record of the reward or attribution topic carries (``topic`` without its prefix); None if it is no
    change of that topic's contract."""
    if value is None:
        return None
    try:
        if topic == REWARDS.name:
            return RewardChange.model_validate_json(value)
        if topic == ATTRIBUTIONS.name:
            return Attribution.model_validate_json(value)
    except ValidationError:
        return None
    return None


def payload(model: RewardChange | Attribution) -> Change:
    return reward_change(model) if isinstance(model, RewardChange) else attribution_change(model)


def change_of(topic: str, value: bytes | None) -> Change | None:
    """The change as an endpoint receives it; None if the record is none."""
    model = decoded(topic, value)
    return None if model is None else payload(model)


def subscribed(endpoint: WebhookEndpoint, change: Change) -> bool:
    if change.type not in endpoint.types:
        return False
    return endpoint.campaigns is None or change.campaign_id in endpoint.campaigns


def group_id(settings: Settings, endpoint: str) -> str:
    return f"{settings.streams.app_id}.webhooks.{endpoint}"


def _finished(tasks: set[asyncio.Task], task: asyncio.Task) -> None:
    """A task done: out of ``tasks``, unless it failed (the consumer's loop finds it there and stops on it)."""
    if task.cancelled() or task.exception() is None:
        tasks.discard(task)


@dataclass
class Lane:
    """One partition of one endpoint: the records read and not yet taken, the changes taken and not yet settled
    (``open``: offset -> the record's timestamp), and the changes waiting behind a delivery being retried, per
    ordering key (``parked``: the one being retried first)."""

    records: deque = field(default_factory=deque)
    open: dict[int, int] = field(default_factory=dict)
    parked: dict[str, deque] = field(default_factory=dict)
    next_offset: int | None = None  # after the last record taken
    committed: int | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    retries: set[asyncio.Task] = field(default_factory=set)  # one per parked ordering key

    @property
    def settled(self) -> int | None:
        """The offset to commit: the oldest change not settled, or after the last one taken."""
        return min(self.open) if self.open else self.next_offset

    def close(self, offset: int) -> None:
        self.open.pop(offset, None)

    def tasks(self) -> list[asyncio.Task]:
        return [t for t in (self.task, *self.retries) if t is not None]


class EndpointDispatcher(ConsumerRebalanceListener):
    """One endpoint: its consumer, its lanes, its HTTP client."""

    def __init__(self, settings: Settings, endpoint: WebhookEndpoint, producer: AIOKafkaProducer,
                 redis: aioredis.Redis, book: RewardBook, clock: Callable[[], float] = time.time,
                 jitter: Callable[[], float] = random.random):
        self.settings = settings
        self.book = book
        self.endpoint = endpoint
        self.keys = endpoint.keys()
        self.producer = producer
        self.store = DeliveryStore(redis, settings.redis.key_prefix, endpoint.name)
        self.clock = clock
        self.jitter = jitter
        hooks = settings.webhooks
        self.policy = Policy(hooks.retry_for_s, hooks.backoff_first_s, hooks.backoff_max_s)
        self.prefix = settings.kafka.topic_prefix
        self.lanes: dict[TopicPartition, Lane] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.http: httpx.AsyncClient | None = None
        self.failing_since: float | None = None  # the first failed attempt since the last delivery
        metrics.OLDEST.labels(endpoint.name).set_function(self.oldest_undelivered_s)
        metrics.FAILING.labels(endpoint.name).set_function(
            lambda: 0.0 if self.failing_since is None else max(0.0, self.clock() - self.failing_since))

    def oldest_undelivered_s(self) -> float:
        """Read by the metrics server's thread while the event loop changes the lanes: copies first, and a lane
        emptied meanwhile is passed over."""
        now_ms = self.clock() * 1000
        heads = []
        for lane in list(self.lanes.values()):
            heads.extend(list(lane.open.values()))
            try:
                heads.append(lane.records[0].timestamp)
            except IndexError:
                continue
        return max(0.0, (now_ms - min(heads)) / 1000) if heads else 0.0

    # --- the consumer -------------------------------------------------------------------------------------

    async def run(self) -> None:
        kafka = self.settings.kafka

        def make() -> AIOKafkaConsumer:
            consumer = AIOKafkaConsumer(
                **kafka.aiokafka_options(), group_id=group_id(self.settings, self.endpoint.name),
                client_id=f"referrals-dispatcher-{self.endpoint.name}", enable_auto_commit=False,
                auto_offset_reset="earliest", session_timeout_ms=int(self.settings.streams.session_timeout_s * 1000))
            consumer.subscribe([self.prefix + REWARDS.name, self.prefix + ATTRIBUTIONS.name], listener=self)
            return consumer

        self.consumer = await started_consumer(f"endpoint {self.endpoint.name}: starting its Kafka consumer", make)
        self.http = http_post.client(self.settings.webhooks.timeout_s)
        try:
            await self._consume()
        finally:
            await self._stop_lanes(list(self.lanes))
            with contextlib.suppress(KafkaError, OSError):
                await self.consumer.stop()
            await self.http.aclose()

    async def _consume(self) -> None:
        buffer = self.settings.webhooks.lane_buffer
        assert self.consumer is not None
        while True:
            batches = await self.consumer.getmany(timeout_ms=200, max_records=buffer)
            for lane in self.lanes.values():  # a lane that failed is a bug: stop, do not skip its changes
                for task in lane.tasks():
                    if task.done() and not task.cancelled():
                        task.result()
            for tp, records in batches.items():
                lane = self.lanes.get(tp)
                if lane is None:
                    lane = self.lanes[tp] = Lane()
                    lane.task = asyncio.create_task(self._drain(tp, lane), name=f"lane {self.endpoint.name} {tp}")
                lane.records.extend(records)
                lane.wake.set()
            paused = self.consumer.paused()
            for tp, lane in self.lanes.items():
                if tp not in paused and len(lane.records) >= buffer:
                    self.consumer.pause(tp)
                elif tp in paused and len(lane.records) < buffer // 2 + 1:
                    self.consumer.resume(tp)
            await self._commit(list(self.lanes))

    async def _commit(self, tps: list[TopicPartition]) -> None:
        assert self.consumer is not None
        offsets = {}
        for tp in tps:
            lane = self.lanes.get(tp)
            if lane is not None and lane.settled is not None and lane.settled != lane.committed:
                offsets[tp] = lane.settled
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance under way, Kafka away: the next round commits again
            log.warning("endpoint %s: commit failed (%s); retrying with the next round", self.endpoint.name, exc)
            return
        for tp, offset in offsets.items():
            self.lanes[tp].committed = offset

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._stop_lanes([tp for tp in revoked if tp in self.lanes])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        pass

    async def _stop_lanes(self, tps: list[TopicPartition]) -> None:
        """Stop the lanes (a change being sent is sent again by the partition's next owner) and commit what
        they settled."""
        tasks = [task for tp in tps for task in self.lanes[tp].tasks()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.consumer is not None:
            with contextlib.suppress(KafkaError, OSError, AssertionError):
                await self._commit(tps)
        for tp in tps:
            self.lanes.pop(tp, None)

    # --- a lane -------------------------------------------------------------------------------------------

    async def _drain(self, tp: TopicPartition, lane: Lane) -> None:
        """Take the lane's records in order. A change goes out at once unless an earlier change of its reward is
        being retried: then it waits behind that one, and the lane goes on with the next record. A change that
        fails is retried by a task of its own (parked) while fewer than ``lane_retrying`` rewards are; else in
        line, holding the lane: a dead endpoint is not sent more retries at a time than that bound allows."""
        limit = self.settings.webhooks.lane_retrying
        while True:
            if not lane.records:
                lane.wake.clear()
                await lane.wake.wait()
                continue
            record = lane.records.popleft()
            lane.next_offset = record.offset + 1
            taken = self._change_for_endpoint(tp, record)
            if taken is None:
                continue
            model, change = taken
            lane.open[record.offset] = record.timestamp  # before any wait: no commit may pass it while it is open
            if isinstance(model, RewardChange):  # the book knows a reward before a shop hears of it
                await patiently("Redis (reward book)",
                                functools.partial(self.book.apply_change, model, record.offset))
            key = change.ordering_key
            if key in lane.parked:
                lane.parked[key].append((record, change))
                continue
            if await self.settle(tp, record, change, park=len(lane.parked) < limit):
                lane.close(record.offset)
                continue
            lane.parked[key] = deque([(record, change)])
            task = asyncio.create_task(self._retry(tp, lane, key), name=f"retry {self.endpoint.name} {tp}")
            lane.retries.add(task)
            task.add_done_callback(functools.partial(_finished, lane.retries))

    async def _retry(self, tp: TopicPartition, lane: Lane, key: str) -> None:
        """The parked changes of one ordering key, in order: the first until it is delivered or dead, then the
        ones that waited behind it."""
        queue = lane.parked[key]
        while queue:
            record, change = queue[0]
            await self.settle(tp, record, change, park=False)
            queue.popleft()
            lane.close(record.offset)
        del lane.parked[key]

    def _change_for_endpoint(self, tp: TopicPartition, record) -> tuple[RewardChange | Attribution, Change] | None:
        """The record's change (decoded once: the model and the payload) if this endpoint subscribed to it; None
        otherwise (and for a record that is none)."""
        topic = tp.topic[len(self.prefix):]
        model = decoded(topic, record.value)
        if model is None:
            metrics.SKIPPED.labels(topic).inc()
            log.error("endpoint %s: %s[%d]@%d is no change of its topic's contract; skipped", self.endpoint.name,
                      tp.topic, tp.partition, record.offset)
            return None
        change = payload(model)
        return (model, change) if subscribed(self.endpoint, change) else None

    async def settle(self, tp: TopicPartition, record, change: Change, *, park: bool) -> bool:
        """Deliver the change to this endpoint; True once it is delivered or dead. With ``park``, False as soon as
        it must wait for a retry (its schedule is in Redis): the caller goes on and retries it apart."""
        name = self.endpoint.name
        if await patiently("Redis (dead deliveries)", lambda: self.store.is_behind_dead(change.ordering_key)):
            now = self.clock()
            await self._dead(tp, record, change, Attempts(now, 0), Answer(None), "behind_dead_delivery")
            return True
        known = await patiently("Redis (retry schedule)", lambda: self.store.attempts(change.webhook_id))
        attempts = known[0] if known else None
        if known and known[1] > self.clock():
            if park:
                return False
            await asyncio.sleep(known[1] - self.clock())
        while True:
            started = self.clock()
            assert self.http is not None
            answer = await http_post.post(self.http, self.endpoint.url, self.keys, change, now=started)
            now = self.clock()
            metrics.LATENCY.labels(name).observe(max(0.0, now - started))
            attempts = Attempts(attempts.first_at if attempts else started, (attempts.count if attempts else 0) + 1)
            step = next_step(self.policy, attempts, answer, now, self.jitter())
            if not isinstance(step, Delivered) and self.failing_since is None:
                self.failing_since = started
            if isinstance(step, Delivered):
                self.failing_since = None
                metrics.ATTEMPTS.labels(name, "delivered").inc()
                metrics.DELIVERIES.labels(name, "delivered").inc()
                if attempts.count > 1 or known:
                    await patiently("Redis (retry schedule)", lambda: self.store.forget(change.webhook_id))
                return True
            if isinstance(step, Dead):
                metrics.ATTEMPTS.labels(name, "refused" if step.cause != "retries_exhausted" else "retry").inc()
                await self._dead(tp, record, change, attempts, answer, step.cause)
                return True
            assert isinstance(step, RetryAt)
            metrics.ATTEMPTS.labels(name, "retry").inc()
            metrics.RETRIES.labels(name, step.cause).inc()
            log.info("endpoint %s: %s for %s (attempt %d); next try in %.1f s", name, step.cause, change.type,
                     attempts.count, step.at - now)
            await patiently("Redis (retry schedule)",
                            functools.partial(self.store.remember, change.webhook_id, attempts, step.at))
            if park:
                return False
            await asyncio.sleep(max(0.0, step.at - self.clock()))

    async def _dead(self, tp: TopicPartition, record, change: Change, attempts: Attempts, answer: Answer,
                    cause: str) -> None:
        dead = DeadDelivery(
            endpoint=self.endpoint.name, webhook_id=change.webhook_id, event_type=change.type,
            ordering_key=change.ordering_key, body=change.body.decode(), source_topic=tp.topic,
            source_partition=tp.partition, source_offset=record.offset, attempts=attempts.count,
            first_attempt_at=datetime.fromtimestamp(attempts.first_at, UTC),
            dead_at=datetime.fromtimestamp(self.clock(), UTC), cause=cause, last_status=answer.status,
            last_error=answer.error, last_answer=answer.excerpt)
        topic = self.prefix + WEBHOOK_DEADLETTER.name
        await patiently("Kafka (dead-letter topic)", lambda: self.producer.send_and_wait(
            topic, dead.model_dump_json().encode(), key=self.endpoint.name.encode()))
        await patiently("Redis (dead deliveries)", lambda: self.store.died(change.ordering_key, change.webhook_id))
        metrics.DELIVERIES.labels(self.endpoint.name, "dead").inc()
        metrics.DEAD.labels(self.endpoint.name, cause).inc()
        log.warning("endpoint %s: %s is a dead delivery (%s after %d attempts)", self.endpoint.name, change.type,
                    cause, attempts.count)


async def dispatch(settings: Settings, stop: asyncio.Event, campaigns: CampaignBook) -> None:
    """Run every endpoint's dispatcher, the reward book's keeper and the story keeper until ``stop`` is set."""
    endpoints = settings.webhooks.endpoints
    own_topics = [settings.kafka.topic_prefix + t.name for t in (WEBHOOK_DEADLETTER, FULFILMENTS)]
    await patiently("Kafka (creating the dead-letter and fulfilment topics)",
                    lambda: asyncio.to_thread(ensure_topics, settings, own_topics))
    producer = AIOKafkaProducer(**settings.kafka.aiokafka_options(), client_id="referrals-dispatcher",
                                acks="all", enable_idempotence=True)
    await patiently("Kafka (the dead-letter producer)", producer.start)
    redis = async_redis_client(settings, timeout_s=5.0, max_connections=REDIS_CONNECTIONS)
    book = RewardBook(redis, settings.redis.key_prefix, settings.privacy.pseudonym_key.get_secret_value())
    tasks = [asyncio.create_task(EndpointDispatcher(settings, e, producer, redis, book).run(),
                                 name=f"endpoint {e.name}") for e in endpoints]
    tasks.append(asyncio.create_task(keep_book(settings, book), name="reward book"))
    tasks.append(asyncio.create_task(keep_stories(settings, redis, campaigns), name="stories"))
    waiter = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception() is not None:
                raise task.exception()
    finally:
        for task in [waiter, *tasks]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(KafkaError, OSError):
            await producer.stop()
        await redis.aclose()
