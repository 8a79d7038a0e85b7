"""The gateway (``referrals api``, a process of its own) SIGKILLed in the middle of a burst of requests:
every event it answered 202 for is on Kafka; clients then send every event again to a new gateway (they
cannot know which of the unanswered ones got through), and the worker counts each event once."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bench.gateway_bench import BENCH_KEY, Gateway, share_event
from deploy.local.processes import free_port
from tests.integration.support.kafka_reading import read_topic
from tests.integration.support.worker import redis_funnel, wait_for

pytestmark = pytest.mark.faults


def test_every_202_of_a_killed_gateway_is_on_kafka_and_a_full_retry_counts_each_once(pipeline_factory, tmp_path,
                                                                                      soak_factor):
    own, worker = pipeline_factory()
    n = 3000 * soak_factor
    events = [share_event("burst", i) | {"channel": ("whatsapp", "email", "sms")[i % 3]} for i in range(n)]
    gateway = Gateway(own, free_port(), tmp_path / "gateway.log")
    gateway.start()  # sends one warm-up share
    accepted: set[str] = set()
    answers: Counter = Counter()
    lock = threading.Lock()

    # one client for all threads: a client per request spends its time building TLS contexts, not posting
    client = httpx.Client(base_url=gateway.url, timeout=10, headers={"Authorization": f"Bearer {BENCH_KEY}"})

    def post(event: dict) -> None:
        try:
            response = client.post("/v1/events", json=event)
            answer = str(response.status_code)
        except httpx.TransportError as exc:
            answer = type(exc).__name__
        with lock:
            answers[answer] += 1
            if answer == "202":
                accepted.add(event["event_id"])

    try:
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(post, e) for e in events]
            deadline = time.monotonic() + 60 * soak_factor
            while answers["202"] < n // 3:
                assert gateway.proc.poll() is None, "the gateway died before it was killed"
                assert time.monotonic() < deadline, answers
                time.sleep(0.01)
            gateway.proc.kill()  # SIGKILL: no shutdown, no flush
            gateway.proc.wait()
            for future in futures:
                future.result()
    finally:
        client.close()
        gateway.stop()
    assert n // 3 <= len(accepted) < n, answers  # killed mid-burst
    on_kafka = {json.loads(r.value)["event_id"]
                for r in read_topic(own, own.kafka.topic_prefix + "referrals.shares", expected=len(accepted) + 1,
                                    timeout_s=30 * soak_factor)}
    assert accepted <= on_kafka  # every 202 is on Kafka

    again = Gateway(own, free_port(), tmp_path / "gateway-again.log")
    again.start()
    try:
        for i in range(0, n, 100):  # every event again, in batches
            again.post(events[i:i + 100])
    finally:
        again.stop()
    worker.start()
    want = Counter(f"share:{e['channel']}" for e in events) + Counter({"share:whatsapp": 1})  # + the warm-up
    wait_for(lambda: (redis_funnel(own) == want, redis_funnel(own) - want), timeout_s=180 * soak_factor)
