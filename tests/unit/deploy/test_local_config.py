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


def test_three_nodes_are_a_static_quorum_each_on_its_ports_with_topics_replicated_three_times(tmp_path):
    own = settings(tmp_path, port=29092, controller_port=29192, brokers=3)
    assert own.kafka.bootstrap == "127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096"
    assert (own.kafka.replicas, own.kafka.min_isr) == (3, 2)
    nodes = [KafkaBroker(own, n) for n in (1, 2, 3)]
    assert [n.name for n in nodes] == ["kafka", "kafka-2", "kafka-3"]
    for n, node in enumerate(nodes, start=1):
        props = node.server_properties()
        assert props["node.id"] == str(n)
        assert props["controller.quorum.voters"] == "1@127.0.0.1:29192,2@127.0.0.1:29194,3@127.0.0.1:29196"
        assert "controller.quorum.bootstrap.servers" not in props
        assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{29090 + 2 * n},CONTROLLER://127.0.0.1:{29190 + 2 * n}"
        for key in ("default.replication.factor", "offsets.topic.replication.factor",
                    "transaction.state.log.replication.factor"):
            assert props[key] == "3"
        assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
    assert nodes[0].data == tmp_path / "kafka" / "data" and nodes[2].data == tmp_path / "kafka-3" / "data"
    assert nodes[2].libs == nodes[0].libs  # one set of jars


def test_replicas_that_do_not_fit_the_cluster_are_refused(tmp_path):
    import pytest
    from pydantic import ValidationError

    for kafka, words in (({"brokers": 1, "replication_factor": 3}, "needs as many brokers"),
                         ({"brokers": 3, "min_insync_replicas": 4}, "more than the replication factor"),
                         ({"brokers": 3, "port": 9092, "controller_port": 9094}, "ports overlap")):
        with pytest.raises(ValidationError, match=words):
            settings(tmp_path, **kafka)
    remote = settings(tmp_path, bootstrap_servers="kafka-a:9093,kafka-b:9093", replication_factor=3)
    assert (remote.kafka.replicas, remote.kafka.min_isr) == (3, 2)  # a cluster elsewhere: its size is not ours


def test_tls_listeners_use_the_stacks_ca_and_the_brokers_pem_keystore(tmp_path):
    node = KafkaBroker(settings(tmp_path, security_protocol="SSL", port=29092, controller_port=29093))
    props = node.server_properties()
    assert props["listeners"] == "SSL://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["inter.broker.listener.name"] == "SSL"
    assert (props["ssl.keystore.type"], props["ssl.truststore.type"]) == ("PEM", "PEM")
    assert props["ssl.keystore.location"] == str(tmp_path / "kafka" / "tls" / "broker.pem")
    assert props["ssl.truststore.location"] == str(tmp_path / "kafka" / "tls" / "ca.pem")
    assert node.client_settings().ssl_cafile == tmp_path / "kafka" / "tls" / "ca.pem"


def test_the_stacks_ca_signs_a_broker_certificate_for_its_host(tmp_path):
    import ssl
    import subprocess

    from deploy.local.kafka_broker import LocalCA

    ca = LocalCA(tmp_path / "tls", "127.0.0.1")
    ca.make()
    text = ca.broker.read_text()
    assert text.startswith("-----BEGIN PRIVATE KEY-----") and "BEGIN CERTIFICATE" in text  # PKCS#8, then the chain
    assert oct(ca.broker.stat().st_mode & 0o777) == "0o600" and oct(ca.ca_key.stat().st_mode & 0o777) == "0o600"
    shown = subprocess.run(["openssl", "verify", "-CAfile", str(ca.ca), str(ca.broker)], capture_output=True,
                           text=True)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    names = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(ca.broker)],
                           capture_output=True, text=True).stdout
    assert "IP Address:127.0.0.1" in names and "DNS:localhost" in names
    ssl.create_default_context(cafile=str(ca.ca))  # what the clients load
    before = ca.broker.read_bytes()
    ca.make()
    assert ca.broker.read_bytes() == before  # made once
