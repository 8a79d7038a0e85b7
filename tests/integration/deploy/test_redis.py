"""The real Redis of the stack: reads, writes, and persistence settings."""

from __future__ import annotations


def test_write_and_read_back(redis_client, redis_keys):
    key = redis_keys("funnel:share:whatsapp")
    pipe = redis_client.pipeline()
    for _ in range(10):
        pipe.incr(key)
    pipe.execute()
    assert int(redis_client.get(key)) == 10
    redis_client.hset(redis_keys("referrer"), mapping={"points_pending": 500, "shares": 3})
    assert redis_client.hgetall(redis_keys("referrer")) == {b"points_pending": b"500", b"shares": b"3"}


def test_redis_persists_with_aof_every_second(redis_client, stack):
    assert redis_client.config_get("appendonly") == {"appendonly": "yes"}
    assert redis_client.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert redis_client.config_get("dir")["dir"] == str(stack.redis.home)


def test_small_hashes_with_json_values_stay_compact_listpacks(redis_client, redis_keys):
    assert redis_client.config_get("hash-max-listpack-value") == {"hash-max-listpack-value": "1024"}
    key = redis_keys("referrals")
    redis_client.hset(key, mapping={"r1": "x" * 500, "r2": "y" * 300})
    assert redis_client.object("encoding", key) == b"listpack"
