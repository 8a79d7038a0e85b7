"""Reading what tests produced, straight from the real broker (a test sink)."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition

from referrals.settings import Settings


def end_offsets(settings: Settings, topics: list[str]) -> dict[str, int]:
    """Records per topic (sum of end offsets over its partitions)."""
    consumer = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False)
    try:
        out = {}
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic) or set()
            ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
            out[topic] = sum(ends.values())
        return out
    finally:
        consumer.close()


def read_topic(settings: Settings, topic: str, *, expected: int, timeout_s: float = 15.0) -> list:
    """Every record of the topic from the beginning: at least as far as it reached when called, and waiting
    for ``expected`` records; no longer than the timeout. (A poll returns at most 500 records, so stopping
    after the first polls returned a part of a longer topic.) Not reaching the end offsets it found in time
    is an error, not a shorter answer."""
    consumer = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False,
                             isolation_level="read_committed")
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)  # what the topic holds now: read at least that far
        records: list = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            if len(records) >= expected and all(consumer.position(tp) >= ends[tp] for tp in partitions):
                # a short extra poll: anything beyond `expected` is a duplicate the test must see
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(batch)
                break
        else:
            short = {tp.partition: (consumer.position(tp), ends[tp]) for tp in partitions
                     if consumer.position(tp) < ends[tp]}
            if short:  # a part of the topic, silently, would look like records missing
                raise AssertionError(f"{topic}: not read to its end within {timeout_s:.0f} s (partition: "
                                     f"(position, end)) {short}")
        return records
    finally:
        consumer.close()
