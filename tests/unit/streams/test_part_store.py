"""The referrer parts a process keeps on local disk (``streams.part_store``), and the runner keeping a referrer's
visitors there instead of in its record (``referrer_parts.fold``)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from streams import record_codec, referrer_parts, stages
from streams.erasure import Erase
from streams.part_store import DiskPartStore, PartStore
from streams.referrer_parts import Member
from streams.stage_runner import Batch
from tests.unit.streams.story import T0, Story
from tests.unit.streams.test_stage_runner import CHANGELOGS, runner, through

# referrer ids that are prefixes of each other: a referrer's parts must never be read as another's
REFERRERS = st.sampled_from(["an", "anna", "anna2", "b"])
PART_IDS = st.sampled_from(["v:v1", "v:v2", "v:v10", "n:eva", "r:ref-1"])
OPS = st.lists(st.one_of(
    st.tuples(st.just("put"), REFERRERS, PART_IDS, st.integers(0, 100)),
    st.tuples(st.just("delete"), REFERRERS, PART_IDS),
    st.tuples(st.just("drop"), REFERRERS),
), max_size=40)


@settings(max_examples=100, deadline=None)
@given(OPS)
def test_the_disk_store_answers_as_the_memory_store_does(tmp_path_factory, ops):
    memory, disk = PartStore(), DiskPartStore(tmp_path_factory.mktemp("parts") / "p")
    try:
        for op in ops:
            for store in (memory, disk):
                if op[0] == "put":
                    store.put(op[1], op[2], Member(op[3]))
                elif op[0] == "delete":
                    store.delete(op[1], op[2])
                else:
                    store.drop(op[1])
        for referrer_id in ("an", "anna", "anna2", "b"):
            for kind in ("v", "n", "r"):
                assert disk.ids(referrer_id, kind) == memory.ids(referrer_id, kind)
            for part_id in ("v:v1", "v:v2", "v:v10", "n:eva", "r:ref-1"):
                assert disk.get(referrer_id, part_id) == memory.get(referrer_id, part_id)
    finally:
        disk.close()


def clicked(visitors: int) -> Story:
    s = Story()
    for n in range(visitors):
        s.click(f"v{n}", "ANNA", minutes=n)
    s.click("v0", "ANNA", minutes=visitors)  # a visitor clicks again
    return s


def test_a_referrers_visitors_live_in_the_part_store_and_each_is_written_once():
    story = clicked(5)
    parts = PartStore()
    run = runner(story, parts=parts)
    batches = through(run, story)
    assert run.tables.referrers[b"anna"].visitors == set()  # none as objects
    assert parts.ids("anna", "v") == [f"v:v{n}" for n in range(5)]
    written = [k for b in batches for topic, k, _, _ in b.table_changes()
               if topic == CHANGELOGS[2] and k.startswith(b"anna\x1fv:")]
    assert sorted(written) == [f"anna\x1fv:v{n}".encode() for n in range(5)]  # v0's second click wrote none


def test_the_referrers_erasure_reaches_every_visitor_kept_in_the_part_store():
    story = clicked(3)
    parts = PartStore()
    run = runner(story, parts=parts)
    through(run, story)
    erase = Erase("anna", "p:anna", "erasure-1", T0 + timedelta(days=30))
    sent: list[tuple[str, bytes]] = []
    queue: list[object] = [erase]
    while queue:  # the erasure's own facts to itself (the marker, Continue) until it is done
        run.referrer("anna", queue.pop(0), batch := Batch())
        for topic, key, value, _ in batch.records:
            sent.append((topic, key))
            if topic == "referrals.referrer-facts" and key == b"anna":
                queue.append(record_codec.decode(value))
    assert {k for t, k in sent if t == "referrals.visitor-facts"} == {b"v0", b"v1", b"v2"}
    assert b"anna" not in run.tables.referrers and parts.ids("anna", "v") == []  # the record and its parts gone


def test_parts_of_a_record_the_table_does_not_hold_are_dropped_before_it_is_stepped():
    """An earlier owner's (a partition this process held before): never taken for the new record's."""
    story = clicked(1)
    parts = PartStore()
    parts.put("anna", "v:stale", Member(7))
    run = runner(story, parts=parts)
    through(run, story)
    assert parts.ids("anna", "v") == ["v:v0"]


def test_recovery_folds_the_visitors_into_the_part_store():
    story = clicked(3)
    run = runner(story)  # visitors kept in the record
    changelog: dict[bytes, object] = {}
    through(run, story, done=lambda b: changelog.update({k: v for t, k, _, v in b.table_changes()
                                                          if t == CHANGELOGS[2]}))
    records: dict[str, stages.ReferrerRecord] = {}
    parts = PartStore()
    parts.put("anna", "v:stale", Member(1))  # an earlier owner's
    assembler = referrer_parts.Assembler(records, parts)
    for key, value in changelog.items():
        assembler.apply(key, value)
    assert assembler.finish() == {}
    assert records["anna"].visitors == set() and parts.ids("anna", "v") == ["v:v0", "v:v1", "v:v2"]
