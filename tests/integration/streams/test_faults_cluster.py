"""Faults of a real cluster: three KRaft nodes over TLS (``fixtures/cluster.py``), topics replicated three times,
two in sync for a write. The gateway (a process of its own) takes simulated traffic in small batches, resent by
the client until it gets a 202, while a node dies or restarts under it; the worker runs beside. Then: every
event the gateway answered 202 for is on Kafka, the gateway's 503s (if any) ended without restarting it, and the
books equal what the pure core decides for the events (held, then ticked: ``held_then_ticked``), nothing lost,
nothing doubled. ``make soak`` runs them with eight times the events and longer faults."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from bench.gateway_bench import BENCH_KEY, Gateway, share_event
from deploy.local.kafka_broker import KafkaBroker
from deploy.local.processes import free_port
from schemas.topics import BY_EVENT_TYPE, INBOUND
from tests.integration.fixtures.cluster import Cluster
from tests.integration.fixtures.stack import STACK_FACTS
from tests.integration.support.kafka_reading import read_topic
from tests.integration.support.worker import held_then_ticked, simulated

pytestmark = pytest.mark.faults

BATCH = 10


@dataclass
class Load:
    """Posts ``events`` through the gateway in batches, each resent until it gets a 202 (a client that cannot
    know what a failed request wrote: the pipeline counts an event once by its id), paced over ``seconds``."""

    url: str
    events: list[dict]
    seconds: float
    accepted: set[str] = field(default_factory=set)
    answers: Counter = field(default_factory=Counter)
    sent: int = 0
    error: BaseException | None = None

    def run(self) -> None:
        client = httpx.Client(base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {BENCH_KEY}"})
        batches = [self.events[i:i + BATCH] for i in range(0, len(self.events), BATCH)]
        started = time.monotonic()
        try:
            for n, batch in enumerate(batches):
                time.sleep(max(0.0, started + n * self.seconds / len(batches) - time.monotonic()))
                deadline = time.monotonic() + 300
                while True:
                    try:
                        response = client.post("/v1/events", json=batch)
                        answer = str(response.status_code)
                        assert answer in ("202", "503"), (answer, response.text[:300])
                    except httpx.TransportError as exc:  # the gateway's wait for Kafka is shorter: seen never
                        answer = type(exc).__name__
                    self.answers[answer] += 1
                    if answer == "202":
                        self.accepted.update(e["event_id"] for e in batch)
                        break
                    assert time.monotonic() < deadline, f"no 202 for 300 s: {self.answers}"
                    time.sleep(0.5)
                self.sent = (n + 1) * BATCH
        except BaseException as exc:
            self.error = exc
        finally:
            client.close()


def under_fault(cluster: Cluster, pipeline_factory, tmp_path, *, events: int, seconds: float,
                fault: Callable[[Cluster, str], None], seed: int) -> Load:
    """The load through a gateway with the worker beside it; ``fault(cluster, shares topic)`` once a third of the
    events are in; then the checks of the module docstring."""
    own, worker = pipeline_factory("c3", base=cluster.settings, tick_interval_s=0)
    wanted = simulated(own, seed, events)
    gateway = Gateway(own, free_port(), tmp_path / "gateway.log")
    gateway.start()  # one warm-up share
    worker.start()
    load = Load(gateway.url, wanted, seconds)
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    try:
        while load.sent < len(wanted) // 3 and thread.is_alive():
            time.sleep(0.2)
        fault(cluster, own.kafka.topic_prefix + BY_EVENT_TYPE["share"].name)
        thread.join(timeout=seconds + 600)
        assert not thread.is_alive(), f"the load did not end: {load.answers}"
        if load.error is not None:
            raise load.error
        assert gateway.proc.poll() is None, "the gateway died"
    finally:
        gateway.stop()
    assert load.accepted == {e["event_id"] for e in wanted}
    on_kafka: set[str] = set()
    for spec in INBOUND:
        on_kafka |= {json.loads(r.value)["event_id"]
                     for r in read_topic(own, own.kafka.topic_prefix + spec.name, expected=0, timeout_s=60)}
    assert load.accepted <= on_kafka  # every 202 is on Kafka
    warm_up = share_event("warm-up", 0)  # what ``Gateway.start`` sent: counted in the funnel like any share
    held_then_ticked(wanted + [warm_up], [(own, worker)], timeout_s=300)
    STACK_FACTS[f"cluster fault {fault.__name__}"] = (  # what the gateway answered, in the run's summary
        f"{len(wanted)} events in {len(wanted) // BATCH} batches; answers {dict(sorted(load.answers.items()))}; "
        f"worker restarted {worker.restarts} times by its guards; books equal to the pure core's")
    return load


def killed_for_a_while(cluster: Cluster, node: KafkaBroker, shares: str, down_s: float) -> None:
    """SIGKILL ``node``, start it again after ``down_s``, and wait until it has caught up."""
    assert node.kill()
    time.sleep(down_s)
    node.up(echo=lambda m: None)
    cluster.wait_in_sync([shares])


def test_the_leader_of_a_busy_partition_killed_loses_nothing(cluster, pipeline_factory, tmp_path, soak_factor):
    def kill_leader(cluster: Cluster, shares: str) -> None:
        killed_for_a_while(cluster, cluster.leader_of(shares, 0), shares, 10 * soak_factor)

    under_fault(cluster, pipeline_factory, tmp_path, events=600 * soak_factor, seconds=40 * soak_factor,
                fault=kill_leader, seed=301)


def test_the_active_controller_killed_loses_nothing(cluster, pipeline_factory, tmp_path, soak_factor):
    def kill_controller(cluster: Cluster, shares: str) -> None:
        killed_for_a_while(cluster, cluster.active_controller(), shares, 10 * soak_factor)
        cluster.active_controller()  # a quorum leader again (it raises when no node knows one)

    under_fault(cluster, pipeline_factory, tmp_path, events=600 * soak_factor, seconds=40 * soak_factor,
                fault=kill_controller, seed=302)


def test_a_rolling_restart_of_all_three_loses_nothing(cluster, pipeline_factory, tmp_path, soak_factor):
    def rolling(cluster: Cluster, shares: str) -> None:
        for node in cluster.nodes:  # as an operator does it: one node at a time, the next once all are in sync
            assert node.down()
            node.up(echo=lambda m: None)
            cluster.wait_in_sync([shares])

    under_fault(cluster, pipeline_factory, tmp_path, events=900 * soak_factor, seconds=60 * soak_factor,
                fault=rolling, seed=303)


def test_one_node_down_for_a_minute_loses_nothing(cluster, pipeline_factory, tmp_path, soak_factor):
    def down_for_a_minute(cluster: Cluster, shares: str) -> None:
        node = cluster.node(2)
        assert node.down()
        time.sleep(60)
        node.up(echo=lambda m: None)
        cluster.wait_in_sync([shares])

    load = under_fault(cluster, pipeline_factory, tmp_path, events=900 * soak_factor, seconds=90 * soak_factor,
                       fault=down_for_a_minute, seed=304)
    assert load.answers["202"] >= 90 * soak_factor  # the minute down was under load
