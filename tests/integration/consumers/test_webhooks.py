"""Outbound webhooks on the real stack: the dispatcher (`referrals dispatcher`, its own process) against
receivers in their own processes that verify every signature with the `standardwebhooks` package."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from consumers.webhooks.dead_deliveries import read_dead
from consumers.webhooks.dispatcher import group_id
from referrals.kafka_admin import group_positions
from schemas.derived import Attribution, AttributionMethod, ReasonCode, RewardChange, RewardRole, RewardStatus
from schemas.topics import ATTRIBUTIONS, REWARDS
from schemas.webhooks import ATTRIBUTED, REWARD_TYPES
from tests.integration.support.webhooks import produce
from tests.integration.support.worker import wait_for

pytestmark = pytest.mark.integration

ALL_TYPES = [*REWARD_TYPES.values(), ATTRIBUTED]
FAST_RETRIES = {"backoff_first_s": 0.2, "backoff_max_s": 2.0, "timeout_s": 1.0, "retry_for_s": 600.0}
# a SIGKILLed consumer holds its partitions until its session times out: the shortest the settings allow
QUICK_SESSIONS = {"session_timeout_s": 6.0}


def story(n_rewards: int, seed: int = 0) -> tuple[list[RewardChange | Attribution], dict[str, str]]:
    """Reward changes as the worker writes them, each reward's in its order (pending, then confirmed or revoked;
    some capped or held and then released), half in campaign `spring`, half in `autumn`; an attribution per
    referral."""
    base = datetime(2026, 3, 1, tzinfo=UTC)
    changes: list[RewardChange | Attribution] = []
    referrer_of = {}
    for i in range(n_rewards):
        reward_id, referrer, referee = f"rw-{seed}-{i}", f"anna-{i % 7}", f"ben-{seed}-{i}"
        campaign = "spring" if i % 2 else "autumn"
        referrer_of[reward_id] = referrer
        at = base + timedelta(minutes=i)
        changes.append(Attribution(event_id=f"attribution:{referee}:s-{i}", occurred_at=at, referee_id=referee,
                                   referrer_id=referrer, referral_code=f"CODE-{i % 7}",
                                   method=AttributionMethod.SIGNUP_CODE, source_event_id=f"s-{i}",
                                   campaign_id=campaign))
        path = {0: [RewardStatus.PENDING, RewardStatus.CONFIRMED], 1: [RewardStatus.PENDING, RewardStatus.REVOKED],
                2: [RewardStatus.HELD_FOR_REVIEW, RewardStatus.PENDING, RewardStatus.CONFIRMED],
                3: [RewardStatus.CAPPED]}[i % 4]
        for n, status in enumerate(path, start=1):
            reason = {RewardStatus.REVOKED: ReasonCode.REFUNDED_IN_HOLD, RewardStatus.CAPPED: ReasonCode.MONTHLY_CAP,
                      RewardStatus.HELD_FOR_REVIEW: ReasonCode.VELOCITY_LIMIT}.get(status)
            changes.append(RewardChange(
                event_id=f"{reward_id}:{status.value}:{n}", occurred_at=at + timedelta(days=n), reward_id=reward_id,
                referral_id=f"ref-{seed}-{i}", role=RewardRole.REFERRER, customer_id=referrer, points=500,
                status=status, reason=reason, campaign_id=campaign))
    return changes, referrer_of


def wanted(changes, types: list[str], campaigns: list[str] | None = None) -> dict[str, list[str]]:
    """key (reward or referee) -> the webhook ids an endpoint subscribed like that must get, in order."""
    out: dict[str, list[str]] = defaultdict(list)
    for c in changes:
        kind = ATTRIBUTED if isinstance(c, Attribution) else REWARD_TYPES[c.status.value]
        if kind in types and (campaigns is None or c.campaign_id in campaigns):
            out[c.referee_id if isinstance(c, Attribution) else c.reward_id].append(c.event_id)
    return dict(out)


def first_arrivals(requests: list[dict]) -> dict[str, list[str]]:
    """key -> webhook ids in the order they first arrived (repeats dropped by webhook-id, as a receiver does)."""
    seen, out = set(), defaultdict(list)
    for r in requests:
        if r["webhook_id"] not in seen:
            seen.add(r["webhook_id"])
            out[r["key"]].append(r["webhook_id"])
    return dict(out)


def undelivered(run, endpoint: str) -> int:
    own = run.settings
    topics = [own.kafka.topic_prefix + REWARDS.name, own.kafka.topic_prefix + ATTRIBUTIONS.name]
    return sum(end - committed for committed, end in group_positions(own, group_id(own, endpoint), topics).values())


@pytest.mark.faults
def test_every_change_reaches_every_endpoint_in_order_through_failures_outages_and_sigkills(webhook_factory,
                                                                                          soak_factor):
    run = webhook_factory()
    ok, flaky, slow = run.receiver("ok"), run.receiver("flaky", "fail-first:2"), run.receiver("slow", "slow-first:1:3")
    down = run.receiver("down", start=False)  # down for the first 60 s
    bad, gone = run.receiver("bad", "status:400"), run.receiver("gone", "status:410")
    subscriptions = {"ok": (ALL_TYPES, None), "flaky": (ALL_TYPES, ["spring"]),
                     "slow": (["reward.confirmed"], None),
                     "down": (ALL_TYPES, None), "bad": (ALL_TYPES, None), "gone": (["reward.confirmed"], None)}
    receivers = {r.name: r for r in (ok, flaky, slow, down, bad, gone)}
    dispatcher = run.dispatcher([receivers[n].endpoint(*subscriptions[n]) for n in subscriptions],
                                streams=QUICK_SESSIONS, **FAST_RETRIES).start()
    changes, referrer_of = story(40 * soak_factor)
    expected = {name: wanted(changes, *subscriptions[name]) for name in subscriptions}

    # the changes come in four waves (in order; 32 with --soak); the dispatcher is SIGKILLed mid-delivery after
    # each, and started again
    started = time.monotonic()
    n = 4 * soak_factor
    waves = [changes[i * len(changes) // n:(i + 1) * len(changes) // n] for i in range(n)]
    for wave in waves:
        produce(run.settings, wave, referrer_of)
        seen = len(ok.delivered())
        wait_for(lambda seen=seen: (len(ok.delivered()) > seen + 3, "the ok endpoint getting some of the wave"), 30,
                 interval_s=0.2)
        dispatcher.sigkill()
        dispatcher.start()
    assert dispatcher.kills == n

    def complete(receiver) -> bool:
        got = first_arrivals(receiver.delivered())
        return all(set(ids) <= set(got.get(key, [])) for key, ids in expected[receiver.name].items())

    wait_for(lambda: (complete(ok) and complete(flaky) and complete(slow),
                      "every change at the endpoints that answer"), 180 * soak_factor, interval_s=0.2)
    # the endpoint that is down (for 60 s, or until the others are done if that takes longer) held back no other
    time.sleep(max(0.0, 60 - (time.monotonic() - started)))
    assert not down.requests()
    down.start()
    wait_for(lambda: (complete(down), "every change at the endpoint that was down for 60 s"), 120 * soak_factor,
             interval_s=0.2)
    wait_for(lambda: (all(undelivered(run, name) == 0 for name in subscriptions),
                      {name: undelivered(run, name) for name in subscriptions}), 60)

    for receiver in (ok, flaky, slow, down):
        requests = receiver.requests()
        assert all(r["verified"] for r in requests), f"{receiver.name}: a signature did not verify"
        got = first_arrivals([r for r in requests if 200 <= r["answered"] < 300])
        assert got == expected[receiver.name], f"{receiver.name}: not every change, or not in order per reward"
        # no change arrived (in any attempt) before an earlier change of its reward had been accepted
        accepted: set[str] = set()
        for r in requests:
            order = expected[receiver.name][r["key"]]
            assert all(earlier in accepted for earlier in order[:order.index(r["webhook_id"])]), (
                f"{receiver.name}: {r['webhook_id']} came before an earlier change of its reward was accepted")
            if 200 <= r["answered"] < 300:
                accepted.add(r["webhook_id"])
    retried = [r for r in flaky.requests() if r["attempt"] == 2]
    firsts = {r["webhook_id"]: r["t"] for r in flaky.requests() if r["attempt"] == 1}
    waits = [r["t"] - firsts[r["webhook_id"]] for r in retried if r["webhook_id"] in firsts]
    assert waits and min(waits) >= 0.95, f"Retry-After: 1 not honoured (shortest wait {min(waits):.2f} s)"
    assert any(r["attempt"] == 2 for r in slow.requests()), "the slow endpoint's timeouts were not retried"

    # the endpoints that refuse: every subscribed change is a dead delivery, in order per reward; no other's
    dead = read_dead(run.settings)
    assert {d.delivery.endpoint for d in dead} == {"bad", "gone"}
    for name, status in (("bad", 400), ("gone", 410)):
        mine = [d.delivery for d in dead if d.delivery.endpoint == name]
        by_key = first_arrivals([{"webhook_id": d.webhook_id, "key": json.loads(d.body)["data"].get("reward_id")
                                  or json.loads(d.body)["data"].get("referee_id")} for d in mine])
        assert by_key == expected[name]
        assert {d.cause for d in mine} <= {f"status_{status}", "behind_dead_delivery"}
        assert all(d.last_status == status for d in mine if d.cause == f"status_{status}")
    assert not receivers["bad"].delivered() and not receivers["gone"].delivered()
    text = dispatcher.metrics()
    for name in subscriptions:
        assert f'referral_webhook_oldest_undelivered_seconds{{endpoint="{name}"}} 0.0' in text

    # fixed, the refusing endpoints get their dead deliveries by `webhooks replay`, once, in order
    for name in ("bad", "gone"):
        receivers[name].stop()
        receivers[name].start("ok")
        result = dispatcher.cli("webhooks", "replay", name)
        assert result.returncode == 0, result.stdout + result.stderr
        assert first_arrivals(receivers[name].delivered()) == expected[name]
        again = dispatcher.cli("webhooks", "replay", name)
        assert again.returncode == 0 and " 0 delivered" in " " + again.stdout.splitlines()[-1], again.stdout
    listed = dispatcher.cli("webhooks", "list", "bad")
    assert listed.returncode == 0 and "replayed" in listed.stdout.splitlines()[0], listed.stdout
    assert dispatcher.stop() == 0


def test_the_retry_schedule_survives_a_sigkill_and_a_delivery_dies_when_the_retry_period_ends(webhook_factory):
    run = webhook_factory()
    failing = run.receiver("failing", "status:503")
    dispatcher = run.dispatcher([failing.endpoint(["reward.pending"])], streams=QUICK_SESSIONS,
                                backoff_first_s=0.5, backoff_max_s=1.0, timeout_s=1.0, retry_for_s=20.0).start()
    changes, referrer_of = story(1)
    produce(run.settings, changes, referrer_of)
    wait_for(lambda: (len(failing.requests()) >= 3, failing.requests()), 30, interval_s=0.2)
    dispatcher.sigkill()
    before = len(failing.requests())
    dispatcher.start()
    dead = wait_for(lambda: (bool(found := read_dead(run.settings, "failing")), found), 60)
    attempts = failing.requests()
    first = attempts[0]["t"]
    (d,) = [x.delivery for x in dead]
    # the retry period counted from the first attempt before the kill, not from the restart; the attempts too
    assert abs(d.first_attempt_at.timestamp() - first) < 1.0
    assert d.dead_at.timestamp() - first <= 20.0 + 2.0
    assert len(attempts) > before and len(attempts) - 1 <= d.attempts <= len(attempts)
    assert (d.cause, d.last_status, d.webhook_id) == ("retries_exhausted", 503, changes[1].event_id)
    assert '"status": 503' in (d.last_answer or "")
    text = dispatcher.metrics()
    assert 'referral_webhook_deliveries_total{endpoint="failing",outcome="dead"} 1.0' in text
    assert 'referral_webhook_retries_total{cause="status_503",endpoint="failing"}' in text
    listed = dispatcher.cli("webhooks", "list", "--json")
    (line,) = [json.loads(x) for x in listed.stdout.splitlines()]
    assert (line["webhook_id"], line["cause"], line["replayed"]) == (changes[1].event_id, "retries_exhausted", False)


def test_webhooks_test_sends_a_signed_test_event_and_says_what_came_back(webhook_factory):
    run = webhook_factory()
    ok, refusing = run.receiver("ok"), run.receiver("refusing", "status:400")
    dispatcher = run.dispatcher([ok.endpoint(["reward.confirmed"]), refusing.endpoint(["reward.confirmed"])])
    result = dispatcher.cli("webhooks", "test", "ok")
    assert result.returncode == 0 and "status_204" in result.stdout, result.stdout + result.stderr
    ((request),) = ok.requests()
    assert (request["type"], request["verified"]) == ("webhook.test", True)
    result = dispatcher.cli("webhooks", "test", "refusing")
    assert result.returncode == 1 and "status_400" in result.stdout, result.stdout + result.stderr
    result = dispatcher.cli("webhooks", "test", "nobody")
    assert result.returncode == 2 and "no webhook endpoint 'nobody' (known: ok, refusing)" in result.stderr


def test_a_reward_being_retried_holds_back_no_other_reward_of_its_partition(webhook_factory):
    run = webhook_factory()
    picky = run.receiver("picky", "fail-matching:rw-0-0:4")  # the first reward's changes fail four times each
    dispatcher = run.dispatcher([picky.endpoint(ALL_TYPES)], backoff_first_s=1.0, backoff_max_s=2.0).start()
    changes, referrer_of = story(14)
    produce(run.settings, changes, referrer_of)
    expected = wanted(changes, ALL_TYPES)
    wait_for(lambda: (first_arrivals(picky.delivered()) == expected, first_arrivals(picky.delivered())), 90,
             interval_s=0.2)
    accepted = {r["webhook_id"]: r["t"] for r in picky.delivered()}
    # rw-0-7 has the same referrer as rw-0-0 (the same partition) and comes after it: it did not wait (with
    # lane_retrying=0, a change being retried holding its partition, this fails)
    first_of_stuck = min(accepted[i] for i in expected["rw-0-0"])
    assert max(accepted[i] for i in expected["rw-0-7"]) < first_of_stuck
    assert len([r for r in picky.requests() if r["key"] == "rw-0-0" and r["answered"] == 503]) == 4 * len(
        expected["rw-0-0"])
    assert dispatcher.stop() == 0


def test_two_dispatchers_share_an_endpoint_and_one_takes_over_when_the_other_is_killed(webhook_factory):
    run = webhook_factory()
    flaky = run.receiver("flaky", "fail-first:1")
    endpoints = [flaky.endpoint(ALL_TYPES)]
    first = run.dispatcher(endpoints, streams=QUICK_SESSIONS, **FAST_RETRIES).start()
    second = run.dispatcher(endpoints, streams=QUICK_SESSIONS, **FAST_RETRIES).start()
    changes, referrer_of = story(40)
    expected = wanted(changes, ALL_TYPES)
    produce(run.settings, changes[:60], referrer_of)
    wait_for(lambda: (len(flaky.delivered()) >= 10, len(flaky.delivered())), 60, interval_s=0.2)
    first.sigkill()  # its partitions go to the second once its session ends; their retries resume there
    produce(run.settings, changes[60:], referrer_of)
    wait_for(lambda: (first_arrivals(flaky.delivered()) == expected, first_arrivals(flaky.delivered())), 120,
             interval_s=0.2)
    wait_for(lambda: (undelivered(run, "flaky") == 0, undelivered(run, "flaky")), 60)
    assert all(r["verified"] for r in flaky.requests())
    assert second.stop() == 0
