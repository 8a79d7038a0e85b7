"""The real broker: Kafka 4.x in KRaft mode, produce with kafka-python, read back, transactions, aiokafka."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from producers.samples import referral_story
from referrals.publisher import EventPublisher
from schemas import parse_event_json
from schemas.records import Record, inbound_record


def read_all(settings, topic: str, group: str, expected: int, **options) -> list:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=settings.kafka.bootstrap, group_id=group, auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=10000, **options,
    )
    records = []
    try:
        for record in consumer:
            records.append(record)
            if len(records) >= expected:
                break
    finally:
        consumer.close()
    return records


def test_broker_is_kafka_4_in_kraft_mode(stack, settings):
    assert stack.kafka.running_version().startswith("4.")
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    try:
        cluster = admin.describe_cluster()
        # kafka-python negotiates the API level from the broker's ApiVersions answer.
        assert admin._client.check_version() >= (4, 0)
    finally:
        admin.close()
    assert [b["broker_id"] for b in cluster["brokers"]] == [1]
    assert cluster["controller_id"] == 1  # the broker is its own KRaft controller


def test_events_round_trip_through_a_real_topic(settings, topic_factory, unique_name):
    topic = topic_factory("events", partitions=6)
    events = referral_story(datetime.now(UTC), prefix=unique_name("ev"))
    records = [inbound_record(e, "integration-test") for e in events]
    records = [dataclasses.replace(r, topic=topic) for r in records]
    with EventPublisher(settings, source="integration-test") as publisher:
        acks = publisher.send_records(records)
    assert len(acks) == len(events)

    got = read_all(settings, topic, unique_name("group"), len(events))
    by_id = {parse_event_json(r.value).event_id: r for r in got}
    assert set(by_id) == {e.event_id for e in events}
    for e in events:
        record = by_id[e.event_id]
        assert parse_event_json(record.value) == e
        headers = dict(record.headers)
        assert headers["ce_id"] == e.event_id.encode()
        assert headers["ce_type"] == f"io.referral-pipeline.{e.type}.v1".encode()
    # Signup, order and refund of one customer share a key, so they share a partition.
    partitions = {by_id[e.event_id].partition for e in events if e.type in ("signup", "order", "refund")}
    assert len(partitions) == 1


def test_transactions_work_on_one_node(settings, topic_factory, unique_name):
    topic = topic_factory("tx", partitions=1)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap, transactional_id=unique_name("tx"))
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(topic, b"aborted")
        producer.abort_transaction()
        producer.begin_transaction()
        producer.send(topic, b"committed")
        producer.commit_transaction()
    finally:
        producer.close()
    committed = read_all(settings, topic, unique_name("g"), 1, isolation_level="read_committed")
    assert [r.value for r in committed] == [b"committed"]


def test_aiokafka_the_library_faust_sits_on_reads_the_broker(settings, topic_factory, unique_name):
    topic = topic_factory("aio", partitions=3)
    with EventPublisher(settings, source="t") as publisher:
        publisher.send_records(
            [Record(topic, b"k%d" % i, json.dumps({"n": i}).encode(), []) for i in range(5)]
        )

    async def consume() -> list[int]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap, group_id=unique_name("g"),
                                    auto_offset_reset="earliest", isolation_level="read_committed")
        await consumer.start()
        seen: list[int] = []
        try:
            while len(seen) < 5:
                batches = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), timeout=20)
                seen += [json.loads(r.value)["n"] for records in batches.values() for r in records]
        finally:
            await consumer.stop()
        return sorted(seen)

    assert asyncio.run(consume()) == [0, 1, 2, 3, 4]


def test_project_topics_are_created_idempotently_with_the_configured_partitions(stack, settings, unique_name):
    from referrals.kafka_admin import delete_topics, ensure_topics, project_topics, topic_names
    from referrals.settings import changed

    own = changed(settings, kafka={"topic_prefix": unique_name("project").replace(".", "-") + "."})
    names = project_topics(own)
    try:
        first = ensure_topics(own, names)
        second = ensure_topics(own, names)
        assert {s.partitions for s in first + second} == {settings.kafka.partitions}
        assert [s.created for s in first] == [True] * len(names) and not any(s.created for s in second)
    finally:
        delete_topics(own, names)
    deadline = time.monotonic() + 30  # a deletion reaches the broker's metadata a moment after it is done
    while set(names) & topic_names(own) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not set(names) & topic_names(own)  # the test's own, gone


def test_a_topic_with_the_wrong_partition_count_is_reported(settings, topic_factory):
    import pytest

    from referrals.kafka_admin import TopicMismatch, ensure_topics

    topic = topic_factory("few", partitions=2)
    with pytest.raises(TopicMismatch, match=f"{topic} has 2 partitions"):
        ensure_topics(settings, [topic], 6)
