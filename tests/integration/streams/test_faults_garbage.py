"""Garbage written straight to every inbound topic, and to the worker's own topics, between valid events:
every garbage record ends in the dead-letter topic with a reason, once; the worker never stops; the valid
events around them all count; a pickle that would run code runs none (no pickle is read)."""

from __future__ import annotations

import json
import pickle
import random
from datetime import UTC, datetime

import pytest
from kafka import KafkaProducer
from msgspec.msgpack import encode as msgpack_encode

from schemas.topics import CUSTOMER_FACTS, DEADLETTER, INBOUND, REFERRER_FACTS, VISITOR_FACTS
from streams import stages
from streams.deadletter import DeadLetter, classify, classify_internal
from streams.erasure import Forget
from streams.record_codec import encode
from streams.referrer_rewards import Tick
from streams.topology import input_topics
from tests.integration.support.kafka_reading import read_topic
from tests.integration.support.worker import held_then_ticked, simulated

pytestmark = pytest.mark.faults

LOOK_ALIKES = str.maketrans("aeocp", "\u0430\u0435\u043e\u0441\u0440")  # Cyrillic letters that look Latin


def garbage(rnd: random.Random, valid: dict) -> bytes | None:
    """One hostile record value: random bytes, broken UTF-8 or JSON, or a valid event broken one way."""
    kind = rnd.randrange(12)
    if kind == 0:
        return bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 400)))
    if kind == 1:
        return b"\xff\xfe" + json.dumps(valid).encode()  # not UTF-8
    if kind == 2:
        return None  # a tombstone
    if kind == 3:
        return b""
    if kind == 4:
        return rnd.choice([b"null", b"42", b'"share"', b"[1, 2, 3]", b"NaN", b"{", b'{"type": "share"'])
    if kind == 5:
        return b"[" * 5000 + b"]" * 5000  # deep nesting
    if kind == 6:
        return json.dumps(valid | {"event_id": "x" * 100_000}).encode()  # a huge string
    if kind == 7:
        return json.dumps(valid | {"occurred_at": rnd.choice(["yesterday", "2999-01-01T00:00:00Z", 12]),
                                   "event_id": f"bad-time-{rnd.random()}"}).encode()
    if kind == 8:
        return json.dumps(valid | {"type": rnd.choice(["share", "click", "signup", "order", "refund", "x"]) + "s",
                                   "event_id": f"bad-type-{rnd.random()}"}).encode()
    if kind == 9:  # a type with a Cyrillic look-alike ("shаre")
        return json.dumps(valid | {"type": valid["type"].translate(LOOK_ALIKES),
                                   "event_id": f"look-alike-{rnd.random()}"}).encode()
    if kind == 10:
        return json.dumps(valid | {"event_id": f"extra-{rnd.random()}", "is_admin": True}).encode()
    return json.dumps([valid["event_id"]] * 10_000).encode()  # a 10,000-element array


class RunsCode:
    """Unpickled by plain ``pickle.loads``, this would create a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


INTERNAL = (VISITOR_FACTS, CUSTOMER_FACTS, REFERRER_FACTS)


def internal_garbage(rnd: random.Random, trap: str, topic: str) -> bytes | None:
    """One hostile record for a stage's own topic: a pickle that would run code, an envelope naming no record
    type, a record of the wrong kind, of another format, of the wrong shape, cut short, random bytes, a
    tombstone."""
    kind = rnd.randrange(8)
    if kind == 0:
        return pickle.dumps(RunsCode(trap))
    if kind == 1:
        return msgpack_encode((1, "builtins.open", {"file": trap, "mode": "w"}))
    if kind == 2:  # a fact of a kind the topic's stage does not take
        return encode(Tick(datetime.now(UTC)) if topic != REFERRER_FACTS.name else stages.VisitorRecord())
    if kind == 3:
        return bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 400)))
    if kind == 4:
        return None
    if kind == 5:
        return msgpack_encode((2, "forget", {"erasure_id": "erasure-x"}))
    if kind == 6:
        return msgpack_encode((1, "forget", {"erasure_id": 10**9}))
    return encode(Forget("erasure-x"))[:-2]  # cut short


def test_garbage_on_every_inbound_topic_is_dead_lettered_once_and_the_valid_events_all_count(pipeline_factory,
                                                                                             soak_factor, tmp_path):
    own, worker = pipeline_factory(tick_interval_s=0)  # ticked by the test, see ``support/worker.py's tick``
    trap = tmp_path / "owned-by-a-pickle"
    events = simulated(own, 26, 1200 * soak_factor)
    prefix = own.kafka.topic_prefix
    rnd = random.Random(26)
    first_of = {spec.name: next(e for e in events if e["type"] == spec.event_type) for spec in INBOUND}
    now = datetime.now(UTC)
    producer = KafkaProducer(bootstrap_servers=own.kafka.bootstrap, acks="all", max_request_size=4 * 1024 * 1024)
    sent_garbage = 0
    worker.start()
    try:
        # the valid events in order, a garbage record on a random inbound topic after every 30th
        for i, event in enumerate(events):
            spec = next(s for s in INBOUND if s.event_type == event["type"])
            producer.send(prefix + spec.name, key=event[spec.key_field].encode(), value=json.dumps(event).encode())
            if i % 30 == 0:
                for spec in INBOUND:
                    if rnd.random() < 0.5 or i == 0:
                        value = garbage(rnd, first_of[spec.name])
                        assert isinstance(classify(topic=prefix + spec.name, partition=0, offset=0, key=b"k",
                                                   value=value, received_at=now, topic_prefix=prefix), DeadLetter)
                        key = rnd.choice([b"k", None, bytes([rnd.randrange(256)])])
                        producer.send(prefix + spec.name, key=key if value is not None else b"k", value=value)
                        sent_garbage += 1
                for spec in INTERNAL:
                    if rnd.random() < 0.3 or i == 0:
                        value = internal_garbage(rnd, str(trap), spec.name)
                        assert isinstance(classify_internal(topic=prefix + spec.name, partition=0, offset=0,
                                                            key=b"k", value=value, received_at=now,
                                                            topic_prefix=prefix), DeadLetter)
                        producer.send(prefix + spec.name, key=rnd.choice([b"r1", b"\xff", None]) or b"k",
                                      value=value)
                        sent_garbage += 1
        producer.flush()
    finally:
        producer.close()
    assert sent_garbage >= 110 * soak_factor
    held_then_ticked(events, [(own, worker)], timeout_s=180 * soak_factor)
    letters = [json.loads(r.value) for r in read_topic(own, prefix + DEADLETTER.name, expected=sent_garbage,
                                                     timeout_s=60 * soak_factor)]
    assert len(letters) == sent_garbage  # each once
    assert len({(d["source_topic"], d["source_partition"], d["source_offset"]) for d in letters}) == sent_garbage
    assert {d["source_topic"] for d in letters} == set(input_topics(own))
    assert all(d["reason"] for d in letters)
    assert {"damaged_record", "unknown_record", "wrong_fact"} <= {d["reason"] for d in letters}
    assert not trap.exists()  # the worker built nothing a record named
    worker.assert_alive()
