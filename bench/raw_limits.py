"""The raw limits of this machine, measured in the same run as the pipeline: what Kafka and Redis do
with nothing of ours in the way.

- Kafka produce: Kafka's own ``ProducerPerformance`` (Java, from Maven-resolved jars) and the
  kafka-python producer alone, 200-byte records, acks=all;
- also the aiokafka producer alone (the client Faust produces with);
- Kafka consume: an aiokafka consumer (the library Faust sits on) that reads and JSON-decodes
  every record and does nothing else;
- Faust: an agent with the worker's Faust set-up that only takes its events in batches and decodes
  them (``bench.faust_floor``): what the framework costs before the pipeline does anything;
- Redis: counter increments through redis-py, pipelined 1,000 to a round trip.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaProducer

from deploy.local.processes import StackError
from referrals.redis_client import redis_client
from referrals.settings import PROJECT_ROOT, Settings, worker_environment

RECORD_BYTES = 200
TOOLS_POM = PROJECT_ROOT / "bench" / "kafka-tools" / "pom.xml"


def payload(i: int) -> bytes:
    """A 200-byte JSON record (an event-sized value that a consumer can decode)."""
    head = json.dumps({"type": "share", "event_id": f"raw-{i:012d}", "channel": "whatsapp", "pad": ""})
    return (head[:-2] + "x" * (RECORD_BYTES - len(head)) + '"}').encode()


# -- Kafka's own producer performance tool -----------------------------------------------------------

def tools_dir(settings: Settings) -> Path:
    return settings.state_dir / "kafka" / "tools-libs"


def resolve_tools(settings: Settings, echo=print) -> Path:
    """Resolve Kafka's tools jars with Maven (once per version of the pom); returns the folder."""
    libs = tools_dir(settings)
    digest = hashlib.sha256(TOOLS_POM.read_bytes()).hexdigest()
    marker = libs / ".pom-sha256"
    if marker.exists() and marker.read_text() == digest:
        return libs
    echo("resolving Kafka's performance tools with Maven ...")
    libs.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mvn", "-B", "-q", "-f", str(TOOLS_POM), "dependency:copy-dependencies",
                           "-DincludeScope=runtime", f"-DoutputDirectory={libs}"], capture_output=True, text=True)
    if done.returncode != 0:
        raise StackError(f"Maven could not resolve Kafka's tools:\n{(done.stdout + done.stderr)[-4000:]}")
    marker.write_text(digest)
    return libs


def tools_version(libs: Path) -> str:
    found = sorted(libs.glob("kafka-tools-[0-9]*.jar"))
    return found[0].stem.removeprefix("kafka-tools-") if found else "?"


_PERF_LINE = re.compile(r"(\d+) records sent, ([\d.]+) records/sec .*?([\d.]+) ms avg latency")


