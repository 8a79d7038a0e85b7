"""The read API on the real stack: exact answers after a known simulated stream, as the pure core decides."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest

from referrals.privacy import pseudonym
from schemas.derived import RewardRole, RewardStatus
from streams.counters import NO_CHANNEL
from tests.integration.fixtures.gateway import APP_KEY, READ_KEY
from tests.integration.support.worker import (
    client,
    redis_funnel,
    reference,
    run_through,
    send,
    simulated,
)

READ = {"Authorization": f"Bearer {READ_KEY}"}


def want_referrer(ref, resolve, parsed, referrer_id: str, secret: str) -> dict:
    """What GET /v1/referrers/{id} must say, from the reference pipeline and the events."""
    state = ref.referrers.get(referrer_id)
    shares: Counter = Counter()
    clicks, seen = 0, set()
    for e in parsed:
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        if e.type == "share" and e.referrer_id == referrer_id:
            shares[e.channel.value] += 1
        elif e.type == "click" and (owner := resolve(e.referral_code)) and owner.referrer_id == referrer_id:
            clicks += 1
    live = [r for r in state.referrals.values() if r.status != "withdrawn"] if state else []
    points = {"pending": 0, "confirmed": 0, "revoked": 0}
    welcome = []
    for w in sorted(ref.rewards().values(), key=lambda w: w.reward_id):  # every referrer's: the referee side too
        if w.customer_id == referrer_id and w.status.value in points:
            points[w.status.value] += w.points
        if (w.role is RewardRole.REFEREE and w.customer_id == referrer_id
                and not (w.status is RewardStatus.REVOKED and w.points == 0)):
            welcome.append({"campaign_id": w.campaign_id, "status": w.status.value, "points": w.points,
                            "reason": w.reason.value if w.reason else None, "fulfilment": None})
    referrals = []
    for r in sorted(live, key=lambda r: (r.attributed_at.isoformat(), r.referee_id)):
        w = state.rewards.get(f"{r.referral_id}:{RewardRole.REFERRER.value}")
        if w is not None and w.status is RewardStatus.REVOKED and w.points == 0:
            w = None
        referrals.append({
            "referee": pseudonym(secret, r.referee_id), "campaign_id": r.campaign_id, "status": r.status,
            "reason": r.reason.value if r.reason else None, "channel": r.channel or NO_CHANNEL,
            "attributed_at": r.attributed_at.isoformat(),
            "reward": {"status": w.status.value, "points": w.points, "reason": w.reason.value if w.reason else None,
                       "fulfilment": None}
            if w else None})
    return {"counts": {"shares": dict(shares), "clicks": clicks,
                       "signups": sum(r.status in ("attributed", "qualified", "revoked") for r in live),
                       "conversions": sum(r.status in ("qualified", "revoked") for r in live)},
            "points": points, "rewards_as_referee": welcome, "referrals": referrals}


@pytest.fixture
def read_setup(pipeline_factory, app_factory):
    own, worker = pipeline_factory("read")
    gateway = app_factory(data_of=own)
    events = simulated(own, 61, 1500)
    run_through(own, worker, events)
    return own, worker, gateway, events


def test_referrers_funnel_and_leaderboard_answer_exactly_what_the_pipeline_decided(read_setup):
    own, worker, gateway, events = read_setup
    secret = own.privacy.pseudonym_key.get_secret_value()
    ref, resolve, parsed = reference(own, events, datetime.now(UTC))
    http = httpx.Client(base_url=gateway.url, headers=READ, timeout=30)

    referrers = sorted(ref.referrers, key=lambda r: (-len(ref.referrers[r].referrals), r))
    assert len(referrers) >= 3
    with_rewards = [r for r in referrers if any(w.status.value in ("confirmed", "pending")
                                                for w in ref.referrers[r].rewards.values())]
    referees = sorted({w.customer_id for w in ref.rewards().values() if w.role is RewardRole.REFEREE and w.points})
    assert referees, "the simulated run rewards some referees"
    for referrer_id in {*referrers[:3], *with_rewards[:2], *referees[:3]}:
        response = http.get(f"/v1/referrers/{referrer_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        want = want_referrer(ref, resolve, parsed, referrer_id, secret)
        assert {k: body[k] for k in ("counts", "points", "rewards_as_referee", "referrals")} == want, referrer_id
        assert body["referral_code"] and body["share_url"].endswith(f"/r/{body['referral_code']}")
        assert all(r["referee"].startswith("c_") for r in body["referrals"])
        assert not any(r.referee_id in response.text for r in
                       (ref.referrers[referrer_id].referrals.values() if referrer_id in ref.referrers else []))
    assert any(r["reward"] for r in http.get(f"/v1/referrers/{with_rewards[0]}").json()["referrals"])

    funnel = http.get("/v1/campaigns/default/funnel").json()
    live = redis_funnel(own)
    assert {f"{stage}:{channel}": n for stage, s in funnel["stages"].items() for channel, n in s["by_channel"].items()
            } == dict(live)
    assert funnel["stages"]["share"]["total"] == sum(n for k, n in live.items() if k.startswith("share:"))
    totals = {stage: s["total"] for stage, s in funnel["stages"].items()}
    assert funnel["rates"]["signup_per_click"] == round(totals["signup"] / totals["click"], 4)

    confirmed = Counter()
    for referrer_id, state in ref.referrers.items():
        for w in state.rewards.values():
            if w.role is RewardRole.REFERRER and w.status is RewardStatus.CONFIRMED and ":milestone:" not in w.reward_id:
                confirmed[referrer_id] += 1
    top = sorted(confirmed.items(), key=lambda x: (-x[1], x[0]))[:3]
    board = http.get("/v1/campaigns/default/leaderboard", params={"limit": 3}).json()
    assert board["entries"] == [{"rank": i + 1, "referrer": pseudonym(secret, r), "confirmed_referrals": n}
                                for i, (r, n) in enumerate(top)]
    assert top, "the simulated run confirms some referrals"


def test_an_unknown_customer_gets_a_code_or_a_404_and_keys_are_checked(read_setup):
    own, _worker, gateway, _events = read_setup
    http = httpx.Client(base_url=gateway.url, timeout=30)
    missing = http.get("/v1/referrers/nobody-at-all", params={"issue": "false"}, headers=READ)
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["rule"] == "unknown_referrer"
    first = http.get("/v1/referrers/new-customer-1", headers=READ).json()
    assert first["referral_code"] and first["counts"] == {"shares": {}, "clicks": 0, "signups": 0, "conversions": 0}
    assert first["rewards_as_referee"] == []
    assert first["points"] == {"pending": 0, "confirmed": 0, "revoked": 0} and first["referrals"] == []
    again = http.get("/v1/referrers/new-customer-1", headers=READ).json()
    assert again["referral_code"] == first["referral_code"]  # issued once, then stable
    assert http.get("/v1/referrers/new-customer-1", params={"issue": "false"}, headers=READ).status_code == 200

    assert http.get("/v1/referrers/x").status_code == 401
    assert http.get("/v1/referrers/x", headers={"Authorization": "Bearer not-a-key"}).status_code == 401
    forbidden = http.get("/v1/campaigns/default/funnel", headers={"Authorization": f"Bearer {APP_KEY}"})
    assert forbidden.status_code == 403 and forbidden.json()["errors"][0]["rule"] == "not_allowed"
    assert http.get("/v1/campaigns/default/leaderboard", params={"limit": 0}, headers=READ).status_code == 422
    # a read key may not send events
    posted = http.post("/v1/events", json={"type": "share"}, headers=READ)
    assert posted.status_code == 403


def test_the_answer_reflects_an_event_as_soon_as_the_worker_has_written_it(read_setup):
    own, _worker, gateway, events = read_setup
    share = next(e for e in events if e["type"] == "share")
    referrer_id, channel = share["referrer_id"], share["channel"]
    http = httpx.Client(base_url=gateway.url, headers=READ, timeout=30)
    before = http.get(f"/v1/referrers/{referrer_id}").json()["counts"]["shares"].get(channel, 0)
    key = f"{own.redis.key_prefix}{{ref:"
    send(own, [share | {"event_id": "share-after-the-run", "occurred_at": datetime.now(UTC).isoformat()}])
    with client(own) as c:
        hash_key = next(k for k in c.scan_iter(match=f"{key}*}}:referrer:{referrer_id}"))
        deadline = time.monotonic() + 60
        while int(c.hget(hash_key, f"shares:{channel}") or 0) == before:  # the worker has written it ...
            assert time.monotonic() < deadline, "the worker did not count the share"
            time.sleep(0.01)
    # ... and the very next answer shows it
    assert http.get(f"/v1/referrers/{referrer_id}").json()["counts"]["shares"][channel] == before + 1
