"""The gateway's way to Kafka: one shared idempotent producer, bounded waits, readiness.

The producer is created on first use, so the gateway starts (and answers /healthz) while
Kafka is down; every wait is bounded by ``gateway.kafka_timeout_s`` and ends in
``SinkUnavailable`` (the gateway's 503), never a hang.
"""

from __future__ import annotations

import logging
import threading

from kafka.errors import KafkaError

from producers.publisher import EventPublisher, PublishError
from referrals.kafka_admin import broker_answers
from referrals.settings import Settings
from schemas.records import Record

log = logging.getLogger(__name__)


class SinkUnavailable(RuntimeError):
    pass


class KafkaSink:
    def __init__(self, settings: Settings, source: str = "gateway"):
        self.settings = settings
        self.source = source
        self.timeout_s = settings.gateway.kafka_timeout_s
        self._publisher: EventPublisher | None = None
        self._lock = threading.Lock()

    def _get(self) -> EventPublisher:
        with self._lock:
            if self._publisher is None:
                ms = int(self.timeout_s * 1000)
                try:
                    self._publisher = EventPublisher(
                        self.settings, source=self.source, linger_ms=2, max_block_ms=ms, bootstrap_timeout_ms=ms,
                        request_timeout_ms=ms, delivery_timeout_ms=max(30000, 2 * ms + 2),
                    )
                except KafkaError as exc:
                    raise SinkUnavailable(f"Kafka is not reachable: {type(exc).__name__}") from exc
            return self._publisher

    def send(self, records: list[Record], timeout_s: float | None = None) -> int:
        """Blocking: returns when Kafka acknowledged every record; SinkUnavailable otherwise."""
        try:
            acks = self._get().send_records(records, timeout_s=timeout_s or self.timeout_s, flush=False)
        except PublishError as exc:
            log.warning("Kafka did not acknowledge %d records in time: %s", len(records), exc.__cause__)
            raise SinkUnavailable("Kafka did not acknowledge in time") from exc
        return len(acks)

    def ready(self) -> bool:
        """Blocking: does the broker answer a metadata request now?"""
        return broker_answers(self.settings.kafka.bootstrap, client_id=f"{self.source}-readyz", timeout_s=2.0)

    def close(self) -> None:
        with self._lock:
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None
