"""The story and the statement (#21). A page of the longest story: one referrer with ``referrals`` referrals, each attributed and qualified by
its first order, both rewards pending then confirmed, written through the story keeper's writer into real Redis
(four steps of the referral's, two of the referrer's reward: the store keeps the newest ``max_steps`` and folds
the rest), and a year of shares and clicks in the referrer's funnel cells. Then ``pages`` pages of 50 steps at
random places of the kept story, each as the read API makes it (``story_page``: the steps, their rewards in the
reward book, the funnel cells, told in German), timed in process; the raw limit of the same run: the same
pages as a bare sorted-set range and hash read. And what the story holds in Redis, against the bound.

The statement (``statement_run``): a million reward changes through the statement in process, rows per second
next to json.loads of the same records, and its peak memory (what it keeps per reward; the rows are streamed).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from consumers.statement import Period, Statement, csv_chunks
from consumers.story import referral_steps, reward_step
from consumers.story_store import StoryKeys, StoryWriter, read_page
from consumers.story_view import story_page
from referrals.privacy import pseudonym
from referrals.redis_client import async_redis_client, redis_client
from referrals.settings import Settings, changed
from schemas.derived import RewardChange, RewardRole, RewardStatus
from streams.campaigns import load_campaigns
from streams.redis_layout import RedisLayout
from streams.referee_ledger import Referral

REFERRER = "story-influencer"
PAGE = 50


@dataclass
class StoryResult:
    referrals: int
    steps_written: int
    write_s: float
    page_ms: list[float]
    raw_page_ms: list[float]
    story_bytes: int  # MEMORY USAGE of the story's three keys

    @property
    def p99_ms(self) -> float:
        return statistics.quantiles(self.page_ms, n=100)[98]

    @property
    def raw_p99_ms(self) -> float:
        return statistics.quantiles(self.raw_page_ms, n=100)[98]


def _referral(i: int, start: datetime) -> Referral:
    at = start + timedelta(minutes=20 * i)
    return Referral(referral_id=f"default:{REFERRER}:friend-{i}", referee_id=f"friend-{i}", referrer_id=REFERRER,
                    code="CODE", campaign_id="default", method="signup_code", attributed_at=at,
                    source_event_id=f"signup-{i}", status="qualified", qualifying_order_id=f"o-{i}",
                    qualified_at=at + timedelta(minutes=3), amount=Decimal("49.90"), currency="EUR")


async def _write(settings: Settings, referrals: int, start: datetime) -> int:
    campaigns = load_campaigns(settings.streams.campaigns_file)
    secret = settings.privacy.pseudonym_key.get_secret_value()
    client = async_redis_client(settings, timeout_s=30)
    writer = StoryWriter(client, StoryKeys(settings.redis.key_prefix, settings.kafka.partitions),
                         settings.story.max_steps)
    steps = 0
    try:
        for i in range(referrals):
            r = _referral(i, start)
            written = referral_steps(r, REFERRER, campaigns, secret)
            await writer.put_referral(REFERRER, pseudonym(secret, r.referral_id), 1, written)
            steps += len(written)
            for n, (status, at) in enumerate(((RewardStatus.PENDING, r.qualified_at),
                                              (RewardStatus.CONFIRMED, r.qualified_at + timedelta(days=15))), 1):
                reward_id = f"{r.referral_id}:referrer"
                change = RewardChange(event_id=f"{reward_id}:{status.value}:{n}", occurred_at=at, reward_id=reward_id,
                                      referral_id=r.referral_id, role=RewardRole.REFERRER, customer_id=REFERRER,
                                      points=500, status=status, campaign_id="default")
                await writer.put_reward(REFERRER, pseudonym(secret, change.event_id),
                                        reward_step(change, campaigns, secret))
                steps += 1
    finally:
        await client.aclose()
    return steps


def run(base: Settings, referrals: int, pages: int) -> StoryResult:
    tag = f"bench-story-{uuid.uuid4().hex[:8]}:"
    settings = changed(base, redis={"key_prefix": tag})
    client = redis_client(settings)
    keys = StoryKeys(tag, settings.kafka.partitions)
    start = datetime.now(UTC) - timedelta(minutes=20 * referrals, days=20)  # the last confirmed in the past
    try:
        began = time.perf_counter()
        written = asyncio.run(_write(settings, referrals, start))
        write_s = time.perf_counter() - began
        cells = RedisLayout(tag, settings.kafka.partitions).cells(REFERRER)  # a year of shares and clicks
        client.hset(cells, mapping={f"default\t{(start + timedelta(days=d)).date()}\t{stage}:{channel}": 3
                                    for d in range(365) for stage in ("share", "click")
                                    for channel in ("whatsapp", "email")})
        order = keys.of(REFERRER)[1]
        scores = [int(s) for _, s in client.zrange(order, 0, -1, withscores=True)]
        rng = random.Random(7)
        page_ms, raw_ms = [], []
        for _ in range(pages):
            cursor = f"{rng.choice(scores)}:0"
            began = time.perf_counter()
            page = story_page(client, settings, REFERRER, limit=PAGE, cursor=cursor, language="de")
            page_ms.append(1000 * (time.perf_counter() - began))
            assert page is not None and page["steps"]
            began = time.perf_counter()
            read_page(client, keys, REFERRER, PAGE, cursor)
            raw_ms.append(1000 * (time.perf_counter() - began))
        size = sum(int(client.memory_usage(k) or 0) for k in keys.of(REFERRER))
        return StoryResult(referrals, written, write_s, page_ms, raw_ms, size)
    finally:
        doomed = list(client.scan_iter(match=f"{tag}*"))
        if doomed:
            client.delete(*doomed)
        client.close()


@dataclass
class StatementResult:
    rows: int
    rewards: int
    rows_per_s: float
    raw_rows_per_s: float  # the same records through json.loads alone
    peak_bytes: int  # tracemalloc's peak while the statement ran (Python's allocations; SQLite's page cache is
    # its own, bounded by ``CACHE_KIB``)
    csv_bytes: int


def _rewards_of(rows: int) -> int:
    """How many rewards ``_changes(rows)`` names."""
    made, i = 0, 0
    while made < rows:
        made += 3 if i % 5 == 0 else 2
        i += 1
    return i


def _changes(rows: int) -> Iterator[bytes]:
    """``rows`` reward changes, made as they are read: five in two (pending then confirmed; every fifth reward
    pending, held, pending again), about 2.5 changes a reward."""
    made, i = 0, 0
    at = "2026-03-02T10:00:00Z"
    while made < rows:
        reward = f"default:cust-{i % 5000}:new-{i}:referrer"
        statuses = ("pending", "held_for_review", "pending") if i % 5 == 0 else ("pending", "confirmed")
        for n, status in enumerate(statuses, 1):
            if made == rows:
                return
            reason = ',"reason":"velocity_limit"' if status == "held_for_review" else ""
            yield (f'{{"type":"reward","event_id":"{reward}:{status}:{n}","occurred_at":"{at}","reward_id":"{reward}",'
                   f'"referral_id":"{reward[:-9]}","role":"referrer","customer_id":"cust-{i % 5000}","points":500,'
                   f'"status":"{status}"{reason},"campaign_id":"default"}}').encode()
            made += 1
        i += 1


def statement_run(rows: int) -> StatementResult:
    """A statement of ``rows`` changes in process (no Kafka: what the statement itself costs), timed, then again
    under tracemalloc for its peak memory; the raw limit: the same records decoded by json.loads alone."""
    period = Period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    began = time.perf_counter()
    for value in _changes(rows):
        json.loads(value)
    raw_s = time.perf_counter() - began
    statement = Statement("default", period)
    began = time.perf_counter()
    size = sum(len(chunk) for chunk in csv_chunks(statement, _changes(rows)))
    elapsed = time.perf_counter() - began
    tracemalloc.start()
    try:
        traced = Statement("default", period)
        for _chunk in csv_chunks(traced, _changes(rows)):
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return StatementResult(statement.rows, _rewards_of(rows), rows / elapsed, rows / raw_s, peak, size)
