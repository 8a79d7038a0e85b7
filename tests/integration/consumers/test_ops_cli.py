"""The ops commands on the real stack: `referrals status`, `deadletter list|replay`, `rebuild`."""

from __future__ import annotations

import json
import subprocess
import sys

from kafka import KafkaProducer

from tests.integration.support.worker import (
    client,
    expected,
    matches,
    run_through,
    simulated,
    view_prefix,
    wait_for,
)


def cli(worker, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "referrals.cli", *args], env=worker.env(), input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_status_shows_topics_lag_workers_and_dead_letters(pipeline_factory):
    own, worker = pipeline_factory("status")
    events = simulated(own, 81, 300)
    producer = KafkaProducer(bootstrap_servers=own.kafka.bootstrap)
    producer.send(own.kafka.topic_prefix + "shop.orders", key=b"c1", value=b"{not json").get(timeout=30)
    producer.close()
    run_through(own, worker, events)

    def healthy():
        done = cli(worker, "status", "--json")
        report = json.loads(done.stdout)
        lag = dict(report["lag"])
        ticks = lag.pop("referrals.referrer-facts", 0)  # the clock ticks every second to every partition
        ok = (done.returncode == 0 and report["healthy"] and sum(lag.values()) == 0 and ticks <= 2 * 6
              and report["workers"] and report["group_members"] == 1)
        return ok, report

    report = wait_for(healthy, timeout_s=60, interval_s=2)
    assert report["topics_missing"] == [] and report["group_state"] == "Stable"
    assert report["workers"][0]["events"] > 0 and report["workers"][0]["partitions"] > 0
    assert report["deadletters"] == {"shop.orders json": 1} and report["deadletter_records"] == 1
    text = cli(worker, "status")
    assert text.returncode == 0 and "consumer lag" in text.stdout and "shop.orders json: 1" in text.stdout


def test_a_dead_letter_is_listed_fixed_replayed_once_and_then_counted(pipeline_factory):
    own, worker = pipeline_factory("dl")
    events = simulated(own, 82, 200)
    share = next(e for e in events if e["type"] == "share")
    broken = json.dumps(share | {"coupon": "WELCOME", "event_id": "share-fixed-later"})  # unknown field: refused
    producer = KafkaProducer(bootstrap_servers=own.kafka.bootstrap)
    producer.send(own.kafka.topic_prefix + "referrals.shares", key=share["referrer_id"].encode(),
                  value=broken.encode()).get(timeout=30)
    producer.close()
    run_through(own, worker, events)

    listed = cli(worker, "deadletter", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    letters = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [x["source_topic"] for x in letters] == ["referrals.shares"]
    assert json.loads(letters[0]["value"])["event_id"] == "share-fixed-later"
    human = cli(worker, "deadletter", "list")
    assert "referrals.shares" in human.stdout and "1 dead letters" in human.stdout

    still_broken = cli(worker, "deadletter", "replay", "-", stdin=json.dumps(letters[0]))
    assert still_broken.returncode == 1 and "invalid" in still_broken.stdout

    assert letters[0]["reason"] == "unknown_field"
    repaired = json.loads(letters[0]["value"])
    del repaired["coupon"]
    fixed = letters[0] | {"value": json.dumps(repaired)}
    done = cli(worker, "deadletter", "replay", "-", stdin=json.dumps(fixed))
    assert done.returncode == 0 and "1 replayed" in done.stdout, done.stdout + done.stderr
    again = cli(worker, "deadletter", "replay", "-", stdin=json.dumps(fixed))
    assert "1 skipped" in again.stdout

    fixed_event = json.loads(fixed["value"])
    before, after = expected(own, events), expected(own, [*events, fixed_event])
    assert after.funnel[f"share:{share['channel']}"] == before.funnel[f"share:{share['channel']}"] + 1
    wait_for(matches(own, after, worker), timeout_s=120)  # the replayed share is counted, once


def test_rebuild_command_switches_to_an_equal_view(pipeline_factory):
    own, worker = pipeline_factory("rebuild-cli")
    events = simulated(own, 83, 300)
    run_through(own, worker, events)
    done = cli(worker, "rebuild")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rewards agree with the reward events" in done.stdout and "switched" in done.stdout
    assert view_prefix(own) == own.redis.key_prefix + "v1:"
    wait_for(matches(own, expected(own, events), worker), timeout_s=30)
    with client(own) as c:
        assert c.get(own.redis.key_prefix + "view") == own.redis.key_prefix + "v1:"
