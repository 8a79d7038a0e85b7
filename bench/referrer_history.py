"""One referrer's history, in process: what its next event costs as it grows (#17).

An influencer gains ``referrals`` referrals spread over a year, in event-time order: each a
referral fact as the referee stage sends it (attributed, then qualified by a 49.90 EUR order,
each a fact of its own), one share, and a clock tick per simulated day. Every fact goes
through the referrer stage as the worker runs it (``streams.stages.referrer_step``: the
decisions, the dedup, the bookkeeping of the counters). Timed per slice of 1,000 referrals:

- ``step``: the stage's work per event and the encoding of the changelog entries it changed
  (``streams.referrer_parts``, with the table's codec), as the worker does them (what #17
  made independent of the history; the first and the last slice are compared), and the
  largest value written, against Kafka's default message limit (1 MiB);
- ``snapshot``: the Redis counter snapshot the worker builds once per batch for a changed
  referrer (partial: the summaries of the referrals the batch changed, here one, with the
  referrer's totals), and the complete one it builds after a restart, measured at the end of
  each slice: the totals are still summed over the history;
- ``record_bytes``: the whole record pickled, which is what one changelog value was before.

The reference core (``tests/oracle``, recomputed from the history; what the worker ran
before) is timed in the same run on the first referrals, as the raw figure to read against.
"""

from __future__ import annotations

import gc
import pickle
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from schemas.derived import ReasonCode  # noqa: F401 - the records hold its enums
from faust.serializers import codecs

from streams import counters, referrer_parts, stages
from streams.pickling import RECORDS_CODEC
from streams.campaigns import Campaign, CampaignBook
from streams.redis_layout import RedisLayout
from streams.referee_ledger import Referral
from streams.referrer_rewards import Tick

START = datetime(2025, 1, 1, tzinfo=UTC)
SLICE = 1_000
REFERRER = "influencer"


def book() -> CampaignBook:
    return CampaignBook(campaign=[Campaign(id="default", starts_at=START - timedelta(days=1),
                                           landing_url="https://shop.example/r")])


def facts(referrals: int) -> list[list[object]]:
    """Per referral, the facts the referrer stage gets for it, in event-time order (a tick per new day)."""
    per_day = referrals / 365
    out: list[list[object]] = []
    last_day = -1
    for i in range(referrals):
        at = START + timedelta(days=i / per_day)
        day = int(i / per_day)
        referee = f"friend-{i}"
        rid = f"default:{REFERRER}:{referee}"
        base = dict(referral_id=rid, referee_id=referee, referrer_id=REFERRER, code="INFLUENCER",
                    campaign_id="default", method="signup_code", attributed_at=at, source_event_id=f"s{i}",
                    referee_device_id=f"device-{i}", channel=None)
        attributed = Referral(**base, status="attributed")
        qualified = Referral(**base, status="qualified", qualifying_order_id=f"o{i}",
                             qualified_at=at + timedelta(hours=2), amount=Decimal("49.90"), currency="EUR")
        group: list[object] = [stages.Share(f"share-{i}", "default", "whatsapp", at - timedelta(minutes=5)),
                               stages.Versioned(f"referral:{rid}", 1, attributed, at),
                               stages.Versioned(f"referral:{rid}", 2, qualified, at)]
        if day != last_day:
            group.insert(0, Tick(START + timedelta(days=day)))
            last_day = day
        out.append(group)
    return out


def through_stage(record: stages.ReferrerRecord, facts: Iterable[object], campaigns: CampaignBook
                  ) -> Iterator[tuple[stages.ReferrerRecord, list[tuple[bytes, Any]]]]:
    """Each fact through the referrer stage as the worker steps it: the record after it, and the changelog
    entries the worker writes for it (``streams.referrer_parts``)."""
    for fact in facts:
        before = record
        step = stages.referrer_step(record, REFERRER, fact, campaigns)
        record = step.record
        yield record, referrer_parts.entries(record, REFERRER, step.parts, before) if step.changed else []


@dataclass
class HistoryResult:
    referrals: int
    step_us: list[float] = field(default_factory=list)  # per event, per slice
    snapshot_ms: list[float] = field(default_factory=list)  # a partial snapshot (one referral), per slice end
    complete_snapshot_ms: list[float] = field(default_factory=list)  # a complete one, per slice end
    record_bytes: list[int] = field(default_factory=list)  # the whole record pickled, per slice end
    largest_value: int = 0  # the largest changelog value written
    reference_step_us: float = 0.0  # the reference core, per referral fact, over its first slice

    @property
    def growth(self) -> float:
        """Cost per event of the last slice over the first."""
        return self.step_us[-1] / self.step_us[0]


def run(referrals: int, reference_referrals: int = SLICE) -> HistoryResult:
    campaigns = book()
    layout = RedisLayout("rp:", 12)
    result = HistoryResult(referrals)
    record = stages.ReferrerRecord()
    groups = facts(referrals)
    gc.collect()
    for start in range(0, referrals, SLICE):
        events = 0
        began = time.perf_counter()
        largest = 0
        for stepped, entries in through_stage(record, (f for g in groups[start:start + SLICE] for f in g), campaigns):
            record = stepped
            for _key, value in entries:
                largest = max(largest, len(codecs.dumps(RECORDS_CODEC, value)) if value is not None else 0)
            events += 1
        result.step_us.append((time.perf_counter() - began) / events * 1e6)
        result.largest_value = max(result.largest_value, largest)
        last = max(record.core.referrals)
        began = time.perf_counter()
        counters.snapshot(layout, REFERRER, record, {last})
        result.snapshot_ms.append((time.perf_counter() - began) * 1e3)
        began = time.perf_counter()
        counters.snapshot(layout, REFERRER, record)
        result.complete_snapshot_ms.append((time.perf_counter() - began) * 1e3)
        result.record_bytes.append(len(pickle.dumps(record)))
    result.reference_step_us = reference(groups[:reference_referrals], campaigns)
    return result


def reference(groups: list[list[object]], campaigns: CampaignBook) -> float:
    """The reference core (recomputed from the history), per referral or tick fact, over ``groups``."""
    from tests.oracle import referrer_rewards as oracle  # the test oracle: only the bench times it

    state = oracle.ReferrerState()
    n = 0
    began = time.perf_counter()
    for group in groups:
        for fact in group:
            if isinstance(fact, stages.Versioned):
                fact = fact.fact
            elif not isinstance(fact, Tick):
                continue
            state, _ = oracle.step(state, REFERRER, fact, campaigns)
            n += 1
    return (time.perf_counter() - began) / n * 1e6
