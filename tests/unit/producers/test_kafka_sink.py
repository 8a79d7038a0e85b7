"""The gateway's sink around a stand-in producer: acknowledged or 503, every wait bounded, one producer
started however many requests come at once, a producer with a fatal error replaced. (Against the real
broker: tests/integration/producers/.)"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, OutOfOrderSequenceNumber

from producers.gateway.kafka_sink import KafkaSink, SinkUnavailable
from referrals.settings import Settings
from schemas.records import Record

RECORDS = [Record("t", b"k", b"v", []), Record("t", b"k2", b"v2", [])]


class StandIn:
    """Plays a producer: ``start_fails`` raises on start; ``ack`` decides each delivery (None: never)."""

    made: list[StandIn] = []

    def __init__(self, *, start_fails: bool = False, ack=lambda n: True, start_s: float = 0.0, **options):
        self.options, self.start_fails, self.ack, self.start_s = options, start_fails, ack, start_s
        self.sent, self.stopped = 0, False
        StandIn.made.append(self)

    async def start(self):
        await asyncio.sleep(self.start_s)
        if self.start_fails:
            raise KafkaConnectionError("no broker")

    async def stop(self):
        self.stopped = True

    async def send(self, topic, value, key=None, headers=None):
        future = asyncio.get_running_loop().create_future()
        outcome = self.ack(self.sent)
        self.sent += 1
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        elif outcome:
            future.set_result(None)
        return future


def sink(timeout_s: float = 0.3, **stand_in) -> KafkaSink:
    StandIn.made = []
    return KafkaSink(Settings(gateway={"kafka_timeout_s": timeout_s}),
                     producer_factory=lambda **options: StandIn(**stand_in, **options))


def test_acknowledged_records_are_counted_and_the_producer_is_idempotent_with_all_acks():
    own = sink()
    assert asyncio.run(own.send(RECORDS)) == 2
    options = StandIn.made[0].options
    assert options["acks"] == "all" and options["enable_idempotence"] is True
    assert options["bootstrap_servers"] == "127.0.0.1:9092"


def test_no_broker_is_unavailable_and_the_next_request_tries_again():
    own = sink(start_fails=True)

    async def twice():
        for _ in range(2):
            with pytest.raises(SinkUnavailable):
                await own.send(RECORDS)

    asyncio.run(twice())
    assert len(StandIn.made) == 2 and all(p.stopped for p in StandIn.made)


def test_acknowledgements_that_never_come_are_unavailable_within_the_bound():
    own = sink(timeout_s=0.3, ack=lambda n: None)
    started = time.monotonic()
    with pytest.raises(SinkUnavailable, match="in time"):
        asyncio.run(own.send(RECORDS))
    assert time.monotonic() - started < 2


def test_a_start_that_hangs_is_unavailable_within_the_bound():
    own = sink(timeout_s=0.3, start_s=60)
    started = time.monotonic()
    with pytest.raises(SinkUnavailable):
        asyncio.run(own.send(RECORDS))
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("error", [OutOfOrderSequenceNumber(), KafkaTimeoutError()], ids=type)
def test_a_failed_delivery_replaces_the_producer(error):
    own = sink(ack=lambda n: error if n == 1 else True)

    async def run():
        with pytest.raises(SinkUnavailable, match="refused"):
            await own.send(RECORDS)
        assert await own.send(RECORDS[:1]) == 1

    asyncio.run(run())
    assert len(StandIn.made) == 2 and StandIn.made[0].stopped and not StandIn.made[1].stopped


def test_late_acknowledgements_keep_the_producer():
    own = sink(timeout_s=0.2, ack=lambda n: None if n == 0 else True)

    async def run():
        with pytest.raises(SinkUnavailable, match="in time"):
            await own.send(RECORDS[:1])
        assert await own.send(RECORDS[:1]) == 1

    asyncio.run(run())
    assert len(StandIn.made) == 1


def test_requests_at_once_start_one_producer():
    own = sink(start_s=0.05)

    async def many():
        return await asyncio.gather(*(own.send(RECORDS) for _ in range(20)))

    assert asyncio.run(many()) == [2] * 20
    assert len(StandIn.made) == 1


def test_close_stops_the_producer():
    own = sink()

    async def run():
        await own.send(RECORDS)
        await own.close()

    asyncio.run(run())
    assert StandIn.made[0].stopped


def test_started_ahead_of_the_first_request_which_then_uses_that_producer():
    own = sink()

    async def run():
        await own.start()
        assert len(StandIn.made) == 1
        await own.send(RECORDS)

    asyncio.run(run())
    assert len(StandIn.made) == 1 and StandIn.made[0].sent == 2


@pytest.mark.parametrize("stand_in", [{"start_fails": True}, {"start_s": 5.0}], ids=["refused", "no answer"])
def test_a_start_without_kafka_ends_quietly_within_the_bound_and_the_first_request_tries_again(stand_in):
    own = sink(timeout_s=0.3, **stand_in)
    started = time.monotonic()
    asyncio.run(own.start())
    assert time.monotonic() - started < 2 and StandIn.made[0].stopped
    own.producer_factory = lambda **options: StandIn(**options)  # Kafka is back
    assert asyncio.run(own.send(RECORDS)) == 2
