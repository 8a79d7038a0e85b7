"""Publishing validated events to Kafka with kafka-python: acks=all, idempotent, compressed.

``publish`` returns only after the broker acknowledged every record, so a caller that
reports success to its own client never reports an event that Kafka does not have.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata, RecordMetadata

from referrals.settings import Settings
from schemas.events import InboundEventBase
from schemas.records import Record, inbound_record


class PublishError(RuntimeError):
    """Kafka did not acknowledge every record within the bound."""


class EventPublisher:
    def __init__(self, settings: Settings, *, source: str | None = None, **producer_options):
        self.source = source or settings.event_source
        self.topic_prefix = settings.kafka.topic_prefix
        options = {
            **settings.kafka.client_options(),
            "client_id": self.source,
            "acks": "all",
            "enable_idempotence": True,
            "compression_type": "gzip",
            "linger_ms": 5,
            "retries": 2**31 - 1,
            "request_timeout_ms": 10000,
            "delivery_timeout_ms": 30000,
        }
        options.update(producer_options)
        self._producer = KafkaProducer(**options)

    def send_records(self, records: Iterable[Record], *, timeout_s: float = 30.0) -> list[RecordMetadata]:
        """Send and wait until Kafka acknowledged every record, at most ``timeout_s`` in all."""
        deadline = time.monotonic() + timeout_s
        try:
            futures = [self.send_nowait(r) for r in records]
        except KafkaError as exc:
            raise PublishError(f"Kafka did not take every record: {exc}") from exc
        return self.wait(futures, deadline=deadline)

    def send_nowait(self, record: Record) -> FutureRecordMetadata:
        """Hand one record to the producer; the returned future resolves on Kafka's ack."""
        return self._producer.send(record.topic, key=record.key, value=record.value, headers=record.headers)

    def wait(self, futures: list[FutureRecordMetadata], *, deadline: float) -> list[RecordMetadata]:
        """Wait (until the monotonic ``deadline``) for Kafka to acknowledge every future."""
        try:
            self._producer.flush(timeout=max(0.0, deadline - time.monotonic()))
            return [f.get(timeout=max(0.001, deadline - time.monotonic())) for f in futures]
        except KafkaError as exc:
            raise PublishError(f"Kafka did not acknowledge every record: {exc}") from exc

    def publish(self, events: Iterable[InboundEventBase], *, timeout_s: float = 30.0) -> list[RecordMetadata]:
        return self.send_records(
            (inbound_record(e, self.source, self.topic_prefix) for e in events), timeout_s=timeout_s
        )

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.close(timeout=timeout_s)

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
