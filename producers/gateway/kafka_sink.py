"""The gateway's way to Kafka: one shared idempotent producer, bounded waits, readiness.

The producer is created on first use, so the gateway starts (and answers /healthz) while
Kafka is down; every wait is bounded by ``gateway.kafka_timeout_s`` and ends in
``SinkUnavailable`` (the gateway's 503), never a hang.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import anyio
from kafka.errors import KafkaError

from referrals.kafka_admin import broker_answers
from referrals.publisher import EventPublisher
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

    async def send(self, records: list[Record], timeout_s: float | None = None) -> int:
        """Returns when Kafka acknowledged every record; SinkUnavailable otherwise. The records are handed to
        the producer in a worker thread (that may wait for metadata or buffer space), the acks are awaited on
        the event loop, with no thread blocked per request."""
        timeout = timeout_s or self.timeout_s
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[int] = loop.create_future()
        try:
            futures = await anyio.to_thread.run_sync(self._hand_over, records)
        except KafkaError as exc:
            log.warning("Kafka did not take %d records: %s", len(records), type(exc).__name__)
            raise SinkUnavailable("Kafka did not take the records") from exc
        _AckCountdown(loop, acked, futures)
        try:
            return await asyncio.wait_for(acked, timeout)
        except (TimeoutError, KafkaError) as exc:
            log.warning("Kafka did not acknowledge %d records in time: %s", len(records), type(exc).__name__)
            raise SinkUnavailable("Kafka did not acknowledge in time") from exc

    def _hand_over(self, records: list[Record]) -> list:
        publisher = self._get()
        return [publisher.send_nowait(r) for r in records]

    def ready(self) -> bool:
        """Blocking: does the broker answer a metadata request now?"""
        return broker_answers(self.settings.kafka, client_id=f"{self.source}-readyz", timeout_s=2.0)

    def close(self) -> None:
        with self._lock:
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None


class _AckCountdown:
    """Resolves ``done`` (on its loop) with the number of records once Kafka acknowledged all of them, or with
    the first error; the producer's callbacks run on its I/O thread, so only the last one touches the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future, futures: list) -> None:
        self.loop, self.done, self.total = loop, done, len(futures)
        self.left = len(futures)
        self.lock = threading.Lock()
        self.failed = False
        if not futures:
            loop.call_soon(self._resolve, None)
        for f in futures:
            f.add_callback(self._acked)
            f.add_errback(self._failed)

    def _acked(self, _metadata) -> None:
        with self.lock:
            self.left -= 1
            last = self.left == 0 and not self.failed
        if last:
            self.loop.call_soon_threadsafe(self._resolve, None)

    def _failed(self, exc: BaseException) -> None:
        with self.lock:
            first = not self.failed
            self.failed = True
        if first:
            self.loop.call_soon_threadsafe(self._resolve, exc)

    def _resolve(self, exc: BaseException | None) -> None:
        if self.done.done():
            return
        if exc is None:
            self.done.set_result(self.total)
        else:
            self.done.set_exception(exc)
