"""Counters written exactly once into the real Redis: fenced by source offset, atomic."""

from __future__ import annotations

import pytest
import redis as redis_lib

from streams.redis_layout import RedisLayout, partition_of
from streams.redis_sink import Change, FencedWriter
from tests.integration.kafka_reading import read_topic


def changes(layout, referrer, n=1):
    p = partition_of(referrer, layout.partitions)
    return [
        Change("hincrby", layout.referrer(referrer), "shares:whatsapp", n),
        Change("hincrby", layout.funnel(p, "spring"), "share:whatsapp", n),
        Change("zincrby", layout.leaderboard(p, "spring"), referrer, n),
        Change("hset", layout.referrals(referrer), "eva", '{"status": "qualified"}'),
    ]


@pytest.fixture
def layout(unique_name):
    return RedisLayout(prefix=unique_name("t") + ":", partitions=6)


@pytest.fixture
def writer(redis_client, layout):
    yield FencedWriter(redis_client)
    keys = list(redis_client.scan_iter(match=f"{layout.prefix}*"))
    if keys:
        redis_client.delete(*keys)


def snapshot(client, layout) -> dict:
    out = {}
    for key in sorted(client.scan_iter(match=f"{layout.prefix}*")):
        kind = client.type(key)
        out[key] = client.hgetall(key) if kind == b"hash" else client.zrange(key, 0, -1, withscores=True)
    return out


def test_a_batch_is_applied_once_and_replays_change_nothing(redis_client, writer, layout):
    p = partition_of("anna", 6)
    assert writer.apply(layout.fence(p), "referrer-facts:2", 10, changes(layout, "anna"))
    after = snapshot(redis_client, layout)
    assert redis_client.hget(layout.referrer("anna"), "shares:whatsapp") == b"1"
    # the same offset again, and an older one: nothing changes
    assert not writer.apply(layout.fence(p), "referrer-facts:2", 10, changes(layout, "anna"))
    assert not writer.apply(layout.fence(p), "referrer-facts:2", 3, changes(layout, "anna", 5))
    assert snapshot(redis_client, layout) == after
    # another source partition has its own fence; a newer offset applies
    assert writer.apply(layout.fence(p), "referrer-facts:4", 3, changes(layout, "anna"))
    assert writer.apply(layout.fence(p), "referrer-facts:2", 11, changes(layout, "anna"))
    assert redis_client.hget(layout.referrer("anna"), "shares:whatsapp") == b"3"
    assert redis_client.zscore(layout.leaderboard(p, "spring"), "anna") == 3
    assert writer.fence(layout.fence(p), "referrer-facts:2") == 11
    # absolute values (hset, zadd) and removals (hdel) go through the same fence
    assert writer.apply(layout.fence(p), "referrer-facts:2", 12, [
        Change("zadd", layout.leaderboard(p, "spring"), "anna", 7), Change("hdel", layout.referrals("anna"), "eva")])
    assert redis_client.zscore(layout.leaderboard(p, "spring"), "anna") == 7
    assert redis_client.hget(layout.referrals("anna"), "eva") is None


def test_a_failing_batch_changes_nothing_not_even_the_fence(redis_client, writer, layout):
    p = partition_of("anna", 6)
    bad = [*changes(layout, "anna"), Change("hincrby", layout.referrer("anna"), "clicks", "not-a-number")]
    with pytest.raises(redis_lib.ResponseError, match="bad integer"):
        writer.apply(layout.fence(p), "referrer-facts:2", 1, bad)
    # every change is checked before any is written: nothing of the batch, not even the fence
    assert snapshot(redis_client, layout) == {}
    assert writer.apply(layout.fence(p), "referrer-facts:2", 1, changes(layout, "anna"))


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
