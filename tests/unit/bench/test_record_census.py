"""The records' census (``bench.record_census``): an instrument, so it must count what it says it counts."""

from __future__ import annotations

import sys

from bench import record_census


def test_reachable_bytes_counts_each_object_once_and_what_was_seen_before_not_at_all():
    shared = "x" * 1000
    seen: set[int] = set()
    first = record_census.reachable_bytes([shared, shared], seen)
    assert first == sys.getsizeof([shared, shared]) + sys.getsizeof(shared)
    assert record_census.reachable_bytes([shared], seen) == sys.getsizeof([shared])  # the string: charged before


def test_a_small_workload_goes_through_the_stages_and_every_census_adds_up():
    lines: list[str] = []
    out = record_census.run(3_000, (1_000, 3_000), customers=300, echo=lines.append)
    assert [c.events for c in out] == [1_000, 3_000]
    first, last = out
    assert 0 < first.active <= first.records and last.active >= first.active
    assert last.live_referrals + last.settled_referrals > 0  # signups with a code reached the referrer stage
    assert last.total == sum(last.by_field.values()) > first.total > 0
    assert {"activity", "core.settled", "settled_sums"} <= set(last.by_field)
    assert any(name.endswith("(derived)") for name in last.by_field)  # the indexes and totals, kept on the state
    assert last.runner["touched"] > 0 and "acknowledged" in last.runner  # the process's own sets of keys
    assert lines[0].startswith("1,000 events in") and any(line.startswith("after 3,000 events") for line in lines)
