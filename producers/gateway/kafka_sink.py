"""The gateway's way to Kafka: one idempotent aiokafka producer on the gateway's own event loop, bounded
waits, readiness.

The producer is started as the gateway starts (``start``: each worker process's first requests would
otherwise wait for it, which showed as the gateway's p99) but not waited for: while Kafka is down the
gateway starts and answers /healthz, and the next request tries again.
``send`` returns only when Kafka acknowledged every record (acks=all); every wait, from starting the
producer to the last acknowledgement, is bounded by ``gateway.kafka_timeout_s`` and ends in
``SinkUnavailable`` (the gateway's 503), never a hang. No thread per request: records go to the
producer's buffer and acknowledgements come back on the event loop. A producer that refused or failed a
delivery is dropped and the next request starts a new one (a new idempotent session, no sequence gap
carried over); one whose acknowledgements are only late is kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import anyio
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from referrals.kafka_admin import broker_answers
from referrals.settings import Settings
from schemas.records import Record

log = logging.getLogger(__name__)

# kafka-python's default, as the Python client and the simulator produce (README, dependencies)
COMPRESSION = "gzip"


class SinkUnavailable(RuntimeError):
    pass


def _retrieve(future: asyncio.Future) -> None:
    """A delivery that ended after its request gave up: its error was answered with the 503 already."""
    if not future.cancelled():
        future.exception()


class KafkaSink:
    def __init__(self, settings: Settings, source: str = "gateway",
                 producer_factory: Callable[..., AIOKafkaProducer] = AIOKafkaProducer):
        self.settings = settings
        self.producer_factory = producer_factory
        self.source = source
        self.timeout_s = settings.gateway.kafka_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._starting: asyncio.Lock | None = None

    def _options(self) -> dict[str, object]:
        ms = int(self.timeout_s * 1000)
        return {
            **self.settings.kafka.aiokafka_options(), "client_id": self.source, "acks": "all",
            "enable_idempotence": True, "compression_type": COMPRESSION, "linger_ms": 2,
            "request_timeout_ms": max(ms, 1000), "max_batch_size": 64 * 1024,
        }

    async def _get(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._producer is None:
                producer = self.producer_factory(**self._options())
                try:
                    await producer.start()
                except BaseException:
                    await self._stop(producer)
                    raise
                self._producer = producer
        return self._producer

    async def start(self) -> None:
        """Start the producer now, before the first request needs it; if Kafka does not answer within the
        bound, the first request tries again."""
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._get()
        except (TimeoutError, KafkaError) as exc:
            log.info("the Kafka producer did not start yet (%s): the first request tries again", type(exc).__name__)

    async def _stop(self, producer: AIOKafkaProducer) -> None:
        try:
            await asyncio.wait_for(producer.stop(), self.timeout_s)
        except Exception as exc:  # stopping a producer that never got a broker: nothing to flush
            log.debug("stopping the producer: %s", type(exc).__name__)

    async def _drop(self, producer: AIOKafkaProducer) -> None:
        if self._producer is producer:
            self._producer = None
            await self._stop(producer)

    async def send(self, records: list[Record], timeout_s: float | None = None) -> int:
        """Returns when Kafka acknowledged every record; SinkUnavailable otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout_s or self.timeout_s)
        producer = None
        try:
            async with asyncio.timeout_at(deadline):
                producer = await self._get()
                futures = [await producer.send(r.topic, r.value, key=r.key, headers=r.headers) for r in records]
        except TimeoutError as exc:
            log.warning("Kafka did not take %d records in time", len(records))
            raise SinkUnavailable("Kafka did not take the records in time") from exc
        except KafkaError as exc:
            log.warning("Kafka did not take %d records: %s", len(records), type(exc).__name__)
            if producer is not None:
                await self._drop(producer)
            raise SinkUnavailable(f"Kafka did not take the records: {type(exc).__name__}") from exc
        for future in futures:
            future.add_done_callback(_retrieve)
        _, pending = await asyncio.wait(futures, timeout=max(0.0, deadline - loop.time()))
        if pending:
            log.warning("Kafka did not acknowledge %d of %d records in time", len(pending), len(records))
            raise SinkUnavailable("Kafka did not acknowledge in time")
        failed = next((f.exception() for f in futures if f.exception() is not None), None)
        if failed is not None:
            log.warning("Kafka refused records: %s", type(failed).__name__)
            await self._drop(producer)  # a new idempotent session: no sequence gap carried over
            raise SinkUnavailable(f"Kafka refused the records: {type(failed).__name__}")
        return len(records)

    async def ready(self) -> bool:
        """Does the broker answer a metadata request now?"""
        return await anyio.to_thread.run_sync(
            lambda: broker_answers(self.settings.kafka, client_id=f"{self.source}-readyz", timeout_s=2.0))

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await self._stop(producer)
