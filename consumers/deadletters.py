"""``referrals deadletter list|replay``: see what was refused and why, and re-inject fixed records.

``list`` reads the dead-letter topic and prints one line per record (``--json``: one JSON
object per line, with the original value as text, the form ``replay`` takes back).

``replay FILE`` takes such JSON lines, with ``value`` corrected by hand, checks each one
against its source topic's contract exactly as the worker will, and produces the valid
ones to their source topic (keyed as the gateway keys them). Each dead letter is replayed
once: a second replay of the same id is skipped unless ``--again`` (and should one be sent
twice, say after a crash between sending and noting it, the event id makes the second
copy a duplicate the worker ignores). Nothing invalid is produced; the result says, per
line, what happened and why.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from consumers import kafka_log
from referrals.publisher import EventPublisher
from referrals.settings import Settings
from schemas.derived import DeadLetter
from schemas.records import inbound_record
from schemas.topics import DEADLETTER, INBOUND
from streams.deadletter import classify


@dataclass(frozen=True, slots=True)
class Letter:
    id: str  # "<partition>:<offset>" in the dead-letter topic
    letter: DeadLetter

    def as_json(self, prefix: str) -> dict[str, Any]:
        value = self.letter.original_value
        try:
            text, encoding = value.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(value).decode("ascii"), "base64"
        topic = self.letter.source_topic
        return {"id": self.id, "source_topic": topic[len(prefix):] if prefix and topic.startswith(prefix) else topic,
                "source_partition": self.letter.source_partition, "source_offset": self.letter.source_offset,
                "reason": self.letter.reason, "problems": self.letter.problems,
                "received_at": self.letter.received_at.isoformat(), "encoding": encoding, "value": text}


def read_letters(settings: Settings) -> list[Letter]:
    topic = settings.kafka.topic_prefix + DEADLETTER.name
    until = kafka_log.end_offsets(settings, [topic])
    return [Letter(f"{r.partition}:{r.offset}", DeadLetter.model_validate_json(r.value))
            for r in kafka_log.read(settings, until)]


def replayed_key(key_prefix: str) -> str:
    return f"{key_prefix}{{dl}}:replayed"


@dataclass(frozen=True, slots=True)
class Outcome:
    id: str
    result: str  # replayed, skipped, invalid
    detail: str


def replay(settings: Settings, lines: list[dict[str, Any]], client: redis.Redis, *, again: bool = False,
           publisher: EventPublisher | None = None) -> list[Outcome]:
    prefix = settings.kafka.topic_prefix
    key = replayed_key(settings.redis.key_prefix)
    outcomes: list[Outcome] = []
    records, ids = [], []
    now = datetime.now(UTC)
    for line in lines:
        letter_id = str(line.get("id", "?"))
        if not again and client.sismember(key, letter_id):
            outcomes.append(Outcome(letter_id, "skipped", "replayed before (use --again to replay it anyway)"))
            continue
        topic = prefix + str(line.get("source_topic", ""))
        if topic not in {prefix + spec.name for spec in INBOUND}:
            outcomes.append(Outcome(letter_id, "invalid", f"source_topic must be an inbound topic, not "
                                                          f"{line.get('source_topic')!r}"))
            continue
        raw = line.get("value", "")
        value = base64.b64decode(raw) if line.get("encoding") == "base64" else str(raw).encode()
        parsed = classify(topic=topic, partition=0, offset=0, key=None, value=value, received_at=now,
                          topic_prefix=prefix)
        if isinstance(parsed, DeadLetter):
            detail = "; ".join(f"{p.get('field', '')}: {p.get('message', p.get('rule', ''))}" for p in parsed.problems)
            outcomes.append(Outcome(letter_id, "invalid", f"{parsed.reason}: {detail}" if detail else parsed.reason))
            continue
        records.append(inbound_record(parsed, "referrals-cli/deadletter-replay", prefix))
        ids.append(letter_id)
    if records:
        own = publisher is None
        publisher = publisher or EventPublisher(settings, source="referrals-cli/deadletter-replay")
        try:
            publisher.send_records(records)
        finally:
            if own:
                publisher.close()
        client.sadd(key, *ids)
        outcomes += [Outcome(i, "replayed", f"sent to {r.topic[len(prefix):]}") for i, r in zip(ids, records,
                                                                                              strict=True)]
    return outcomes
