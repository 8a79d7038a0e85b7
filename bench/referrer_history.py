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
  referrer (partial: the summaries of the referrals the batch changed, here one, and the
  referrer's totals brought up to date with that one: ``streams.counters.totals``), and the
  complete one it builds after a restart (every total summed again), measured at the end of
  each slice;
- ``record_bytes``: the whole record encoded as one value, which is what one changelog value was before;
- ``codec``: encoding and decoding the last slice's changelog values with the records' codec
  (``streams.record_codec``, msgspec), next to ``pickle`` on the same values (what it replaced);
- ``memory``: what the record holds in Python objects per referral at the end (tracemalloc; every fact read
  through the records' codec first, as the worker gets it), with every referral in the record and with the
  parts the worker keeps in a part store on disk out of it (``streams.referrer_parts.fold``: the referrals
  decided for good, settled once a batch is acknowledged, here every step counting as acknowledged at once; the
  ids of the shares counted; the visitors), and what the part store's work costs per fact.

The reference core (``tests/oracle``, recomputed from the history; what the worker ran
before) is timed in the same run on the first referrals, as the raw figure to read against.
"""

from __future__ import annotations

import gc
import pickle
import random
import tempfile
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from schemas.derived import ReasonCode  # noqa: F401 - the records hold its enums
from streams import counters, record_codec, referrer_parts, stages
from streams.campaigns import Campaign, CampaignBook
from streams.part_store import DiskPartStore
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
    record_bytes: list[int] = field(default_factory=list)  # the whole record encoded as one value, per slice end
    largest_value: int = 0  # the largest changelog value written
    reference_step_us: float = 0.0  # the reference core, per referral fact, over its first slice
    codec_us: dict[str, float] = field(default_factory=dict)  # encode/decode per value: msgspec, pickle

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
        # a full collection walks the whole heap (about 90 ms at 20,000 referrals' worth of objects) and falls into
        # some slices and not others: collected here, outside the timing, so that the slices compare the stage's
        # own work (the real worker's run, ``bench.influencer_bench``, includes every collection)
        gc.collect()
        began = time.perf_counter()
        largest = 0
        written: list[Any] = []
        for stepped, entries in through_stage(record, (f for g in groups[start:start + SLICE] for f in g), campaigns):
            record = stepped
            for _key, value in entries:
                largest = max(largest, len(record_codec.encode(value)) if value is not None else 0)
                if value is not None:
                    written.append(value)
            events += 1
        result.step_us.append((time.perf_counter() - began) / events * 1e6)
        result.largest_value = max(result.largest_value, largest)
        last = max(record.core.referrals)
        began = time.perf_counter()
        counters.snapshot(layout, REFERRER, record)  # complete: the totals summed again from every referral
        result.complete_snapshot_ms.append((time.perf_counter() - began) * 1e3)
        # partial, as a batch that changed one referral and counted one share writes it (the complete one just
        # before took what the totals gathered: this one takes one referral's and one cell's)
        cells = {max(record.counted.values(), key=lambda cell: cell[3])} if record.counted else set()
        began = time.perf_counter()
        counters.snapshot(layout, REFERRER, record, {last}, cells)
        result.snapshot_ms.append((time.perf_counter() - began) * 1e3)
        result.record_bytes.append(len(record_codec.encode(record)))
    result.reference_step_us = reference(groups[:reference_referrals], campaigns)
    result.codec_us = codec(written)
    return result


def codec(values: list[Any]) -> dict[str, float]:
    """µs per value to encode and to decode ``values`` with the records' codec, and with pickle."""
    out: dict[str, float] = {}
    for name, dumps, loads in (("msgspec", record_codec.encode, record_codec.decode),
                               ("pickle", pickle.dumps, pickle.loads)):
        began = time.perf_counter()
        encoded = [dumps(v) for v in values]
        out[f"{name} encode"] = (time.perf_counter() - began) / len(values) * 1e6
        began = time.perf_counter()
        for data in encoded:
            loads(data)
        out[f"{name} decode"] = (time.perf_counter() - began) / len(values) * 1e6
        out[f"{name} bytes"] = sum(map(len, encoded)) / len(values)
    return out


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


@dataclass
class MemoryResult:
    referrals: int
    held: float  # bytes of Python objects per referral, every referral in the record
    settled: float  # the same, with what the worker keeps in its part store out of it (``referrer_parts.fold``:
    # the referrals decided for good, settled; the ids of the shares counted; the visitors)
    settled_referrals: int  # how many of them were settled at the end
    store_us: float  # the part store's work per fact: put back what the step reads, fold out after it
    record_bytes: tuple[int, int] = (0, 0)  # the record encoded whole (what eviction to disk writes): all, settled
    decode_ms: tuple[float, float] = (0.0, 0.0)  # and decoded (what reading it back costs)


def _build(groups: list[list[object]], campaigns: CampaignBook, store: DiskPartStore | None
           ) -> tuple[stages.ReferrerRecord, float]:
    """The record after ``groups``, every step taken as acknowledged at once; with ``store``, the referrals
    decided for good settled into it after each step (``referrer_parts.fold``). Returns the seconds folding took."""
    record = stages.ReferrerRecord()
    folding = 0.0
    for group in groups:
        for fact in group:
            if store is not None:  # what the step reads back from the store first, as the stage runner does
                began = time.perf_counter()
                referrer_parts.recall_for(record, REFERRER, fact, store, stages.DEDUP_HORIZON_DAYS, campaigns)
                folding += time.perf_counter() - began
            step = stages.referrer_step(record, REFERRER, fact, campaigns)
            record = step.record
            stages.note_changed(record, step.parts)
            if store is not None:
                began = time.perf_counter()
                referrer_parts.fold(record, REFERRER, store, acked=record.seq)
                folding += time.perf_counter() - began
    return record, folding


def memory(referrals: int) -> MemoryResult:
    """The record's Python objects per referral after ``referrals``, with and without settling (tracemalloc, which
    slows every allocation: what settling costs is timed in a run of its own)."""
    campaigns = book()
    out: dict[bool, tuple[float, int, int, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        timed = DiskPartStore(Path(scratch) / "timed")
        timed_groups = [[record_codec.decode(record_codec.encode(f)) for f in g] for g in facts(referrals)]
        record, folding = _build(timed_groups, campaigns, timed)
        store_us = folding / sum(len(g) for g in timed_groups) * 1e6
        del timed_groups
        timed.close()
        del record
        for settle in (False, True):
            groups = [[record_codec.decode(record_codec.encode(f)) for f in g] for g in facts(referrals)]
            store = DiskPartStore(Path(scratch) / f"parts-{settle}") if settle else None
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            record, _ = _build(groups, campaigns, store)
            del groups
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            encoded = record_codec.encode(record)
            began = time.perf_counter()
            record_codec.decode(encoded)
            settled = len(store.ids(REFERRER, "r")) if store is not None else 0
            out[settle] = (held / referrals, settled, len(encoded),
                           (time.perf_counter() - began) * 1e3)
            if store is not None:
                store.close()
            del record
    return MemoryResult(referrals, out[False][0], out[True][0], out[True][1], store_us,
                        (out[False][2], out[True][2]), (out[False][3], out[True][3]))


@dataclass
class LookupResult:
    keys: tuple[int, ...]  # ids in the store when each figure was taken
    missing_us: tuple[float, ...]  # a lookup of an id not in the store (a new event's), per id
    stored_us: tuple[float, ...]  # keeping one id (``referrer_parts.recall``'s get that misses, ``fold``'s two puts)


def store_lookups(ids: int, referrers: int = 10_000, sample: int = 20_000) -> LookupResult:
    """What a counted id costs the part store as it fills (``streams.part_store``, on disk, in the worker's
    RocksDB options): ``ids`` new ids kept under random referrers, a tenth at a time; after each tenth, the time
    of ``sample`` lookups of ids not in it (what every new share or click asks first). Flat means the store's
    index and filters stay in the cache however many keys it holds."""
    rnd = random.Random(7)
    keys, missing, stored = [], [], []
    record = stages.ReferrerRecord()  # each id counted in it, then folded out of it, as the stage runner does
    with tempfile.TemporaryDirectory() as scratch:
        store = DiskPartStore(Path(scratch) / "lookups")
        try:
            for tenth in range(10):
                cell = ("click", "default", "sms", f"2026-10-{1 + tenth:02d}")
                began = time.perf_counter()
                for _ in range(ids // 10):
                    referrer, event_id = f"r{rnd.randrange(referrers)}", f"click:{rnd.getrandbits(128):032x}"
                    referrer_parts.recall(record, referrer, event_id, store)  # a new one: not there
                    record.counted[event_id] = cell
                    referrer_parts.fold(record, referrer, store)
                stored.append((time.perf_counter() - began) / (ids // 10) * 1e6)
                began = time.perf_counter()
                for _ in range(sample):
                    store.get(f"r{rnd.randrange(referrers)}", stages.counted_part(f"click:{rnd.getrandbits(128):032x}"))
                missing.append((time.perf_counter() - began) / sample * 1e6)
                keys.append((tenth + 1) * (ids // 10))
        finally:
            store.close()
    return LookupResult(tuple(keys), tuple(missing), tuple(stored))
