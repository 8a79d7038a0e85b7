"""What the local stack writes for its broker and its Redis (no processes started here)."""

from __future__ import annotations

import re

from deploy.local.kafka_broker import KafkaBroker, new_cluster_id, pinned_kafka_version
from deploy.local.redis_server import RedisServer
from referrals.settings import Settings


def settings(tmp_path, **kafka) -> Settings:
    return Settings(state_dir=tmp_path, kafka=kafka)


def test_pinned_kafka_is_4x():
    assert re.fullmatch(r"4\.\d+\.\d+", pinned_kafka_version())


def test_broker_is_single_node_kraft_on_loopback_with_transactions_possible(tmp_path):
    props = KafkaBroker(settings(tmp_path, port=19092, controller_port=19093)).server_properties()
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["log.dirs"] == str(tmp_path / "kafka" / "data")
    assert props["auto.create.topics.enable"] == "false"


def test_extra_properties_override(tmp_path):
    broker = KafkaBroker(settings(tmp_path, extra_properties={"log.retention.hours": "1"}))
    assert broker.server_properties()["log.retention.hours"] == "1"


def test_broker_heap_is_bounded(tmp_path):
    argv = KafkaBroker(settings(tmp_path, heap="768m"))._java("kafka.Kafka")
    assert "-Xmx768m" in argv and "-Xms768m" in argv


def test_cluster_ids_are_kafka_uuids():
    for _ in range(200):
        cid = new_cluster_id()
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cid) and not cid.startswith("-")


def test_redis_runs_with_aof_every_second_in_the_state_folder(tmp_path):
    text = RedisServer(Settings(state_dir=tmp_path, redis={"port": 16380})).config_text()
    assert "appendonly yes" in text and "appendfsync everysec" in text
    assert f'dir "{tmp_path / "redis"}"' in text
    assert "port 16380" in text and "bind 127.0.0.1" in text
