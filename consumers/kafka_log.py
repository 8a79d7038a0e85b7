"""Reading topics from Kafka to a fixed end, partition by partition (for rebuilds and dead letters)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaTimeoutError

from referrals.settings import Settings

Position = dict[tuple[str, int], int]  # (topic, partition) -> offset


def end_offsets(settings: Settings, topics: list[str]) -> Position:
    consumer = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False,
                             client_id="referrals-log-reader")
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.kafka.partitions)]
        return {(tp.topic, tp.partition): end for tp, end in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def read(settings: Settings, until: Position, since: Position | None = None,
         on_progress: Callable[[int], None] | None = None, stall_s: float | None = None) -> Iterator[ConsumerRecord]:
    """Every record from ``since`` (default: the beginning) up to ``until`` (exclusive), in each partition's
    order. Compacted topics have gaps; the end offsets are what counts. ``stall_s``: raise ``KafkaTimeoutError``
    when no partition moved for that long (Kafka gone), instead of waiting for it."""
    since = since or {}
    wanted = {tp: end for tp, end in until.items() if end > since.get(tp, 0)}
    if not wanted:
        return
    consumer = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False,
                             client_id="referrals-log-reader", max_poll_records=2000)
    try:
        tps = {tp: TopicPartition(*tp) for tp in wanted}
        consumer.assign(list(tps.values()))
        for tp, partition in tps.items():
            consumer.seek(partition, since.get(tp, 0))
        open_ = set(wanted)
        moved = time.monotonic()
        while open_:
            polled = consumer.poll(timeout_ms=1000)
            if polled:
                moved = time.monotonic()
            elif stall_s is not None and time.monotonic() - moved > stall_s:
                raise KafkaTimeoutError(f"no record for {stall_s:.0f} s, {len(open_)} partitions not read to the end")
            for partition, records in polled.items():
                tp = (partition.topic, partition.partition)
                if tp not in open_:
                    continue
                n = 0
                for record in records:
                    if record.offset >= wanted[tp]:
                        break
                    n += 1
                    yield record
                if on_progress and n:
                    on_progress(n)
            for tp in list(open_):  # done once the position passed the end (compaction may skip offsets)
                if consumer.position(tps[tp]) >= wanted[tp]:
                    open_.discard(tp)
                    consumer.pause(tps[tp])
    finally:
        consumer.close()
