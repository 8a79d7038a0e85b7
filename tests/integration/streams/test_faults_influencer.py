"""One referrer with thousands of referrals, through the real worker while it is SIGKILLed (#17).

Before the referrer's record went to its changelog in parts, a referrer with a few hundred
referrals outgrew Kafka's message size and stopped the worker for everyone, at every restart.
Here one influencer gains 3,000 referrals (``make soak``: 30,000), each a share, a signup with
their code and a qualifying 49.90 EUR order, spread over weeks as real traffic is (a few an
hour: under the velocity limit), while the worker is killed at random moments. The worker's dedup
horizon is a week, so its shares' ids are folded into days (and tombstoned) while it is killed. The books must
be the pure core's (its incremental referrer stage: the reference model, O(history) per fact,
takes more than 10 minutes for this history), and no value on the referrer table's changelog
may exceed 100 KB. Then the influencer is erased: the record goes to the pseudonym's key, and no value
on the referrer stage's topic or changelog may exceed 100 KB either.
"""

from __future__ import annotations

import random
import sys
import time
from datetime import UTC, datetime

import pytest

from bench.influencer_bench import influencer_events
from referrals.code_registry import CodeRegistry
from referrals.privacy import pseudonym
from schemas.topics import REFERRER_FACTS
from streams.redis_layout import RedisLayout
from tests.integration.support.kafka_reading import read_topic
from tests.integration.support.worker import client, held_then_ticked, send, supervise, view_prefix

LARGEST_VALUE = 100 * 1024  # bytes: the issue's bound for any value the worker writes


@pytest.mark.faults
def test_an_influencer_with_thousands_of_referrals_under_sigkills(pipeline_factory, soak_factor):
    referrals = 3_000 if soak_factor == 1 else 30_000
    # ticked by the test (support/worker.py's tick); a week's horizon: 40 days of shares fold (300 days in the soak)
    own, worker = pipeline_factory("influencer", tick_interval_s=0, dedup_horizon_days=7)
    code = CodeRegistry.from_settings(own).issue("influencer").code
    events = influencer_events(code, referrals, datetime.now(UTC))
    rnd = random.Random(17)
    worker.start()
    kills = 0
    for i in range(0, len(events), 1500):
        worker.wait_ready()
        send(own, events[i:i + 1500])
        time.sleep(rnd.uniform(0.0, 1.5))  # mid-work: kill it
        worker.kill()
        kills += 1
        worker.start()
    # the books: the pure core's, in memory. Its referrer stage is the incremental core: the reference model
    # recomputes the whole history on every fact and needs more than 10 minutes for these 3,000 referrals; the
    # two emit the same changes at every step (tests/unit/streams/test_referrer_incremental.py)
    held_then_ticked(events, [(own, None)], timeout_s=600 * soak_factor,
                     wait=lambda check, timeout_s: supervise(worker, check, faults=0, timeout_s=timeout_s),
                     incremental=True)
    assert kills == len(range(0, len(events), 1500))
    changelog = read_topic(own, f"{own.streams.app_id}-referrers-changelog", expected=0, timeout_s=60)
    largest = max(len(r.value or b"") for r in changelog)
    assert largest < LARGEST_VALUE, f"a changelog value of {largest:,} bytes"
    assert any(r.key == b"influencer" for r in changelog)  # its header is there: the record was written
    folded = {r.key for r in changelog if r.key.startswith(b"influencer\x1fa:") and r.value}
    assert len(folded) >= referrals // 75 - 7 - 1  # every day the floor passed is folded

    # erased, the influencer's record goes to its pseudonym part by part: before #17 it went as one value (the
    # marker and the Adopt fact, each holding the whole record), over Kafka's limit
    with client(own) as c:
        before = c.hgetall(RedisLayout(view_prefix(own), own.kafka.partitions).referrer("influencer"))
    done = worker.run_beside([sys.executable, "-m", "referrals.cli", "erase", "influencer", "--yes", "--wait", "600"],
                             timeout_s=900)
    assert done.returncode == 0, f"{done.stdout}{done.stderr}(the worker's guards restarted it {worker.restarts} times)"
    worker.assert_alive()
    alias = pseudonym(own.privacy.pseudonym_key.get_secret_value(), "influencer")
    with client(own) as c:
        after = c.hgetall(RedisLayout(view_prefix(own), own.kafka.partitions).referrer(alias))
    assert {k: v for k, v in after.items() if not k.startswith("_")} == \
        {k: v for k, v in before.items() if not k.startswith("_")}
    for topic in (f"{own.streams.app_id}-referrers-changelog", own.kafka.topic_prefix + REFERRER_FACTS.name):
        records = read_topic(own, topic, expected=0, timeout_s=120)
        largest = max(len(r.value or b"") for r in records)
        assert largest < LARGEST_VALUE, f"{topic}: a value of {largest:,} bytes"
