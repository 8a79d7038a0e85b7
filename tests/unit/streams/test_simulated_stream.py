"""The pure core on the simulator's stream: the same result however the stream is delivered."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from producers.simulator import Simulation, SimulationConfig
from schemas import parse_event
from streams.referee_ledger import CodeOwner
from tests.oracle.pipeline import ReferencePipeline, rebuild_from_changes
from tests.unit.streams.story import campaigns

START = datetime(2026, 6, 1, tzinfo=UTC)


def stream(seed: int, n: int):
    sim = Simulation(SimulationConfig(customers=60, time_compression=200), seed, START, 5)
    codes = {c.code: CodeOwner(c.customer_id, "default") for c in sim.customers}
    events = [parse_event(e, now=START + timedelta(days=400)) for _, e in itertools.islice(sim.events(), n)]
    return events, codes.get


def final(events, resolve):
    p = ReferencePipeline(campaigns(velocity_limit=5), resolve)
    for e in events:
        p.feed(e)
    p.tick(START + timedelta(days=400))
    rewards = {k: (w.status, w.points) for k, w in p.rewards().items()
               if not (w.status.value == "revoked" and w.points == 0)}
    return rewards, p


def test_simulated_stream_gives_rewards_of_every_kind_and_the_log_rebuilds_them():
    events, resolve = stream(5, 6000)
    rewards, p = final(events, resolve)
    kinds = {status.value for status, _ in rewards.values()}
    assert {"confirmed"} <= kinds
    assert rebuild_from_changes(p.changes) == p.rewards()


def test_shuffled_within_the_lateness_and_duplicated_the_simulated_stream_ends_the_same():
    events, resolve = stream(6, 6000)
    expected, _ = final(events, resolve)
    rnd = random.Random(1)
    # deliver in windows of up to an hour of event time, shuffled inside, some events twice
    delivered, window = [], []
    for e in events:
        if window and e.occurred_at - window[0].occurred_at > timedelta(hours=1):
            rnd.shuffle(window)
            delivered += window
            window = []
        window.append(e)
        if rnd.random() < 0.02:
            window.append(e)
    rnd.shuffle(window)
    delivered += window
    got, _ = final(delivered, resolve)
    assert got == expected
