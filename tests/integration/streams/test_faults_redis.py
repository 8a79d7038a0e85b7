"""Redis restarted and stopped for 30 s while the pipeline runs (a Redis server of the test's own): the
gateway keeps accepting (Kafka is its only dependency for events), the worker waits Redis out with backoff
and does not die, and at the end every counter, referral and reward equals an uninterrupted run's."""

from __future__ import annotations

import time

import httpx
import pytest

from deploy.local.processes import free_port
from deploy.local.redis_server import RedisServer
from referrals.settings import changed
from tests.integration.support.worker import assert_same_books, held_then_ticked, send, simulated

pytestmark = pytest.mark.faults

EVERY_TYPE_KEY = "every-type-key-for-tests-0123456789"
OUTAGE_S = 30


@pytest.fixture
def own_redis(settings, tmp_path):
    """Settings with a Redis server of this test's own (AOF on, as the stack runs it), which it may stop."""
    own = changed(settings, state_dir=tmp_path / "own-redis", redis={"port": free_port()})
    server = RedisServer(own)
    server.up(echo=lambda m: None)
    yield own, server
    server.down()


def post_all(gw, events: list[dict]) -> None:
    """Through the gateway in batches of 100; every batch must be accepted."""
    for i in range(0, len(events), 100):
        response = httpx.post(f"{gw.url}/v1/events", json=events[i:i + 100],
                              headers={"Authorization": f"Bearer {EVERY_TYPE_KEY}"}, timeout=30)
        assert response.status_code == 202, response.text


def test_redis_restarted_and_stopped_for_30_s_mid_run_loses_and_doubles_nothing(own_redis, pipeline_factory,
                                                                                  app_factory, soak_factor):
    base, server = own_redis
    calm, calm_worker = pipeline_factory("calm", tick_interval_s=0)  # ticked by the test, see ``tick``
    own, worker = pipeline_factory("outage", tick_interval_s=0, base=base)
    n = 2400 * soak_factor
    events = simulated(calm, 31, n)
    simulated(own, 31, n)  # the same codes in the other Redis
    gw = app_factory(base=own, data_of=own, api_keys=[
        {"name": "every-type", "key": EVERY_TYPE_KEY, "types": ["share", "click", "signup", "order", "refund"]}])
    calm_worker.start()
    worker.start()
    worker.wait_ready()
    thirds = [events[:n // 3], events[n // 3:2 * n // 3], events[2 * n // 3:]]
    # the uninterrupted run gets the same chunks at the same moments: the same arrival order, as far as it goes
    # (rewards a late event voids exist or not depending on it, see ``drop_ghosts``; the ledger counts them)

    send(calm, thirds[0])
    post_all(gw, thirds[0])
    time.sleep(2)  # the worker busy with them
    server.down()  # a restart: SIGTERM (the AOF synced), then up again on the same files
    server.up(echo=lambda m: None)
    send(calm, thirds[1])
    post_all(gw, thirds[1])
    time.sleep(1)
    server.down()
    stopped = time.monotonic()
    send(calm, thirds[2])
    post_all(gw, thirds[2])  # the gateway keeps accepting while Redis is down
    while time.monotonic() - stopped < OUTAGE_S:
        worker.assert_alive()  # waiting, not dead
        time.sleep(1)
    log = worker.log.read_text(errors="replace")
    assert "redis unavailable" in log, log[-3000:]
    server.up(echo=lambda m: None)

    held_then_ticked(events, [(calm, calm_worker), (own, worker)], timeout_s=180 * soak_factor)
    assert_same_books(own, calm)
    assert len(worker.procs) == 1  # never restarted
    assert "redis available again" in worker.log.read_text(errors="replace")
