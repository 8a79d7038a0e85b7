"""The stream worker on the real Kafka and Redis, checked against the pure core's decisions."""

from __future__ import annotations

import base64
import json
import random
import time
from datetime import UTC, datetime

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from prometheus_client.parser import text_string_to_metric_families

from deploy.local.processes import free_port
from referrals.kafka_admin import group_lag
from schemas.topics import DEADLETTER
from streams.topology import input_topics
from tests.integration.fixtures.stack import STACK_FACTS
from tests.integration.support.kafka_reading import read_topic
from tests.integration.support.worker import (
    assert_same_books,
    expected,
    held,
    held_then_ticked,
    latest_rewards,
    matches,
    redis_dump,
    self_stops,
    send,
    simulated,
    supervise,
    tick,
    wait_for,
)


def cached(n: int) -> dict[str, int]:
    """Settings keeping ``n`` records of each table as objects: nearly every record is read back from disk."""
    return {"records_cached": n, "customer_records_cached": n, "visitor_records_cached": n}


def test_the_simulated_stream_ends_as_the_pure_core_decides(pipeline_factory):
    # two records of each table kept as objects: nearly every record is read back from disk (streams.record_store)
    own, worker = pipeline_factory(**cached(2), metrics_port=free_port())
    events = simulated(own, 21, 1500)
    worker.start()
    send(own, events)
    want = expected(own, events)
    assert want.rewards and want.funnel["share:whatsapp"] > 0
    assert {"confirmed", "pending"} <= {status for status, _ in want.rewards.values()}
    wait_for(matches(own, want, worker), timeout_s=120)
    loaded = {s.labels["table"]: s.value for family in text_string_to_metric_families(
        httpx.get(f"http://127.0.0.1:{own.streams.metrics_port}/metrics", timeout=10).text)
        for s in family.samples if s.name == "referral_worker_records_loaded_total"}
    assert loaded.keys() == {"visitors", "customers", "referrers"} and loaded["referrers"] > 100, loaded
    assert loaded["customers"] > 0 and loaded["visitors"] > 0, loaded  # each table's own setting holds (cached)
    records = own.state_dir / "faust" / own.streams.app_id / "records"
    assert [p.name for p in records.iterdir()] == [f"pid-{worker.current.pid}"]
    worker.kill()  # a SIGKILL leaves its directory: the next worker removes it
    worker.start()
    worker.wait_ready()
    assert [p.name for p in records.iterdir()] == [f"pid-{worker.current.pid}"]
    worker.stop()  # an exit removes its own
    assert list(records.iterdir()) == []


def test_bad_records_go_to_the_dead_letter_topic_and_the_worker_goes_on(pipeline_factory):
    own, worker = pipeline_factory()
    events = simulated(own, 22, 300)
    prefix = own.kafka.topic_prefix
    share = next(e for e in events if e["type"] == "share")
    bad = [(prefix + "referrals.shares", b"\xff\xfe not json"), (prefix + "shop.orders", b'{"type":"order"}'),
           (prefix + "customers.signups", json.dumps(share | {"event_id": "share-on-signups"}).encode()),
           (prefix + "referrals.clicks", b"[1,2,3]")]
    producer = KafkaProducer(bootstrap_servers=own.kafka.bootstrap)
    try:
        for topic, value in bad:
            producer.send(topic, key=b"k", value=value)
        producer.flush()
    finally:
        producer.close()
    worker.start()
    send(own, events)
    wait_for(matches(own, expected(own, events), worker), timeout_s=120)
    letters = [json.loads(r.value) for r in read_topic(own, prefix + DEADLETTER.name, expected=4)]
    assert {(d["source_topic"], d["reason"]) for d in letters} == {
        (prefix + "referrals.shares", "utf8"), (prefix + "shop.orders", "missing"),
        (prefix + "customers.signups", "wrong_topic"), (prefix + "referrals.clicks", "object")}
    share_letter = next(d for d in letters if d["source_topic"] == prefix + "referrals.shares")
    assert base64.b64decode(share_letter["original_value_b64"]) == b"\xff\xfe not json"
    assert share_letter["source_offset"] == 0  # the first record of its partition


