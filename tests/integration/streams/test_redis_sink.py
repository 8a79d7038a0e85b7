"""Counter snapshots written exactly once into the real Redis: fenced by the record's seq, atomic."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import redis as redis_lib

from streams.counters import CounterSnapshot, contribution
from streams.redis_layout import RedisLayout, partition_of
from streams.redis_sink import SnapshotWriter
from tests.integration.support.kafka_reading import read_topic


@pytest.fixture
def layout(unique_name):
    return RedisLayout(prefix=unique_name("t") + ":", partitions=6)


@pytest.fixture
def writer(redis_client, layout):
    yield SnapshotWriter(redis_client)
    keys = list(redis_client.scan_iter(match=f"{layout.prefix}*"))
    if keys:
        redis_client.delete(*keys)


def snap(layout, referrer, seq, shares=1, signups=0, day="2026-05-04", referrals=None, confirmed=0, rewards=0):
    p = partition_of(referrer, layout.partitions)
    cells = {("share", "spring", "whatsapp", day): shares, ("signup", "spring", "unknown", day): signups}
    ledger = {("spring", "rewards:referrer:pending"): rewards} if rewards else {}
    sums = {(layout.ledger(p, "spring"), field): n for (_, field), n in ledger.items()}
    for (stage, _, channel, _), n in cells.items():
        for key in (layout.funnel(p, "spring"), layout.funnel(p, "spring", day)):
            sums[(key, f"{stage}:{channel}")] = n
    return CounterSnapshot(
        referrer_id=referrer, seq=seq, referrer_key=layout.referrer(referrer),
        referrals_key=layout.referrals(referrer), fields={"shares:whatsapp": shares, "signups": signups},
        referrals=referrals or {}, sums=sums, contribution=contribution(cells, ledger),
        leaderboard={layout.leaderboard(p, "spring"): confirmed}, campaigns_key=layout.campaigns(p),
        campaigns=("spring",), cells_key=layout.cells(referrer))


def dump(client, layout) -> dict:
    out = {}
    for key in sorted(client.scan_iter(match=f"{layout.prefix}*")):
        kind = client.type(key)
        out[key] = (client.hgetall(key) if kind == b"hash" else client.smembers(key) if kind == b"set"
                    else client.zrange(key, 0, -1, withscores=True))
    return out


def funnel(client, layout, referrer="anna"):
    p = partition_of(referrer, layout.partitions)
    return {k.decode(): int(v) for k, v in client.hgetall(layout.funnel(p, "spring")).items()}


def test_a_snapshot_applies_once_older_ones_change_nothing_and_funnels_add_differences(
        redis_client, writer, layout):
    p = partition_of("anna", 6)
    ben_shares = 2 if partition_of("ben", 6) == p else 0  # ben adds to anna's shard only if they share it
    assert writer.apply([snap(layout, "anna", 1), snap(layout, "ben", 1, shares=2)]) == 2
    assert funnel(redis_client, layout) == {"share:whatsapp": 1 + ben_shares}  # a 0 contribution writes nothing
    first = dump(redis_client, layout)
    # the same snapshot again (a replay) and an older one (a late write): nothing changes
    assert writer.apply([snap(layout, "anna", 1), snap(layout, "anna", 0, shares=9)]) == 0
    assert dump(redis_client, layout) == first
    # anna's next snapshot: her contribution moves from 1 share to 3 shares and 1 signup; ben's stays
    assert writer.apply([snap(layout, "anna", 2, shares=3, signups=1, confirmed=1,
                              referrals={"spring:anna:eva": '{"status": "qualified"}'})]) == 1
    assert funnel(redis_client, layout) == {"share:whatsapp": 3 + ben_shares, "signup:unknown": 1}
    assert redis_client.hget(layout.referrer("anna"), "shares:whatsapp") == b"3"
    assert redis_client.hget(layout.referrer("anna"), "_seq") == b"2"
    assert redis_client.zscore(layout.leaderboard(p, "spring"), "anna") == 1
    # withdrawn: the referral leaves the list, the contribution goes back to 0, the leaderboard entry goes
    assert writer.apply([snap(layout, "anna", 3, shares=3, referrals={"spring:anna:eva": None})]) == 1
    assert redis_client.hgetall(layout.referrals("anna")) == {}
    # back to 0: the field goes, as any counter at 0 (else the same books could be stored two ways)
    assert funnel(redis_client, layout) == {"share:whatsapp": 3 + ben_shares}
    assert redis_client.zscore(layout.leaderboard(p, "spring"), "anna") is None
    assert writer.seq(layout.referrer("anna")) == 3


def test_a_bad_snapshot_changes_nothing_not_even_the_seq(redis_client, writer, layout):
    good = snap(layout, "anna", 1)
    bad = replace(good, fields={**good.fields, "clicks": -1.5})
    with pytest.raises(redis_lib.ResponseError, match="bad field"):
        writer.apply([bad])
    # every value is checked before any is written
    assert dump(redis_client, layout) == {}
    assert writer.apply([good]) == 1


def test_partition_of_is_kafkas_default_partitioner(settings, topic_factory):
    from kafka import KafkaProducer

    topic = topic_factory("keys", partitions=6)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap)
    keys = [f"cust-{i}" for i in range(60)]
    try:
        for key in keys:
            producer.send(topic, key=key.encode(), value=b"x")
        producer.flush()
    finally:
        producer.close()
    records = read_topic(settings, topic, expected=60)
    assert {r.key.decode(): r.partition for r in records} == {k: partition_of(k, 6) for k in keys}


def test_a_referees_welcome_rewards_are_fenced_field_by_field(redis_client, writer, layout):
    key = layout.welcome("eva")

    def welcome(seq: int, status: str, points: int):
        value = json.dumps({"status": status, "points": points, "reason": None, "campaign_id": "spring",
                            "referrer_id": "anna"})
        return replace(snap(layout, "anna", seq), welcome={key: {"spring:anna:eva:referee": value}})

    writer.apply([welcome(2, "confirmed", 500)])
    writer.apply([welcome(1, "pending", 500), welcome(2, "pending", 500)])  # older, then equal: no change
    assert json.loads(redis_client.hget(key, "spring:anna:eva:referee"))["status"] == "confirmed"
    assert redis_client.hget(key, "_seq:spring:anna:eva:referee") == b"2"
    writer.apply([welcome(3, "revoked", 500)])
    assert json.loads(redis_client.hget(key, "spring:anna:eva:referee"))["status"] == "revoked"


def test_the_writer_keeps_one_field_per_cell_and_a_partial_snapshot_touches_only_its_cells(redis_client, writer,
                                                                                           layout):
    p = partition_of("anna", layout.partitions)
    day = layout.funnel(p, "spring", "2026-05-04")
    writer.apply([snap(layout, "anna", 1, shares=2, rewards=1)])
    # per cell (campaign, day, field; the day "" is the ledger) what the writer added; a 0 is no field
    assert redis_client.hgetall(layout.cells("anna")) == {b"spring\t2026-05-04\tshare:whatsapp": b"2",
                                                           b"spring\t\trewards:referrer:pending": b"1"}
    assert funnel(redis_client, layout)["share:whatsapp"] == 2 and redis_client.hget(day, "share:whatsapp") == b"2"
    assert redis_client.hget(layout.ledger(p, "spring"), "rewards:referrer:pending") == b"1"
    # a partial snapshot naming one cell of another day: the day before and the ledger stay as they are
    other = layout.funnel(p, "spring", "2026-05-05")
    partial = replace(snap(layout, "anna", 2, shares=5, day="2026-05-05"), complete=False,
                      contribution=contribution({("share", "spring", "whatsapp", "2026-05-05"): 5}, {}),
                      sums={(layout.funnel(p, "spring"), "share:whatsapp"): 5, (other, "share:whatsapp"): 5})
    writer.apply([partial])
    assert funnel(redis_client, layout)["share:whatsapp"] == 7
    assert (redis_client.hget(day, "share:whatsapp"), redis_client.hget(other, "share:whatsapp")) == (b"2", b"5")
    assert redis_client.hget(layout.ledger(p, "spring"), "rewards:referrer:pending") == b"1"
    writer.apply([partial])  # again: not newer, nothing
    assert funnel(redis_client, layout)["share:whatsapp"] == 7
    # a complete snapshot takes back what it no longer names (here: the ledger field, the first day), their keys
    # not declared by it (a record keeps no cell at 0): found in the cells hash, in the referrer's slot
    complete = snap(layout, "anna", 3, shares=5, day="2026-05-05")
    assert (day, "share:whatsapp") not in complete.sums
    writer.apply([complete])
    assert funnel(redis_client, layout)["share:whatsapp"] == 5 and redis_client.hget(day, "share:whatsapp") is None
    assert redis_client.hget(layout.ledger(p, "spring"), "rewards:referrer:pending") is None
    writer.retire(layout, ["anna"])  # her counts leave the shared counters; at 0 they are no fields
    assert "share:whatsapp" not in funnel(redis_client, layout) and not redis_client.exists(layout.cells("anna"))


def test_a_contribution_written_by_the_version_before_is_taken_back_whole_by_a_complete_snapshot(
        redis_client, writer, layout):
    """Before, the writer kept a referrer's whole contribution in one ``_funnel`` field (in three forms over
    time): the first snapshot after it, complete, takes it back and adds every cell again; a partial one is
    refused (the worker's first snapshot of a referrer is complete)."""
    p = partition_of("anna", layout.partitions)
    day = layout.funnel(p, "spring", "2026-05-04")
    before = snap(layout, "anna", 1, shares=2, rewards=1)
    tag = f"{layout.tag(p)}:"
    for names in (json.loads(before.contribution),  # {campaign: {day: {field: n}}}, the day "" the ledger
                  {f"{k}\t{f}": n for (k, f), n in before.sums.items()},  # every cell of every key, keys whole
                  {f"{k.removeprefix(tag)}\t{f}": n for (k, f), n in before.sums.items()}):  # or relative
        redis_client.delete(layout.cells("anna"))
        redis_client.hset(layout.referrer("anna"), mapping={"_funnel": json.dumps(names), "_seq": 1})
        for key in (layout.funnel(p, "spring"), day):
            redis_client.hset(key, "share:whatsapp", 2)  # as the older writer left them
        redis_client.hset(layout.ledger(p, "spring"), "rewards:referrer:pending", 1)
        with pytest.raises(redis_lib.ResponseError, match="previous format"):
            writer.apply([replace(snap(layout, "anna", 2, shares=3, rewards=1), complete=False)])
        writer.apply([snap(layout, "anna", 2, shares=3, rewards=1)])  # only the difference is added
        assert funnel(redis_client, layout)["share:whatsapp"] == 3 and redis_client.hget(day, "share:whatsapp") == b"3"
        assert redis_client.hget(layout.ledger(p, "spring"), "rewards:referrer:pending") == b"1"
        assert redis_client.hget(layout.referrer("anna"), "_funnel") is None
        assert redis_client.hget(layout.cells("anna"), "spring\t2026-05-04\tshare:whatsapp") == b"3"
        writer.retire(layout, ["anna"])
        assert "share:whatsapp" not in funnel(redis_client, layout)
        assert redis_client.hget(layout.ledger(p, "spring"), "rewards:referrer:pending") is None
    # a referrer retired while its contribution was still of the older form: taken back too
    redis_client.hset(layout.referrer("anna"), mapping={"_funnel": before.contribution, "_seq": 1})
    for key in (layout.funnel(p, "spring"), day):
        redis_client.hset(key, "share:whatsapp", 2)
    writer.retire(layout, ["anna"])
    assert redis_client.hget(day, "share:whatsapp") is None


def test_a_contribution_to_a_key_the_snapshot_does_not_declare_changes_nothing(redis_client, writer, layout):
    good = snap(layout, "anna", 1)
    stray = replace(good, contribution=contribution({("share", "autumn", "sms", "2026-05-04"): 1}, {}))
    with pytest.raises(redis_lib.ResponseError, match="not declared"):
        writer.apply([stray])
    assert dump(redis_client, layout) == {}


def test_a_customer_with_nothing_to_show_takes_no_redis_memory(redis_client, writer, layout):
    p = partition_of("carl", layout.partitions)
    blank = CounterSnapshot(
        referrer_id="carl", seq=1, referrer_key=layout.referrer("carl"), referrals_key=layout.referrals("carl"),
        fields={"clicks": 0, "signups": 0, "points:pending": 0}, referrals={}, sums={}, contribution="{}",
        leaderboard={},
        campaigns_key=layout.campaigns(p), campaigns=())
    assert blank.blank and writer.apply([blank]) == 0
    assert dump(redis_client, layout) == {}
    assert not replace(blank, fields={"clicks": 1}).blank
    assert writer.apply([replace(blank, fields={"clicks": 1})]) == 1
    assert redis_client.hgetall(layout.referrer("carl")).keys() >= {b"clicks", b"_seq"}
    assert b"signups" not in redis_client.hgetall(layout.referrer("carl"))  # a 0 is no field
    assert writer.apply([replace(blank, seq=2, fields={"clicks": 0, "signups": 2})]) == 1
    fields = redis_client.hgetall(layout.referrer("carl"))
    assert fields[b"signups"] == b"2" and b"clicks" not in fields  # back to 0: the field goes


def test_a_partial_snapshot_leaves_the_other_summaries_and_a_complete_one_replaces_the_list(writer, redis_client,
                                                                                             layout):
    """A batch writes the summaries of the referrals it changed (#17: not a referrer's whole list each time);
    a complete snapshot (after a restart, a rename) is the list: ids it lacks go."""
    key = layout.referrals("anna")
    writer.apply([snap(layout, "anna", 1, referrals={"r1": '{"s":1}', "r2": '{"s":1}'})])
    writer.apply([replace(snap(layout, "anna", 2, referrals={"r2": '{"s":2}', "r3": '{"s":1}'}), complete=False)])
    assert redis_client.hgetall(key) == {b"r1": b'{"s":1}', b"r2": b'{"s":2}', b"r3": b'{"s":1}'}
    writer.apply([replace(snap(layout, "anna", 3, referrals={"r1": None}), complete=False)])  # withdrawn
    assert redis_client.hgetall(key) == {b"r2": b'{"s":2}', b"r3": b'{"s":1}'}
    writer.apply([snap(layout, "anna", 4, referrals={"r3": '{"s":3}'})])
    assert redis_client.hgetall(key) == {b"r3": b'{"s":3}'}
    writer.apply([replace(snap(layout, "anna", 4, referrals={"r9": '{"s":9}'}), complete=False)])  # not newer
    assert redis_client.hgetall(key) == {b"r3": b'{"s":3}'}