def kafka_tool_produce(settings: Settings, topic: str, records: int) -> float:
    """records/s of ``ProducerPerformance`` with 200-byte records, acks=all, as fast as it can."""
    libs = tools_dir(settings)
    argv = ["java", "-Xmx512m", "-cp", f"{libs}/*", "org.apache.kafka.tools.ProducerPerformance",
            "--topic", topic, "--num-records", str(records), "--record-size", str(RECORD_BYTES),
            "--throughput", "-1", "--command-property", f"bootstrap.servers={settings.kafka.bootstrap}", "acks=all",
            *settings.kafka.java_client_properties()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    summary = [m for m in _PERF_LINE.finditer(done.stdout)]
    if done.returncode != 0 or not summary or int(summary[-1].group(1)) != records:
        raise StackError(f"ProducerPerformance failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return float(summary[-1].group(2))


# -- kafka-python ------------------------------------------------------------------------------------

def kafka_python_produce(settings: Settings, topic: str, records: int) -> float:
    """records/s of a bare kafka-python producer (acks=all, linger 5 ms), until every record is acknowledged."""
    values = [payload(i) for i in range(records)]
    producer = KafkaProducer(**settings.kafka.client_options(), acks="all", linger_ms=5,
                             batch_size=64 * 1024)
    try:
        producer.partitions_for(topic)  # metadata before the clock starts
        started = time.perf_counter()
        for i, value in enumerate(values):
            producer.send(topic, key=str(i % 1024).encode(), value=value)
        producer.flush()
        return records / (time.perf_counter() - started)
    finally:
        producer.close()


# -- aiokafka ------------------------------------------------------------------------------------------

def aiokafka_produce(settings: Settings, topic: str, records: int) -> float:
    """records/s of a bare aiokafka producer (acks=all, linger 5 ms; the client Faust produces with)."""
    values = [payload(i) for i in range(records)]

    async def run() -> float:
        producer = AIOKafkaProducer(**settings.kafka.aiokafka_options(), acks="all", linger_ms=5,
                                    max_batch_size=64 * 1024)
        await producer.start()
        try:
            await producer.partitions_for(topic)
            started = time.perf_counter()
            futures = [await producer.send(topic, value, key=str(i % 1024).encode()) for i, value in enumerate(values)]
            await asyncio.gather(*futures)
            return records / (time.perf_counter() - started)
        finally:
            await producer.stop()

    return asyncio.run(run())


def aiokafka_consume(settings: Settings, topic: str, records: int) -> float:
    """records/s of an aiokafka consumer reading ``records`` from the start of ``topic`` and decoding each."""

    async def run() -> float:
        consumer = AIOKafkaConsumer(topic, **settings.kafka.aiokafka_options(), group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            seen = 0
            started = time.perf_counter()
            while seen < records:
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
                for messages in batches.values():
                    for message in messages:
                        json.loads(message.value)
                    seen += len(messages)
            return seen / (time.perf_counter() - started)
        finally:
            await consumer.stop()

    return asyncio.run(run())


# -- Redis -----------------------------------------------------------------------------------------------

def redis_pipelined_incr(settings: Settings, key_prefix: str, ops: int, pipeline: int = 1000) -> float:
    """ops/s of HINCRBY through redis-py, ``pipeline`` commands to a round trip, over 1,000 keys."""
    client = redis_client(settings)
    try:
        started = time.perf_counter()
        done = 0
        while done < ops:
            pipe = client.pipeline(transaction=False)
            for i in range(done, min(done + pipeline, ops)):
                pipe.hincrby(f"{key_prefix}raw:{i % 1000}", "n", 1)
            pipe.execute()
            done = min(done + pipeline, ops)
        rate = ops / (time.perf_counter() - started)
        keys = list(client.scan_iter(match=f"{key_prefix}raw:*", count=1000))
        if keys:
            client.delete(*keys)
        return rate
    finally:
        client.close()


# -- Faust ------------------------------------------------------------------------------------------------

def faust_empty_agent(settings: Settings, topic: str, records: int, work_dir: Path, cython: bool = False) -> float:
    """records/s of a Faust agent that only takes and decodes its events (``bench.faust_floor``); ``cython``:
    with faust-streaming's opt-in Cython fast paths."""
    variant = "-cython" if cython else ""
    out = work_dir / f"faust-floor-{topic}{variant}.json"
    work_dir.mkdir(parents=True, exist_ok=True)
    log = work_dir / f"faust-floor-{topic}{variant}.log"
    with log.open("wb") as sink:
        done = subprocess.run([sys.executable, "-m", "bench.faust_floor", topic, str(records), str(out)],
                              stdout=sink, stderr=subprocess.STDOUT, timeout=900, cwd=PROJECT_ROOT,
                              env={**os.environ, **worker_environment(settings, ("kafka", "redis", "streams")),
                                   "BENCH_CYTHON": "1" if cython else "0"})
    if done.returncode != 0 or not out.exists():
        raise StackError(f"the empty Faust agent failed (exit {done.returncode}):\n{log.read_text()[-3000:]}")
    return float(json.loads(out.read_text())["records_per_s"])
