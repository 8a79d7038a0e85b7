"""Two workers in one consumer group over the 6 partitions: one is SIGKILLed mid-run and the other takes
its partitions over (rebalancing), then it comes back and takes some again; the totals are exact, equal to
an uninterrupted single worker's."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from referrals.settings import changed
from streams import worker_heartbeats
from tests.integration.support.worker import (
    WorkerProcess,
    assert_same_books,
    client,
    held,
    held_then_ticked,
    matches,
    send,
    simulated,
    wait_for,
)

pytestmark = pytest.mark.faults


def heartbeats(settings) -> dict[int, worker_heartbeats.Heartbeat]:
    """The group's workers by pid, as their heartbeats say (every 5 s)."""
    with client(settings) as c:
        return {h.worker.pid: h for h in worker_heartbeats.read(c, settings.redis.key_prefix, datetime.now(UTC),
                                                                 settings.streams.app_id)}


def working(settings, pid: int, events: bool = True):
    """A check: the worker ``pid`` has partitions and (unless ``events`` is False) has processed events."""
    def check():
        beat = heartbeats(settings).get(pid)
        return beat is not None and beat.partitions > 0 and (beat.events > 0 or not events), beat
    return check


def kept_alive(check, *workers: WorkerProcess):
    """``check``, with each worker restarted if its own guards stopped it (exit 70, as a restart policy
    would); any other death fails."""
    def run():
        for worker in workers:
            worker.keep_alive()
        return check()
    return run


def test_two_workers_one_killed_and_added_back_end_exactly_as_one_uninterrupted(pipeline_factory, tmp_path,
                                                                                soak_factor):
    calm, calm_worker = pipeline_factory("calm", tick_interval_s=0)  # ticked by the test, see ``tick``
    own, first = pipeline_factory("pair", tick_interval_s=0)
    second = WorkerProcess(changed(own, state_dir=tmp_path / "second"), tmp_path / "second.log")
    assert own.kafka.partitions == 6
    n = 4000 * soak_factor
    events = simulated(calm, 27, n)
    simulated(own, 27, n)
    parts = [events[i * n // 4:(i + 1) * n // 4] for i in range(4)]
    calm_worker.start()
    send(calm, events)
    try:
        first.start()
        second.start()
        first.wait_ready()
        second.wait_ready()
        # the group settled, each with partitions (else the first may have worked through parts[0] alone
        # before the second's assignment)
        wait_for(working(own, second.current.pid, events=False), timeout_s=60 * soak_factor)
        wait_for(working(own, first.current.pid, events=False), timeout_s=60 * soak_factor)
        send(own, parts[0])
        wait_for(working(own, second.current.pid), timeout_s=60 * soak_factor)  # both share the work
        wait_for(working(own, first.current.pid), timeout_s=60 * soak_factor)
        send(own, parts[1])
        time.sleep(1)
        second.kill()  # mid-run: its partitions go to the first worker after the session timeout
        send(own, parts[2])
        wait_for(kept_alive(matches(own, held(own, events[:3 * n // 4]), None), first),
                 timeout_s=240 * soak_factor)

        second.start()  # added back: the group rebalances again, and it takes partitions
        second.wait_ready()
        send(own, parts[3])
        held_then_ticked(events, [(calm, calm_worker), (own, None)], timeout_s=240 * soak_factor,
                         wait=lambda check, timeout_s: wait_for(kept_alive(check, first, second), timeout_s))
        wait_for(kept_alive(working(own, second.current.pid), first, second), timeout_s=60 * soak_factor)
        assert_same_books(own, calm)
    finally:
        second.stop()
