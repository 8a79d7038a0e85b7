"""The events a pipeline benchmark runs on: simulated traffic (``producers.simulator``) as Kafka records.

A workload is built once per size and reused by every run of it; each run produces it to topics
of its own (``BenchRun``) and registers the simulated referrers' codes under Redis keys of its own.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from kafka import KafkaProducer

from producers.simulate import backdated_simulation, register_codes
from producers.simulator import Simulation, SimulationConfig
from referrals.settings import Settings, changed
from schemas.parsing import parse_event
from schemas.records import Record, inbound_record
from streams.topology import prepare_topics

SEED = 6


@dataclass
class Workload:
    customers: int
    records: list[Record]
    simulation: Simulation
    shares: Counter = field(default_factory=Counter)  # distinct share events by channel: the funnel's share counts
    build_s: float = 0.0

    @property
    def events(self) -> int:
        return len(self.records)

    def by_type(self) -> dict[str, int]:
        return dict(Counter(r.topic.rsplit(".", 1)[-1] for r in self.records))


def simulated(events: int, customers: int, *, seed: int = SEED, now: datetime | None = None
              ) -> tuple[Simulation, Iterator[dict]]:
    """The simulation of a workload and its first ``events`` raw events, over about the last 40 days (old enough
    that some holds have ended), the first ``customers`` of them the base's signups; none later than a minute
    before ``now``. What ``build`` makes records of, and what ``bench.record_census`` steps in process."""
    now = now or datetime.now(UTC)
    simulation = backdated_simulation(SimulationConfig(customers=customers), seed=seed, count=events, days=40,
                                      now=now)
    horizon = now - timedelta(minutes=1)

    def raw_events() -> Iterator[dict]:
        for n, (at, raw) in enumerate(simulation.events()):
            if n >= events or simulation.start + timedelta(seconds=at) > horizon:
                return
            yield raw

    return simulation, raw_events()


def build(events: int, customers: int, *, seed: int = SEED, now: datetime | None = None) -> Workload:
    """``events`` simulated events as Kafka records (``simulated``)."""
    started = time.perf_counter()
    simulation, raw_events = simulated(events, customers, seed=seed, now=now)
    records: list[Record] = []
    shares: Counter = Counter()
    seen: set[str] = set()
    for raw in raw_events:
        event = parse_event(raw)
        records.append(inbound_record(event, "bench"))
        if raw["type"] == "share" and raw["event_id"] not in seen:
            seen.add(raw["event_id"])
            shares[f"share:{raw['channel']}"] += 1
    return Workload(customers, records, simulation, shares, time.perf_counter() - started)


@dataclass
class BenchRun:
    """One run's own names: topics, consumer group (the Faust app id), Redis keys."""

    settings: Settings
    run_id: str

    @classmethod
    def new(cls, base: Settings, label: str, **streams: object) -> BenchRun:
        tag = uuid.uuid4().hex[:6]
        run_id = f"{label}-{tag}"
        settings = changed(
            base, kafka={"topic_prefix": f"bench-{run_id}."},
            # short, as production's "rp:": key names are part of the bytes per referrer measured
            redis={"key_prefix": f"b{tag}:"},
            streams={"app_id": f"bench-{run_id}", **streams})
        return cls(settings, run_id)

    def prepare(self, workload: Workload) -> None:
        """Topics created, the simulated referrers' codes registered."""
        prepare_topics(self.settings)
        register_codes(self.settings, workload.simulation)

    def produce(self, records: list[Record]) -> float:
        """Every record on its topic (this run's prefix), acknowledged; returns records/s."""
        prefix = self.settings.kafka.topic_prefix
        producer = KafkaProducer(**self.settings.kafka.client_options(), acks="all", linger_ms=20,
                                 batch_size=256 * 1024)
        try:
            started = time.perf_counter()
            for r in records:
                producer.send(prefix + r.topic, key=r.key, value=r.value, headers=r.headers)
            producer.flush()
            return len(records) / (time.perf_counter() - started)
        finally:
            producer.close()


def chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
