"""The gateway and the worker while their broker restarts (a throw-away stack of their own): the gateway
answers 503 with Retry-After while Kafka is down, 202 again by itself when it is back, and every 202 event
is on Kafka; the worker resumes by itself."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import httpx
import pytest

from deploy.local.stack import LocalStack
from referrals.settings import changed
from streams.topology import prepare_topics
from tests.integration.fixtures.gateway import APP_KEY
from tests.integration.support.kafka_reading import read_topic
from tests.integration.support.worker import WorkerProcess, held_then_ticked, send, simulated

pytestmark = pytest.mark.faults


def share(i: int) -> bytes:
    return json.dumps({"type": "share", "event_id": f"restart-{i}", "referrer_id": f"cust-{i}", "channel": "sms",
                       "occurred_at": datetime.now(UTC).isoformat()}).encode()


def post(gw, i: int) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/events", content=share(i), headers={"Authorization": f"Bearer {APP_KEY}"},
                      timeout=30)


def test_gateway_answers_503_while_kafka_is_down_and_recovers_by_itself(isolated_settings, app_factory):
    stack = LocalStack(isolated_settings)
    try:
        stack.up(echo=lambda m: None)
        gw = app_factory(base=isolated_settings, kafka_timeout_s=2.0)
        accepted = []
        assert post(gw, 0).status_code == 202
        accepted.append(0)

        stack.kafka.down()
        down = post(gw, 1)
        assert down.status_code == 503 and down.headers["Retry-After"] == "5"
        assert httpx.get(f"{gw.url}/readyz", timeout=30).status_code == 503

        stack.kafka.up(echo=lambda m: None)
        deadline = time.monotonic() + 90
        i = 2
        while True:  # a client retrying after Retry-After; the gateway is not restarted
            response = post(gw, i)
            if response.status_code == 202:
                accepted.append(i)
                break
            assert response.status_code == 503, response.text
            assert time.monotonic() < deadline, "the gateway did not recover within 90 s"
            time.sleep(1)
            i += 1
        for j in range(i + 1, i + 4):
            assert post(gw, j).status_code == 202
            accepted.append(j)
        records = read_topic(gw.settings, gw.topic("referrals.shares"), expected=len(accepted), timeout_s=20)
        got = {json.loads(r.value)["event_id"] for r in records}
        assert {f"restart-{k}" for k in accepted} <= got
    finally:
        stack.down()


def test_the_worker_rides_out_a_broker_restart_and_ends_as_the_pure_core_decides(isolated_settings, tmp_path,
                                                                                  soak_factor):
    """The broker stopped for 10 s and started again mid-run: the worker reconnects by itself (no restart)
    and ends where an uninterrupted run ends."""
    stack = LocalStack(isolated_settings)
    own = changed(isolated_settings, streams={
        "app_id": "broker-restart", "tick_interval_s": 0,  # ticked by the test, see ``tick``
        "metrics_port": 0})
    worker = WorkerProcess(own, tmp_path / "worker.log")
    try:
        stack.up(echo=lambda m: None)
        prepare_topics(own)
        n = 2000 * soak_factor
        events = simulated(own, 29, n)
        worker.start()
        worker.wait_ready()
        send(own, events[:n // 2])
        time.sleep(2)  # the worker busy with them
        stack.kafka.down()
        time.sleep(10)
        worker.assert_alive()
        stack.kafka.up(echo=lambda m: None)
        send(own, events[n // 2:])
        held_then_ticked(events, [(own, worker)], timeout_s=240 * soak_factor)
        assert len(worker.procs) == 1  # resumed by itself
    finally:
        worker.stop()
        stack.down()
