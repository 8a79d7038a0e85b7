"""Counter changes of the referrer stage (pure): absolute per referrer, deltas for campaign funnels."""

from __future__ import annotations

import json
from collections import Counter

from schemas import parse_event
from streams import referrer_rewards
from streams.counters import NO_CHANNEL, click_changes, referrer_changes, share_changes
from streams.redis_layout import RedisLayout, partition_of
from streams.referrer_rewards import ReferrerState
from tests.unit.streams.story import FAR, T0, Story

LAYOUT = RedisLayout("rp:", 6)


def apply(changes, store: dict) -> dict:
    """A tiny Redis stand-in: enough to add up what the changes do."""
    for c in changes:
        h = store.setdefault(c.key, {})
        if c.op == "hincrby":
            h[c.field] = h.get(c.field, 0) + int(c.value)
        elif c.op in ("hset", "zadd"):
            h[c.field] = c.value
        elif c.op == "hdel":
            h.pop(c.field, None)
    return store


def funnel(store: dict) -> Counter:
    total = Counter()
    for key in LAYOUT.all_funnels("default"):
        total.update(store.get(key, {}))
    return +total


def test_shares_and_clicks_count_per_referrer_and_channel_with_daily_buckets():
    share = parse_event({"type": "share", "event_id": "s1", "occurred_at": T0.isoformat(), "referrer_id": "anna",
                         "channel": "whatsapp"}, now=FAR)
    p = partition_of("anna", 6)
    store = apply(share_changes(LAYOUT, p, share) + click_changes(LAYOUT, p, "anna", "default", None, T0), {})
    assert store[LAYOUT.referrer("anna")] == {"shares:whatsapp": 1, "clicks": 1}
    assert funnel(store) == Counter({"share:whatsapp": 1, f"click:{NO_CHANNEL}": 1})
    assert store[LAYOUT.funnel(p, "default", "2026-05-04")] == {"share:whatsapp": 1, f"click:{NO_CHANNEL}": 1}


def test_feeding_the_referrer_stage_step_by_step_adds_up_to_its_final_state():
    s = Story()
    s.click("v1", "ANNA")
    s.signup("eva", visitor="v1", minutes=5)
    s.order("eva", "30.00", minutes=60, order_id="o")
    s.signup("finn", code="ANNA", minutes=70)
    s.signup("finn", code="BEN", minutes=80)  # a duplicate claim, listed under ben
    pipeline = s.run(tick_days=20)
    store: dict = {}
    for referrer_id, final in pipeline.referrers.items():
        p = partition_of(referrer_id, 6)
        # replay this referrer's facts one by one, as the agent would, applying each step's changes
        state = ReferrerState()
        facts = sorted(final.referrals.values(), key=lambda r: r.attributed_at)
        for fact in facts:
            after, _ = referrer_rewards.step(state, referrer_id, fact, s.book)
            apply(referrer_changes(LAYOUT, p, referrer_id, state, after), store)
            state = after
        after, _ = referrer_rewards.step(state, referrer_id, referrer_rewards.Tick(T0.replace(year=2027)), s.book)
        apply(referrer_changes(LAYOUT, p, referrer_id, state, after), store)
    anna = store[LAYOUT.referrer("anna")]
    assert (anna["signups"], anna["conversions"], anna["points:confirmed"]) == (2, 1, 500)
    assert funnel(store) == Counter({"signup:unknown": 2, "conversion:unknown": 1})
    referrals = {k: json.loads(v) for k, v in store[LAYOUT.referrals("anna")].items()}
    assert referrals["default:anna:eva"]["reward_status"] == "confirmed"
    assert referrals["default:anna:finn"]["status"] == "attributed"
    ben = {k: json.loads(v) for k, v in store[LAYOUT.referrals("ben")].items()}
    assert [r["reason"] for r in ben.values()] == ["duplicate_attribution"]
    assert store[LAYOUT.leaderboard(partition_of("anna", 6), "default")] == {"anna": 1}


def test_a_withdrawn_referral_leaves_the_list_and_the_funnel():
    from dataclasses import replace

    s = Story()
    s.signup("eva", code="ANNA")
    referral = s.run().referrers["anna"].referrals["default:anna:eva"]
    p = partition_of("anna", 6)
    before, _ = referrer_rewards.step(ReferrerState(), "anna", referral, s.book)
    store = apply(referrer_changes(LAYOUT, p, "anna", ReferrerState(), before), {})
    assert funnel(store) == Counter({"signup:unknown": 1})
    after, _ = referrer_rewards.step(before, "anna", replace(referral, status="withdrawn", reason=None), s.book)
    apply(referrer_changes(LAYOUT, p, "anna", before, after), store)
    assert funnel(store) == Counter()
    assert store[LAYOUT.referrals("anna")] == {}
    assert store[LAYOUT.referrer("anna")]["signups"] == 0
