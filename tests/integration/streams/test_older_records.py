"""A worker that finds, in its own changelog, a record it cannot read (one written by the versions that pickled
their records, or of a later format) stops at recovery with a message saying how to start fresh: it never
builds a table from a guess, and never goes on without the record."""

from __future__ import annotations

import base64
import pickle
import time

import msgspec
import pytest
from kafka import KafkaProducer

from streams.erasure import Forget
from streams.topology import TABLES, changelog_topics

START_FRESH = "docs/worker.md: records of an older format"


@pytest.mark.parametrize("value", [
    base64.b64encode(pickle.dumps(Forget("erasure-1"))),  # as Faust's pickle codec wrote the tables before #17
    msgspec.msgpack.encode((2, "customer_record", {})),  # a later format
], ids=["pickled", "later-format"])
@pytest.mark.parametrize("table", [0, 1, 2], ids=list(TABLES))
def test_a_changelog_record_the_worker_cannot_read_stops_it_at_recovery_with_how_to_start_fresh(
        pipeline_factory, value, table):
    own, worker = pipeline_factory()
    producer = KafkaProducer(**own.kafka.client_options(), acks="all")
    try:
        producer.send(changelog_topics(own)[table], key=b"eva", value=value, partition=0).get(timeout=30)
    finally:
        producer.close()
    worker.start()
    deadline = time.monotonic() + 90
    while worker.current.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    log = worker.log.read_text(errors="replace")
    assert worker.current.poll() not in (None, 0), log[-3000:]
    assert START_FRESH in log and f"the {TABLES[table]} table's changelog holds a value" in log, log[-3000:]
    assert "[^Worker]: Ready" not in log  # it never read an input
