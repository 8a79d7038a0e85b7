"""The tables' records on disk (``streams.record_store``): a mapping like a dict, whatever is cached."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import timedelta

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from streams import record_codec, record_store, referrer_parts
from streams.inbound import to_fact
from streams.part_store import DiskPartStore
from streams.redis_layout import RedisLayout
from streams.referrer_rewards import Tick
from streams.stage_runner import Batch, StageRunner, Tables
from streams.stages import CustomerRecord, ReferrerRecord, VisitorRecord
from tests.oracle import counters as reference_counters
from tests.unit.streams.story import T0, Story, resolve
from tests.unit.streams.test_properties import stories
from tests.unit.streams.test_stage_runner import CHANGELOGS, through

KEYS = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f"])
OPS = st.lists(st.one_of(
    st.tuples(st.just("set"), KEYS, st.integers(0, 1000)),
    st.tuples(st.just("get"), KEYS),
    st.tuples(st.just("del"), KEYS),
    st.tuples(st.just("pop"), KEYS),
    st.tuples(st.just("mutate"), KEYS, st.integers(0, 1000)),  # read, then changed in place, as the stages do
), max_size=60)


def _encode(value: list[int]) -> bytes:
    return ",".join(map(str, value)).encode()


def _decode(data: bytes) -> list[int]:
    return [int(x) for x in data.decode().split(",") if x]


@settings(max_examples=200, deadline=None)
@given(OPS, st.integers(0, 3))
def test_the_map_answers_as_a_dict_does_whatever_it_caches(tmp_path_factory, ops, cached):
    spilled = record_store.SpilledMap(tmp_path_factory.mktemp("map") / "t", cached, _encode, _decode)
    oracle: dict[bytes, list[int]] = {}
    try:
        for op in ops:
            kind, key = op[0], op[1]
            if kind == "set":
                spilled[key] = [op[2]]
                oracle[key] = [op[2]]
            elif kind == "get":
                assert spilled.get(key) == oracle.get(key)
            elif kind == "del":
                if key in oracle:
                    del spilled[key]
                    del oracle[key]
                else:
                    with pytest.raises(KeyError):
                        del spilled[key]
            elif kind == "pop":
                assert spilled.pop(key, None) == oracle.pop(key, None)
            elif kind == "mutate" and key in oracle and cached:  # uncached: for values never changed in place
                spilled[key].append(op[2])
                oracle[key].append(op[2])
            assert (key in spilled) == (key in oracle)
        assert sorted(spilled) == sorted(oracle)  # every key once
        assert len(spilled) == len(oracle)
        assert {k: spilled[k] for k in oracle} == oracle
        if cached:
            assert len(spilled._hot) <= cached
    finally:
        spilled.close()


def test_records_come_back_from_disk_equal(tmp_path):
    records = record_store.spilled_records(tmp_path / "t", cached=1)
    referrer = ReferrerRecord(seq=3, floor="2026-01-02")
    referrer.counted["e1"] = ("share", "default", "whatsapp", "2026-01-03")
    referrer.activity[("share", "default", "whatsapp", "2026-01-03")] = 1
    values = {b"r": referrer, b"c": CustomerRecord(seq=2), b"v": VisitorRecord()}
    for key, value in values.items():
        records[key] = value
    assert records.loads == 0
    for key, value in values.items():
        assert records[key] == value
    assert records.loads >= 2  # one object cached: the others were read back
    records.close()
    assert not (tmp_path / "t").exists()


def test_the_partition_index_is_written_through(tmp_path):
    index = record_store.spilled_partitions(tmp_path / "p")
    index[b"k"] = 5
    index[b"m"] = 0
    assert index[b"k"] == 5 and dict(index.items()) == {b"k": 5, b"m": 0}
    assert not index._hot
    index.close()


def test_a_new_map_starts_empty_where_an_old_one_was(tmp_path):
    first = record_store.spilled_records(tmp_path / "t", cached=1)
    first[b"k"] = VisitorRecord()
    first[b"m"] = VisitorRecord()  # k on disk
    first._disk.close()  # a process that died without closing
    second = record_store.spilled_records(tmp_path / "t", cached=1)
    assert list(second) == []
    second.close()


def test_a_process_gets_its_own_directory_and_removes_those_of_dead_processes(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    (tmp_path / f"pid-{dead.stdout.strip()}" / "visitors").mkdir(parents=True)
    alive = tmp_path / f"pid-{os.getppid()}"  # this test's parent: running
    alive.mkdir()
    (tmp_path / "pid-notanumber").mkdir()
    own = record_store.process_dir(tmp_path)
    assert own == tmp_path / f"pid-{os.getpid()}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "pid-notanumber"])


def test_cached_must_not_be_negative_and_a_table_caches_the_record_it_changes(tmp_path):
    with pytest.raises(ValueError, match="cached"):
        record_store.SpilledMap(tmp_path / "t", -1, _encode, _decode)
    with pytest.raises(ValueError, match="cached=0"):
        record_store.spilled_records(tmp_path / "t", 0)


def _read_back(record: object) -> object:
    """A record as its encoding gives it back: comparable field by field (a set's order is not kept); a tombstone
    (None) as it is."""
    return None if record is None else record_codec.decode(record_codec.encode(record))


@settings(max_examples=100, deadline=None)
@given(stories())
def test_the_stages_decide_alike_with_their_records_on_disk(tmp_path_factory, story):
    """Every stage over tables that keep one record as an object (each read of another key evicts it, encoded,
    and reads it back decoded) sends what it sends over dicts, and ends with the same records."""
    root = tmp_path_factory.mktemp("tables")
    spilled = [record_store.spilled_records(root / name, cached=1) for name in ("v", "c", "r")]
    parts = DiskPartStore(root / "r-parts")  # and the referrers' visitors out of their records
    try:
        in_memory = StageRunner(story.book, Tables({}, {}, {}, CHANGELOGS), 1)
        on_disk = StageRunner(story.book, Tables(*spilled, CHANGELOGS), 1, parts=parts)
        written: list[list] = [[], []]  # each batch's table changes, as encoded when it is done
        batches = [through(run, story, done=lambda b, out=out: out.extend(
                   (t, k, _read_back(v)) for t, k, _, v in b.table_changes()))
                   for run, out in zip((in_memory, on_disk), written, strict=True)]
        sent = [[(t, k, v) for b in run_batches for t, k, v, _ in b.records] for run_batches in batches]
        assert sent[0] == sent[1]
        assert written[0] == written[1]  # the same changelog: a visitor's part once, whether kept as an object or not
        referrer_keys = list(spilled[2])
        assert not any(spilled[2][k].visitors for k in referrer_keys)
        for k in referrer_keys:
            referrer_parts.unfold(spilled[2][k], k.decode(), parts)
        for dicts, disk in zip((in_memory.tables.visitors, in_memory.tables.customers, in_memory.tables.referrers),
                               spilled, strict=True):
            assert {k: _read_back(v) for k, v in dicts.items()} == {k: _read_back(disk[k]) for k in disk}
    finally:
        for table in spilled:
            table.close()
        parts.close()


# -- side by side, batches acknowledged, the clock ticking, Redis as it shows ----------------------------------

LAYOUT = RedisLayout("rp:", 6)
STAGE_OF = {"referrals.visitor-facts": "visitor", "referrals.customer-facts": "customer",
            "referrals.referrer-facts": "referrer"}


def side_by_side(story: Story, rnd: random.Random, plain: StageRunner, other: StageRunner, exact: bool) -> int:
    """The story's events in a random order, the clock ticking after each (its time the latest event's, plus
    0, 15 or 30 days: holds end while later facts still come), what each input causes stepped right after it,
    each batch acknowledged; ``other`` must write to the changelog what ``plain`` writes, and show in Redis what
    it shows, after every batch; ``exact``: send and snapshot exactly the same, else send only what ``plain``
    sent (a record read back from disk does not know which of its outputs are acknowledged: it may send some
    again) and snapshot what shows the same (read back, a record's first partial snapshot names every total).
    Returns how many referrals ``other``'s part store held settled at most."""
    redis: tuple[dict, dict] = ({}, {})
    sent: set = set()
    queue: list[tuple] = []
    clock = T0
    arrival = list(story.events)
    rnd.shuffle(arrival)
    for event in arrival:
        queue.append(({"ClickEvent": "visitor", "ShareEvent": "referrer"}.get(type(event).__name__, "customer"),
                      *to_fact(event, resolve)))
        clock = max(clock, event.occurred_at + timedelta(days=rnd.choice([0, 15, 30])))
        queue.append(("tick", "", Tick(clock)))
    settled = 0
    while queue:
        item = queue.pop(0)
        note(f"{item[0]} {item[1]} {item[2]!r}"[:400])
        batches = (Batch(), Batch())
        for run, batch in zip((plain, other), batches, strict=True):
            stage, key, fact = item
            if stage == "tick":
                run.tick(0, fact.now, batch)
            else:
                getattr(run, stage)(key, fact, batch)
        a, b = batches
        if exact:
            assert a.records == b.records, item
        else:
            now = [{(t, k, v, tuple(h or ())) for t, k, v, h in x.records} for x in batches]
            sent.update(now[0])
            assert now[0] <= now[1] <= sent, (item, now[0] - now[1], now[1] - sent)
        assert [(t, k, _read_back(v)) for t, k, _, v in a.table_changes()] == \
            [(t, k, _read_back(v)) for t, k, _, v in b.table_changes()], item
        shown = plain.snapshots(a, LAYOUT), other.snapshots(b, LAYOUT)  # once: a snapshot takes the changes
        if exact:
            assert shown[0] == shown[1], _differences(*shown)
        for view, snaps in zip(redis, shown, strict=True):
            for snap in snaps:
                _write(view, snap)
        assert redis[0] == redis[1], _view_differences(*redis)
        for run, batch in zip((plain, other), batches, strict=True):
            run.done(batch)
        if other.parts is not None:
            settled = max(settled, sum(len(other.parts.ids(k.decode(), "r")) for k in plain.tables.referrers))
        queue[:0] = [(STAGE_OF[topic], k.decode(), record_codec.decode(value))  # what it caused first, then the
                     for topic, k, value, _ in a.records if topic in STAGE_OF]  # next event and the clock
    return settled


@settings(max_examples=100, deadline=None)
@given(stories(), st.randoms(use_true_random=False))
def test_records_read_back_from_disk_show_in_redis_what_records_in_memory_do(tmp_path_factory, story, rnd):
    """Found by this test: a record read back from disk summed its referrals' contributions only at its next
    snapshot, after the step had changed them, so a partial snapshot could not take back what a changed referral
    no longer added (a signup gone back to 0) and Redis kept the old count. Now summed before the step."""
    root = tmp_path_factory.mktemp("tables")
    on_disk = StageRunner(story.book, Tables(*(record_store.spilled_records(root / name, cached=1)
                                               for name in "vcr"), CHANGELOGS), 1)
    try:
        side_by_side(story, rnd, StageRunner(story.book, Tables({}, {}, {}, CHANGELOGS), 1), on_disk, exact=False)
    finally:
        for table in vars(on_disk.tables).values():
            if hasattr(table, "close"):
                table.close()


def _differences(a: list, b: list) -> list:  # a debugging aid: the snapshots' fields that differ
    import dataclasses
    return [(x.referrer_id, f.name, getattr(x, f.name), getattr(y, f.name)) for x, y in zip(a, b, strict=False)
            for f in dataclasses.fields(x) if getattr(x, f.name) != getattr(y, f.name)] or [len(a), len(b)]


def _write(view: dict, snap) -> None:  # what Redis shows after a snapshot (``streams.redis_sink``)
    shown = view.setdefault(snap.referrer_id, {"referrals": {}, "cells": {}, "leaderboard": {}, "welcome": {}})
    if snap.complete:
        shown["referrals"], shown["welcome"] = {}, {}
    shown["fields"] = snap.fields
    shown["referrals"].update(snap.referrals)
    # the funnels and ledgers as the script keeps them: the referrer's cells, whose differences it adds
    shown["cells"] = reference_counters.applied(shown["cells"], snap.contribution, snap.complete)
    shown["sums"] = reference_counters.cell_sums(LAYOUT, snap.referrer_id, shown["cells"])
    shown["leaderboard"].update(snap.leaderboard)
    for key, rewards in snap.welcome.items():
        shown["welcome"].setdefault(key, {}).update(rewards)


def _view_differences(a: dict, b: dict) -> list:  # a debugging aid: what two Redis views show differently
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k, {}), b.get(k, {})
        for f in sorted(set(x) | set(y)):
            u, v = x.get(f), y.get(f)
            if isinstance(u, dict) and isinstance(v, dict):
                out += [(k, f, key, u.get(key), v.get(key)) for key in sorted(set(u) | set(v), key=repr)
                        if u.get(key) != v.get(key)]
            elif u != v:
                out.append((k, f, u, v))
    return out
