"""What the referrer records hold in memory, field by field, as the bench's workload goes on (#17). In process.

``python -m bench census``: the pipeline section's workload (simulated events over 40 days, 10,000 customers
at the start) goes through the worker's own stage runner (``streams.stage_runner``) in one process, without
Kafka or Redis: the tables are dicts, the part store is on local disk as in the worker, a batch's counter
snapshots are built as the worker builds them (Redis is not written), and the clock ticks every 5,000 events
at the wall clock's time, as the worker's does. At chosen moments it counts, for every referrer record that
has counted a share or click or holds a referral, the bytes of the Python objects reachable from each field
(``sys.getsizeof``, each object once: what several records share, such as the interned funnel cells, is
counted before them and charged to none).

It is an instrument, not a figure of ``make bench``: it does not run the worker (no Faust, no fetched
records, no allocator's free space), and every record stays an object (the worker keeps 20,000 and reads the
rest back from disk). What it shows is which part of a record grows with its history and by how much; the
worker's RSS is the bench's (docs/performance.md).
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import workload
from referrals.settings import Settings
from schemas.parsing import parse_event
from schemas.topics import CUSTOMER_FACTS, REFERRER_FACTS, VISITOR_FACTS
from streams import interning, record_codec, stages
from streams.campaigns import load_campaigns
from streams.inbound import to_fact
from streams.part_store import DiskPartStore
from streams.redis_layout import RedisLayout
from streams.referee_ledger import CodeOwner
from streams.stage_runner import Batch, StageRunner, Tables

RECORD_FIELDS = ("versions", "counted", "activity", "reached", "withheld", "visitors", "named",
                 "settled_sums")
STATE_FIELDS = ("profile", "referrals", "rewards", "final", "changes", "settled", "settled_confirmed")
STAGE_OF = {VISITOR_FACTS.name: "visitor", CUSTOMER_FACTS.name: "customer", REFERRER_FACTS.name: "referrer"}
BATCH = 200  # events per batch, with the facts they cause
TICK_EVERY = 5_000  # events between two ticks of the clock


def reachable_bytes(obj: object, seen: set[int]) -> int:
    """The bytes of the objects reachable from ``obj`` not in ``seen`` (which takes them in); classes excluded."""
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, type):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        stack.extend(gc.get_referents(o))
    return total


@dataclass
class Census:
    events: int
    records: int  # referrer records in the table
    active: int  # of them, with a share or click counted or a referral
    live_referrals: int
    settled_referrals: int
    by_field: Counter = field(default_factory=Counter)  # bytes
    runner: Counter = field(default_factory=Counter)  # bytes the stage runner keeps per process, by what

    @property
    def total(self) -> int:
        return sum(self.by_field.values())

    def lines(self) -> list[str]:
        per = max(1, self.active)
        out = [f"after {self.events:,} events: {self.records:,} referrer records, {self.active:,} active, "
               f"{self.live_referrals:,} live referrals, {self.settled_referrals:,} settled; the active records' "
               f"objects {self.total / 2**20:.1f} MiB ({self.total / per:,.0f} bytes a record)"]
        out += [f"  {name:30s} {n / 2**20:8.2f} MiB {n / per:8,.0f} B/record" for name, n in self.by_field.most_common()]
        out += [f"  runner: {name:22s} {n / 2**20:8.2f} MiB" for name, n in self.runner.most_common()]
        return out


def census(referrers: Iterable[stages.ReferrerRecord], events: int, runner: StageRunner | None = None) -> Census:
    seen: set[int] = set()
    reachable_bytes(interning._kept, seen)  # shared by every record: charged to none
    records = list(referrers)
    active = [r for r in records if r.seq > 0 and (r.activity or r.core.referrals or r.settled_sums)]
    settled = 0 if runner is None or runner.parts is None else sum(
        len(runner.parts.ids(key.decode(), "r")) for key in runner.tables.referrers)  # their parts: in the store
    out = Census(events, len(records), len(active), sum(len(r.core.referrals) for r in active), settled)
    by = out.by_field
    for r in active:
        for name in RECORD_FIELDS:
            by[name] += reachable_bytes(getattr(r, name), seen)
        for name in STATE_FIELDS:
            by[f"core.{name}"] += reachable_bytes(getattr(r.core, name), seen)
        for name, value in r.core.__dict__.items():  # derived: indexes and totals kept while the record lives
            if name.startswith("_"):
                by[f"core.{name} (derived)"] += reachable_bytes(value, seen)
        by["the record and state objects"] += sys.getsizeof(r) + sys.getsizeof(r.core) + sys.getsizeof(r.core.__dict__)
    if runner is not None:  # what the process keeps besides the records (bounded: ``streams.recent_keys``)
        for name, value in (("touched", runner.touched), ("acknowledged", runner.acknowledged),
                            *((f"refreshed {t}", keys) for t, keys in runner.refreshed.items()),
                            ("due_at", runner.due_at), ("partition cache", runner._partition_of)):
            out.runner[name] = reachable_bytes(value, seen)
    return out


def run(events: int, at: Iterable[int], settings: Settings | None = None, customers: int = 10_000,
        echo: Callable[[str], Any] = print) -> list[Census]:
    """``events`` of the pipeline section's workload (its first ``customers`` events the base's signups) through
    the stage runner; a census after each of ``at``."""
    settings = settings or Settings()
    moments = sorted(set(at))
    simulation, raw_events = workload.simulated(events, customers)
    owners = {c.code: CodeOwner(c.customer_id, simulation.config.campaign_id) for c in simulation.customers}
    layout = RedisLayout("rp:", settings.kafka.partitions)
    out: list[Census] = []
    with tempfile.TemporaryDirectory(prefix="census-") as scratch:
        parts = DiskPartStore(Path(scratch) / "parts")
        runner = StageRunner(load_campaigns(settings.streams.campaigns_file), Tables({}, {}, {}, ("v", "c", "r")), 1,
                             horizon_days=settings.streams.dedup_horizon_days,
                             visitor_cap=settings.streams.visitor_fact_cap, parts=parts,
                             recent_days=settings.streams.recent_activity_days)
        queue: list[tuple[str, str, Any]] = []

        def batch(tick: bool = False) -> None:
            b = Batch()
            if tick:
                runner.tick(0, datetime.now(UTC), b)
            sent = 0
            while True:
                queue.extend((STAGE_OF[topic], key.decode(), record_codec.decode(value))
                             for topic, key, value, _ in b.records[sent:] if topic in STAGE_OF)
                sent = len(b.records)
                if not queue:
                    break
                stage, key, fact = queue.pop(0)
                getattr(runner, stage)(key, fact, b)
            runner.snapshots(b, layout)
            runner.done(b)

        started = time.perf_counter()
        n = 0
        for raw in raw_events:
            stage = {"click": "visitor", "share": "referrer"}.get(raw["type"], "customer")
            queue.append((stage, *to_fact(parse_event(raw), owners.get)))
            n += 1
            if n % BATCH == 0:
                batch()
            if n % TICK_EVERY == 0:
                batch(tick=True)
            if moments and n == moments[0]:
                batch()
                moments.pop(0)
                out.append(census(runner.tables.referrers.values(), n, runner))
                echo(f"{n:,} events in {time.perf_counter() - started:.0f} s")
                for line in out[-1].lines():
                    echo(line)
        parts.close()
    return out