def rewind_group_to_zero(settings) -> None:
    """Commit offset 0 on every partition the worker's group consumes (the worker is stopped)."""
    topics = input_topics(settings)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, group_id=settings.streams.app_id,
                             enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.kafka.partitions)]
        consumer.assign(tps)
        consumer.commit({tp: OffsetAndMetadata(0, "", -1) for tp in tps})
    finally:
        consumer.close()


def test_replaying_every_topic_from_offset_0_changes_nothing(pipeline_factory):
    # the clock off, ticked by the test: with the wall clock's ticks (one a second on every partition) the last
    # tick was often processed and not committed yet (Faust commits every few seconds), so "every record read
    # again" (a lag of 0) could be missed for minutes
    own, worker = pipeline_factory(tick_interval_s=0)
    events = simulated(own, 23, 1200)
    worker.start()
    send(own, events)
    held_then_ticked(events, [(own, worker)], timeout_s=120)
    worker.stop()
    before, rewards_before = redis_dump(own), latest_rewards(own)

    rewind_group_to_zero(own)
    send(own, events[:500])  # and the first 500 events once more, as a retrying producer would
    tick(own, datetime.now(UTC))  # and the clock once more: nothing left to confirm
    worker.start()

    def caught_up():  # every input read again and committed (restarting the worker if its guards stop it)
        worker.keep_alive()
        lag = group_lag(own, own.streams.app_id, input_topics(own))
        return lag == 0, f"{lag} records not yet read again (the worker's guards restarted it {worker.restarts} times)"

    wait_for(caught_up, timeout_s=180)
    assert redis_dump(own) == before
    assert latest_rewards(own) == rewards_before


@pytest.mark.faults
def test_sigkill_at_random_moments_ends_exactly_as_an_uninterrupted_run(pipeline_factory, soak_factor):
    calm, calm_worker = pipeline_factory("calm", tick_interval_s=0)  # ticked by the test, see ``tick``
    crashy, crashy_worker = pipeline_factory("crashy", tick_interval_s=0)
    events = simulated(calm, 24, 2400 * soak_factor)
    simulated(crashy, 24, 2400 * soak_factor)  # the same referrers and codes in the second run's registry
    rnd = random.Random(7)
    calm_worker.start()
    crashy_worker.start()
    chunks = [events[i:i + 300] for i in range(0, len(events), 300)]
    for chunk in chunks:
        send(calm, chunk)
        crashy_worker.wait_ready()
        send(crashy, chunk)
        time.sleep(rnd.uniform(0.0, 0.6))  # the worker is busy with the chunk: kill it mid-work
        crashy_worker.kill()
        crashy_worker.start()
    held_then_ticked(events, [(calm, calm_worker), (crashy, None)], timeout_s=300 * soak_factor,
                     wait=lambda check, timeout_s: supervise(crashy_worker, check, faults=0,  # restarts after its guards
                                                             timeout_s=timeout_s))
    assert_same_books(crashy, calm)  # the ledgers each against their own reward log: ghosts vary by arrival
    assert len(crashy_worker.procs) >= len(chunks) + 1  # killed once per chunk, restarted each time
    # one restart per crash (#23): the worker's own guards add at most one restart per ten SIGKILLs (before the
    # seek of ``streams.app.seek_before_streams_resume``, the offset guard stopped it after 23 of 64 kills)
    kills, stops = len(chunks), self_stops(crashy_worker)
    STACK_FACTS["worker restarts per SIGKILL"] = (f"{(kills + stops) / kills:.2f} ({kills} SIGKILLs at random "
                                                  f"moments, {stops} more stops by the worker's own guards)")
    assert kills + stops <= 1.1 * kills, crashy_worker.tail()


