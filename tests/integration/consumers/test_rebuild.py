"""``referrals rebuild`` on the real stack: the rebuilt view equals the live one, key by key, and the
worker goes on writing into it after the switch."""

from __future__ import annotations

from consumers.rebuild import rebuild
from streams.campaigns import load_campaigns
from tests.integration.support.worker import (
    client,
    expected,
    matches,
    redis_dump,
    run_through,
    send,
    simulated,
    view_prefix,
    wait_for,
)


def test_rebuild_from_the_changelog_and_from_the_log_equal_the_live_view_and_the_worker_follows_the_switch(
        pipeline_factory):
    own, worker = pipeline_factory("rebuild")
    campaigns = load_campaigns(own.streams.campaigns_file)
    events = simulated(own, 71, 1500)
    first, later = events[:1000], events[1000:]
    run_through(own, worker, first)
    live = redis_dump(own, bookkeeping=True)
    assert live and view_prefix(own) == own.redis.key_prefix

    result = rebuild(own, campaigns, source="changelog", settle_s=0.5)
    assert result.switched and result.new_prefix == own.redis.key_prefix + "v1:"
    assert view_prefix(own) == result.new_prefix
    assert result.rewards_checked > 0 and result.rewards_differing == {}
    # the pipeline was idle: the new view is the live one, key by key, sequence numbers included
    assert redis_dump(own, bookkeeping=True) == live
    with client(own) as c:
        assert not list(c.scan_iter(match=f"{own.redis.key_prefix}{{ref:*"))  # the old view is gone
    assert result.old_keys_deleted == len(live)

    # the worker writes its next batches into the new view
    send(own, later)
    wait_for(matches(own, expected(own, events), worker), timeout_s=180)
    live = redis_dump(own, bookkeeping=True)

    again = rebuild(own, campaigns, source="log", settle_s=0.5)
    assert again.new_prefix == own.redis.key_prefix + "v2:" and view_prefix(own) == again.new_prefix
    assert again.rewards_differing == {}
    assert redis_dump(own, bookkeeping=True) == live
    wait_for(matches(own, expected(own, events), worker), timeout_s=60)


def test_a_rebuild_without_switching_leaves_the_live_view_alone(pipeline_factory):
    own, worker = pipeline_factory("rebuild-dry")
    events = simulated(own, 72, 400)
    run_through(own, worker, events)
    live = redis_dump(own, bookkeeping=True)
    result = rebuild(own, load_campaigns(own.streams.campaigns_file), switch=False)
    assert not result.switched and view_prefix(own) == own.redis.key_prefix
    assert redis_dump(own, prefix=result.new_prefix, bookkeeping=True) == live