@pytest.mark.faults
def test_a_worker_killed_at_its_worst_moments_ends_exactly_as_an_uninterrupted_run(pipeline_factory, soak_factor):
    """Fault injection: the worker SIGKILLs itself with outputs half sent, or acknowledged with Redis not
    yet written, again and again while it works through a backlog in small batches; restarted each time,
    it must end where an uninterrupted worker ends."""
    # the calm worker keeps its records in memory, the faulty one on disk with 3 of each table cached
    calm, calm_worker = pipeline_factory("calm", tick_interval_s=0, records_on_disk=False)  # ticked by the test
    faulty, faulty_worker = pipeline_factory("faulty", tick_interval_s=0, fault_kill_rate=0.08, batch_size=40,
                                             stall_timeout_s=30, **cached(3))
    events = simulated(calm, 25, 2400 * soak_factor)
    simulated(faulty, 25, 2400 * soak_factor)
    send(calm, events)
    send(faulty, events)
    calm_worker.start()
    faulty_worker.start()
    kills = 0

    def wait(check, timeout_s: float) -> None:
        nonlocal kills  # SIGKILLs until 10 (x soak), the tick's processing included, then none
        kills += supervise(faulty_worker, check, faults=10 * soak_factor - kills, timeout_s=timeout_s)

    held_then_ticked(events, [(calm, calm_worker), (faulty, None)], timeout_s=420 * soak_factor, wait=wait)
    assert kills >= 10 * soak_factor  # restarts after the worker's own guards (offset gap, stall) may come on top
    assert_same_books(faulty, calm)


def _metric(settings, name: str) -> float:  # a worker counter's value, from its metrics endpoint
    text = httpx.get(f"http://127.0.0.1:{settings.streams.metrics_port}/metrics", timeout=10).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples if s.name == name)


def test_referrals_decided_for_good_leave_the_workers_memory_and_the_books_stay_exact(pipeline_factory):
    """The real worker settles the referrals whose hold has ended (out of their referrer's record in memory, to
    local disk: ``streams.referrer_parts.settle``), with 2 records of each table cached (read back from disk all
    the time), and Redis and the reward log show what the pure core decides. A restarted worker settles them
    again as it recovers; its first change of each referrer writes that referrer's counters complete, the
    settled referrals' summaries read back from disk (left out, Redis would drop them)."""
    own, worker = pipeline_factory(tick_interval_s=0, **cached(2), metrics_port=free_port())
    events = simulated(own, 26, 1200)
    worker.start()
    send(own, events)
    wait_for(matches(own, held(own, events), worker), timeout_s=120)
    now = datetime.now(UTC)
    tick(own, now)  # every hold ends
    want = expected(own, events, now)
    confirmed = sum(1 for k, (status, _) in want.rewards.items() if k.endswith(":referee") and status == "confirmed")
    assert confirmed > 0
    wait_for(matches(own, want, worker), timeout_s=120)
    tick(own, now)  # again: a replay visits every referrer, whose last batch is acknowledged by now: settled
    # every referral with a confirmed reward at least (its hold ended: both rewards final)
    settled = "referral_worker_referrals_settled_total"
    wait_for(lambda: ((n := _metric(own, settled)) >= confirmed, (n, confirmed)), timeout_s=60)

    share = next(e for e in events if e["type"] == "share")
    referrers = sorted({k.split(":")[1] for k in want.rewards if k.endswith(":referee")})  # <campaign>:<referrer>:…

    def again(tag: str) -> list[dict]:  # one more share of every referrer with a reward: a change of each
        return [{**share, "event_id": f"{share['event_id']}-{tag}-{r}", "referrer_id": r} for r in referrers]

    first = again("a")
    events += first
    send(own, first)  # their headers now say that the tick's changes are acknowledged
    want = expected(own, events, now)
    wait_for(matches(own, want, worker), timeout_s=120)

    worker.stop()
    worker.start()  # recovery settles what the changelog shows final and acknowledged
    worker.wait_ready()
    wait_for(lambda: ((n := _metric(own, settled)) >= confirmed, (n, confirmed)), timeout_s=60)
    more = again("b")
    events += more
    send(own, more)  # each referrer's first change in this process: its counters written complete
    want = expected(own, events, now)
    wait_for(matches(own, want, worker), timeout_s=120)
