"""The referrer parts a process keeps on local disk (``streams.part_store``), and the runner keeping a referrer's
visitors there instead of in its record (``referrer_parts.fold``)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from schemas.derived import RewardChange
from streams import record_codec, record_store, referrer_parts, referrer_rewards, stages
from streams.counters import NO_CHANNEL
from streams.erasure import Erase
from streams.part_store import DiskPartStore, PartStore
from streams.redis_layout import partition_of
from streams.referrer_parts import Member
from streams.stage_runner import Batch, ByName, StageRunner, Tables
from tests.unit.streams.story import T0, Story
from tests.unit.streams.test_at_least_once import stored
from tests.unit.streams.test_properties import stories
from tests.unit.streams.test_record_store import LAYOUT, _view_differences, _write, side_by_side
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


# -- shares' and clicks' ids, named customers -------------------------------------------------------------------


def share(event_id: str, day: int) -> stages.Share:
    return stages.Share(event_id, "default", "sms", T0 + timedelta(days=day))


def referrer_changes(run: StageRunner, fact: object) -> dict[bytes, object]:
    run.referrer("anna", fact, batch := Batch())
    return {k: v for t, k, _, v in batch.table_changes() if t == CHANGELOGS[2]}


@pytest.mark.parametrize("on_disk", [False, True])
def test_counted_ids_live_in_the_part_store_and_a_share_sent_again_counts_once(tmp_path, on_disk):
    parts = DiskPartStore(tmp_path / "parts") if on_disk else PartStore()
    try:
        run = runner(Story(), parts=parts)
        assert b"anna\x1fc:share:s1" in referrer_changes(run, share("s1", 0))
        again = referrer_changes(run, share("s1", 0))  # a client resends it
        record = run.tables.referrers[b"anna"]
        assert record.counted == {} and parts.ids("anna", "c") == ["c:share:s1"]
        assert not any(b"\x1fc:" in k for k in again) and sum(record.activity.values()) == 1
    finally:
        parts.close()


@pytest.mark.parametrize("on_disk", [False, True])
def test_the_floor_passing_days_takes_their_ids_from_the_part_store_and_tombstones_them(tmp_path, on_disk):
    parts = DiskPartStore(tmp_path / "parts") if on_disk else PartStore()
    try:
        run = runner(Story(), parts=parts, horizon_days=5)
        for event_id, day in (("s1", 0), ("s2", 0), ("s3", 1), ("s4", 3)):
            referrer_changes(run, share(event_id, day))
        assert parts.ids("anna", "c") == ["c:share:s1", "c:share:s2", "c:share:s3", "c:share:s4"]
        changes = referrer_changes(run, share("s5", 3 + 5))  # the floor passes days 0 .. 3
        assert {k: v for k, v in changes.items() if b"\x1fc:" in k} == {
            b"anna\x1fc:share:s1": None, b"anna\x1fc:share:s2": None, b"anna\x1fc:share:s3": None,
            b"anna\x1fc:share:s4": None, b"anna\x1fc:share:s5": changes[b"anna\x1fc:share:s5"]}
        assert parts.ids("anna", "c") == ["c:share:s5"]
        assert [d.partition("\x1f")[0] for d in parts.ids("anna", "d")] == [f"d:{(T0 + timedelta(days=8)).date()}"]
        record = run.tables.referrers[b"anna"]
        assert record.counted == {} and sum(record.activity.values()) == 5  # the counts stay, folded by day
        assert referrer_changes(run, share("s1", 0)) == {}  # beyond the horizon now: not counted
    finally:
        parts.close()


def test_a_referrers_named_customers_live_in_the_part_store_and_each_is_written_once():
    parts = PartStore()
    run = runner(Story(), parts=parts)
    named = stages.Versioned("named:eva", 0, stages.Named("eva"))
    assert b"anna\x1fn:eva" in referrer_changes(run, named)
    assert b"anna\x1fn:eva" not in referrer_changes(run, named)
    assert run.tables.referrers[b"anna"].named == set() and parts.ids("anna", "n") == ["n:eva"]


@contextlib.contextmanager
def keeping_parts(story: Story, tmp_path_factory, on_disk: bool, **kwargs) -> Iterator[tuple[StageRunner, PartStore]]:
    """A runner keeping parts of its referrer records in a part store, and the store; ``on_disk``: its records and
    part store on disk as the worker keeps them, one record cached (every other key read in between evicts it)."""
    if on_disk:
        root = tmp_path_factory.mktemp("tables")
        run = StageRunner(story.book, Tables(*(record_store.spilled_records(root / name, cached=1) for name in "vcr"),
                                             CHANGELOGS), 1, parts=(parts := DiskPartStore(root / "r-parts")), **kwargs)
    else:
        run = runner(story, parts=(parts := PartStore()), **kwargs)
    try:
        yield run, parts
    finally:
        for table in (*vars(run.tables).values(), parts):
            if hasattr(table, "close"):
                table.close()


# -- referrals decided for good, settled out of the record ------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(stories(), st.randoms(use_true_random=False), st.booleans(), st.sampled_from([0, 1, 2]), st.sampled_from([1, 10]))
def test_settled_referrals_change_nothing_a_worker_sends_writes_or_shows(tmp_path_factory, story, rnd, on_disk,
                                                                        recent_days, horizon):
    """Events in any order, the clock ticking along (so holds end and referrals settle while later facts still
    come, some about settled referrals), each batch acknowledged: a runner that settles referrals out of its
    records (and keeps its visitors) in a part store sends, writes to the changelog and shows in Redis exactly
    what one that keeps everything as objects does, and its records are the same once put back whole.
    ``on_disk``: its records and part store on disk as the worker keeps them, one record cached (every other key
    read in between evicts it: its indexes and totals are rebuilt from the settled entries). ``recent_days``: the
    days of shares and clicks it keeps in its records (0: all), the older ones' counts in the part store: within a
    horizon of 10 days, a late share or click brings its day back; with one of 1 day, the floor passes them."""
    plain = runner(story, horizon_days=horizon)  # short: the stories' 40 days move the floor (ids from the store)
    with keeping_parts(story, tmp_path_factory, on_disk, horizon_days=horizon, recent_days=recent_days) as (
            folding, parts):
        settled = side_by_side(story, rnd, plain, folding, exact=not on_disk)
        assert all(not plain.tables.referrers[k].core.settled for k in list(plain.tables.referrers))
        note(f"at most {settled} referrals settled at once")
        keys = list(folding.tables.referrers)
        assert sorted(keys) == sorted(plain.tables.referrers)
        for key in keys:
            record = folding.tables.referrers[key]
            referrer_parts.unfold(record, key.decode(), parts)
            assert stored(record) == stored(plain.tables.referrers[key])
        assert all(parts.ids(k.decode(), kind) == [] for k in keys for kind in "vncdrw")  # every part taken back


def test_a_fact_about_a_settled_referral_brings_it_back_and_it_settles_again():
    s = Story()
    s.signup("eva", code="ANNA")
    s.order("eva", "49.90", minutes=30, order_id="o1")
    parts = PartStore()
    heard: list[int] = []
    run = runner(s, parts=parts, settled=heard.append)
    for batch in through(run, s, done=lambda b: None):
        run.done(batch)
    for days in (20, 20):  # the hold ends; the replayed tick finds the outputs acknowledged: settled
        run.tick(0, T0 + timedelta(days=days), batch := Batch())
        run.done(batch)
    record = run.tables.referrers[b"anna"]
    (rid,) = [pid[2:] for pid in parts.ids("anna", "r")]
    assert heard == [1]  # the worker's metric hears of it
    assert not record.core.referrals and not record.core.rewards and not record.core.settled  # the store has it
    assert record.core.settled_confirmed == {"default": 1}  # counted for the milestones
    entries = {kind: parts.ids("anna", kind) for kind in "xyz"}
    assert [len(entries[kind]) for kind in "xyz"] == [1, 0, 1]  # its code's window and its month (no device)
    # a newer version of the referral (a late, earlier signup's claim took its place: withdrawn)
    from streams.referrer_rewards import Settled  # noqa: F401 - the entry's type
    referral = parts.get("anna", f"r:{rid}").referral
    newer = stages.Versioned(f"referral:{rid}", 99, replace(referral, status="withdrawn"))
    run.referrer("anna", newer, batch := Batch())
    record = run.tables.referrers[b"anna"]
    assert rid in record.core.referrals and rid not in record.core.settled and parts.ids("anna", "r") == []
    assert record.core.settled_confirmed == {}  # its entries stay in the store, skipped while it is back
    assert [t for t, _, _, _ in batch.records] == []  # final rewards stay as they are: nothing to announce
    run.done(batch)
    run.referrer("anna", stages.Share("sh1", "default", "sms", T0), batch := Batch())  # acknowledged: settles
    assert rid not in run.tables.referrers[b"anna"].core.settled and parts.ids("anna", "r") == [f"r:{rid}"]
    # withdrawn, it is in no window and no month: the entries it settled with first are left behind (no
    # tombstones), and a lookup that finds them puts back what its part says now
    assert {kind: parts.ids("anna", kind) for kind in "xyz"} == entries
    record = run.tables.referrers[b"anna"]
    referrer_parts.recall_reads(record, "anna", referrer_rewards.Reads({"ANNA": (T0 - timedelta(days=1),
                                                                                T0 + timedelta(days=1))}, set(),
                                                                       set()), parts)
    assert not record.core.settled[rid].live and not record.core.settled[rid].in_month  # withdrawn, as it is now
    referrer_parts.forget_settled(record)


def test_recovery_settles_what_the_changelog_shows_final_and_acknowledged_even_read_back_from_disk(tmp_path):
    """A record read back from disk during the recovery (one cached) has lost its note of when each referral
    last changed: the recovery keeps it from the parts' seqs, so what is final and acknowledged settles."""
    s = Story()
    for referee, code in (("eva", "ANNA"), ("finn", "BEN")):
        s.signup(referee, code=code)
        s.order(referee, "49.90", minutes=30, order_id=f"o-{referee}")
    run = runner(s, parts=PartStore())
    changelog: dict[bytes, object] = {}

    def keep(batch: Batch) -> None:
        changelog.update({k: stored(v) for t, k, _, v in batch.table_changes() if t == CHANGELOGS[2]})

    for batch in through(run, s, done=keep):
        run.done(batch)
    for step in ("tick", "tick", "share"):  # the holds end, a replay settles, a share writes the acknowledgement
        for referrer in ("anna", "ben"):
            batch = Batch()
            if step == "tick":
                run.tick(0, T0 + timedelta(days=20), batch)
            else:
                run.referrer(referrer, stages.Share(f"sh-{referrer}", "default", "sms", T0), batch)
            keep(batch)
            run.done(batch)
    records = record_store.spilled_records(tmp_path / "r", cached=1)
    parts = DiskPartStore(tmp_path / "parts")
    try:
        assembler = referrer_parts.Assembler(ByName(records), parts)
        for key, value in changelog.items():
            assembler.apply(key, value)
        assert assembler.finish() == {}
        assert assembler.settled == 2
        assert [len(parts.ids(k, "r")) for k in ("anna", "ben")] == [1, 1]
        assert [records[k].core.settled_confirmed for k in (b"anna", b"ben")] == [{"default": 1}] * 2
    finally:
        records.close()
        parts.close()


def test_a_referral_without_rewards_rests_on_disk_until_its_qualifying_order_brings_it_back():
    """Not qualified yet, a referral has no rewards: nothing but a fact about it changes what it decides, so it
    leaves the record's objects once acknowledged (at the referrer's next step: ``referrer_rewards.settleable``),
    and its order brings it back, deciding what a record that kept it decides."""
    signup, order = Story(), Story()
    signup.signup("eva", code="ANNA")
    order.order("eva", "49.90", minutes=30, order_id="o1")
    parts = PartStore()
    heard: list[int] = []
    run, plain = runner(signup, parts=parts, settled=heard.append), runner(signup)
    for r in (run, plain):
        for batch in through(r, signup):
            r.done(batch)
        r.referrer("anna", stages.Share("sh1", "default", "sms", T0), batch := Batch())  # its next step: at rest
        r.done(batch)
    record = run.tables.referrers[b"anna"]
    (rid,) = [pid[2:] for pid in parts.ids("anna", "r")]
    assert heard == [1] and not record.core.referrals and not record.core.settled
    assert plain.tables.referrers[b"anna"].core.referrals.keys() == {rid}

    def rewards(r: StageRunner) -> list[tuple[str, bytes]]:
        return [(t, v) for b in through(r, order) for t, _, v, _ in b.records if t.endswith("rewards")]

    got, want = rewards(run), rewards(plain)
    assert got == want and len(want) == 2  # both rewards, pending, as the record that kept it decides
    assert rid in run.tables.referrers[b"anna"].core.referrals and parts.ids("anna", "r") == []


def _settled_then_late(rule: str) -> tuple[Story, Story, Story, str]:
    """(the campaign's story, the referrals that settle first, a late referral whose decision reads them, the
    status its referrer reward must reach). Each rule's referrals are placed so that only that rule reads the
    settled ones (another month, another code window, no device), so each of the store's lookups is tested."""
    first, late = Story(), Story()
    book = Story(monthly_cap=2) if rule == "cap" else Story()
    if rule == "device":  # one referee per device: finn's device is eva's; finn a month later
        first.signup("eva", code="ANNA", device="d1")
        first.order("eva", "49.90", minutes=30, order_id="o-eva")
        late.signup("finn", code="ANNA", device="d1", days=30)
        late.order("finn", "49.90", days=30, minutes=30, order_id="o-finn")
        return book, first, late, "held_for_review"
    if rule == "velocity":  # more than 5 signups on one code within 60 minutes: five without an order yet (at
        for n in range(5):  # rest, settled), then a sixth comes late, and orders
            first.signup(f"c{n}", code="ANNA", minutes=n)
        late.signup("finn", code="ANNA", minutes=5)
        late.order("finn", "49.90", minutes=40, order_id="o-finn")
        return book, first, late, "held_for_review"
    # "cap": two rewarded referrals a month, the third in the same month is capped; "milestone": the third
    # confirmed referral earns its bonus, two of them settled before it (read back from disk: the count kept)
    for n in range(2):
        first.signup(f"c{n}", code="ANNA", minutes=n)
        first.order(f"c{n}", "49.90", minutes=30 + n, order_id=f"o-c{n}")
    late.signup("finn", code="ANNA", days=2)
    late.order("finn", "49.90", days=2, minutes=30, order_id="o-finn")
    return book, first, late, "capped" if rule == "cap" else "confirmed"


@pytest.mark.parametrize("rule", ["device", "velocity", "cap", "milestone"])
def test_a_late_referral_is_decided_with_the_settled_referrals_it_reads_from_the_store(tmp_path, rule):
    """Referrals settle (their entries only in the part store, on disk; the records on disk too, one cached, so
    read back between steps); a referral that comes after them and whose rule reads them (their device group,
    their code's velocity window, their month's cap, the milestone count) is decided as by a runner that keeps
    everything as objects."""
    book, first, late, status = _settled_then_late(rule)
    first.book = late.book = book.book
    parts = DiskPartStore(tmp_path / "parts")
    tables = Tables(*(record_store.spilled_records(tmp_path / name, cached=1) for name in "vcr"), CHANGELOGS)
    try:
        run, plain = StageRunner(book.book, tables, 1, parts=parts), runner(book)
        sent: list[list[tuple[str, bytes]]] = []
        for r in (run, plain):
            out: list[tuple[str, bytes]] = []

            def keep(batch: Batch, out: list = out, r: StageRunner = r) -> None:
                out.extend((k.decode(), v) for t, k, v, _ in batch.records if t.endswith("rewards"))
                r.done(batch)

            through(r, first, done=keep)
            for days in (20, 20):  # the holds end; the replayed tick finds the outputs acknowledged: settled
                r.tick(0, T0 + timedelta(days=days), batch := Batch())
                keep(batch)
            r.referrer("anna", stages.Share("sh1", "default", "sms", T0), batch := Batch())  # at rest: settled
            keep(batch)
            if r is run:
                signups = sum(type(e).__name__ == "SignupEvent" for e in first.events)
                assert len(parts.ids("anna", "r")) == signups  # every first referral settled
                assert run.tables.referrers[b"anna"].core.settled == {}  # their entries are in the store only
            through(r, late, done=keep)
            for days in (60, 60):
                r.tick(0, T0 + timedelta(days=days), batch := Batch())
                keep(batch)
            sent.append(out)
        assert sent[0] == sent[1]
        changes = [RewardChange.model_validate_json(v) for _k, v in sent[0]]
        finn = {w.status.value for w in changes if w.reward_id == "default:anna:finn:referrer"}
        assert status in finn, finn
        bonuses = [w.reward_id for w in changes if ":milestone:" in w.reward_id]
        assert bonuses == (["anna:default:milestone:3"] if rule == "milestone" else []), bonuses
    finally:
        parts.close()
        for table in (tables.visitors, tables.customers, tables.referrers):
            table.close()


# -- the days of activity before the last few, in the part store (``referrer_parts.archive_before``) ------------


@st.composite
def busy_days(draw) -> Story:
    """Shares and clicks of one referrer on a few days, many on each (late ones land on a day already archived),
    a few sent again, and a signup to show beside them."""
    s = Story()
    for _ in range(draw(st.integers(min_value=1, max_value=30))):
        days, minutes = draw(st.integers(0, 14)), draw(st.integers(0, 3))
        kind = draw(st.sampled_from(["share", "share", "click", "resend"]))
        if kind == "share":
            s.share("anna", draw(st.sampled_from(["whatsapp", "email"])), minutes=minutes, days=days)
        elif kind == "click":
            s.click(draw(st.sampled_from(["v0", "v1"])), "ANNA", minutes=minutes, days=days)
        elif s.events:
            s.resend(draw(st.integers(min_value=0, max_value=len(s.events) - 1)))
    s.signup("eva", code="ANNA", days=draw(st.integers(0, 14)))
    return s


@settings(max_examples=150, deadline=None)
@given(busy_days(), st.randoms(use_true_random=False), st.sampled_from([1, 2, 4]), st.sampled_from([3, 10, 60]),
       st.booleans())
def test_days_of_activity_kept_in_the_part_store_change_nothing_a_worker_sends_writes_or_shows(
        tmp_path_factory, story, rnd, recent_days, horizon, on_disk):
    """A referrer's shares and clicks over two weeks in any order, as a runner that keeps only its last
    ``recent_days`` days of counts in the record (the rest in the part store, brought back by a late share or click,
    by the floor passing the day, or by a complete snapshot) and as one keeping every day: the same outputs, the
    same changelog, the same counters in Redis after every batch, and the same records once put back whole."""
    plain = runner(story, horizon_days=horizon)
    with keeping_parts(story, tmp_path_factory, on_disk, horizon_days=horizon, recent_days=recent_days) as (
            archiving, parts):
        side_by_side(story, rnd, plain, archiving, exact=not on_disk)
        for key in list(archiving.tables.referrers):
            record = archiving.tables.referrers[key]
            referrer_parts.unfold(record, key.decode(), parts)
            assert stored(record) == stored(plain.tables.referrers[key])
            assert parts.ids(key.decode(), "w") == [] and not record.archived


def test_a_late_share_on_a_day_in_the_part_store_counts_with_that_days_shares():
    """Two shares on the 1st, one on the 10th (the 1st goes to the store, two days kept), one more late on the
    1st: the day's cell shows 3, as a runner keeping every day shows."""
    s = Story()
    s.share("anna", days=0)
    s.share("anna", days=0, minutes=1)
    s.share("anna", days=9)
    s.share("anna", days=0, minutes=2)
    parts = PartStore()
    run = runner(s, parts=parts, recent_days=2)
    seen = []
    through(run, s, done=lambda b: seen.extend(run.snapshots(b, LAYOUT)))
    assert parts.ids("anna", "w") == ["w:2026-05-04"]  # back in the store after the batch
    day = LAYOUT.funnel(partition_of("anna", 6), "default", "2026-05-04")
    assert seen[-1].sums[(day, "share:whatsapp")] == 3
    assert run.tables.referrers[b"anna"].archived == {("share", "whatsapp"): 3}


def test_a_recovery_over_records_whose_days_are_in_the_part_store_takes_them_back_first():
    """After a rebalance the table's recovery may read a changelog again over records this process built and
    archived days of: each such record takes its days back before a part changes it, and ends as it was."""
    s = Story()
    for minutes in range(3):
        s.share("anna", days=0, minutes=minutes)
    s.share("anna", days=5)
    parts = PartStore()
    run = runner(s, parts=parts, recent_days=1)
    changelog: list[tuple[bytes, object]] = []

    def done(batch: Batch) -> None:
        run.snapshots(batch, LAYOUT)
        changelog.extend((k, v) for t, k, _, v in batch.table_changes() if t == CHANGELOGS[2])

    through(run, s, done=done)
    assert run.tables.referrers[b"anna"].archived  # the first day waits in the store
    assembler = referrer_parts.Assembler(ByName(run.tables.referrers), parts)
    for key, value in changelog:
        assembler.apply(key, value)
    assembler.finish()
    record = run.tables.referrers[b"anna"]
    referrer_parts.unfold(record, "anna", parts)
    plain = runner(s)
    through(plain, s)
    assert stored(record) == stored(plain.tables.referrers[b"anna"])


class Twins:
    """A runner keeping everything as objects and one keeping the days before its last two in a part store, fed the
    same inputs; after each batch, what each shows in Redis must be the same (``step``, ``events``)."""

    def __init__(self, story: Story) -> None:
        self.plain, self.archiving = runner(story), runner(story, parts=(parts := PartStore()), recent_days=2)
        self.parts = parts
        self.views: tuple[dict, dict] = ({}, {})

    def _shown(self, run: StageRunner, view: dict, batch: Batch) -> None:
        for snap in run.snapshots(batch, LAYOUT):
            _write(view, snap)

    def events(self, story: Story) -> None:
        """A story's events and what they cause, each batch shown and acknowledged."""
        for run, view in zip((self.plain, self.archiving), self.views, strict=True):
            for batch in through(run, story, done=functools.partial(self._shown, run, view)):
                run.done(batch)
        assert self.views[0] == self.views[1], _view_differences(*self.views)

    def step(self, act: Callable[[StageRunner, Batch], object]) -> None:
        """One input to both runners, shown and acknowledged."""
        for run, view in zip((self.plain, self.archiving), self.views, strict=True):
            act(run, batch := Batch())
            self._shown(run, view, batch)
            run.done(batch)
        assert self.views[0] == self.views[1], _view_differences(*self.views)

    def tick(self, days: int) -> None:
        self.step(lambda run, batch: run.tick(0, T0 + timedelta(days=days), batch))

    def share(self, event_id: str, days: int) -> None:
        self.step(lambda run, batch: run.referrer("anna", stages.Share(event_id, "default", "sms",
                                                                       T0 + timedelta(days=days)), batch))

    def same_once_whole(self) -> None:
        record = self.archiving.tables.referrers[b"anna"]
        referrer_parts.unfold(record, "anna", self.parts)
        assert stored(record) == stored(self.plain.tables.referrers[b"anna"])


def test_a_settled_referrals_funnel_sums_wait_with_their_day_in_the_part_store_and_come_back_with_it():
    """Eva's referral settles (its hold ends, its outputs acknowledged), then anna shares a month later: with two
    days kept, what eva's day holds of the settled referrals' sums leaves the record for the store with the day
    (the record keeps no entry per day of its history). A newer version of the referral (withdrawn) takes it back
    out of the store, its day with it, and settled again it goes back; otto, at rest on that day without an order,
    orders a month later: after every batch Redis shows what a runner keeping everything shows, and the records
    are the same once put back whole."""
    s = Story()
    s.signup("eva", code="ANNA")
    s.order("eva", "49.90", minutes=30, order_id="o1")
    s.signup("otto", code="ANNA", minutes=60)  # on eva's day; orders only once the day is in the store
    late = Story()
    late.order("otto", "20.00", days=32, order_id="o2")
    twins = Twins(s)
    parts = twins.parts
    twins.events(s)
    for _ in range(2):  # the hold ends; the replayed tick finds the outputs acknowledged: settled
        twins.tick(20)
    twins.share("sh1", 30)
    (rid,) = [pid[2:] for pid in parts.ids("anna", "r") if parts.get("anna", pid).referral.referee_id == "eva"]
    record = twins.archiving.tables.referrers[b"anna"]
    assert not [key for key in record.settled_sums if key[0] == "cell"]  # out with their day
    assert record.settled_sums[("signups",)] == [2, 2]  # the referrer's own totals stay (eva, otto at rest)
    day = parts.get("anna", "w:2026-05-04")
    assert sorted(cell[0] for cell in day.settled) == ["conversion", "signup"] and day.cells == ()
    assert [cell[3:] for cell in day.settled if cell[0] == "signup"] == [(2, 2)]
    referral = twins.plain.tables.referrers[b"anna"].core.referrals[rid]
    newer = stages.Versioned(f"referral:{rid}", 99, replace(referral, status="withdrawn"))
    twins.step(lambda run, batch: run.referrer("anna", newer, batch))
    assert rid in twins.archiving.tables.referrers[b"anna"].core.referrals
    twins.share("sh2", 31)  # acknowledged: settled again, a withdrawn one in no cell
    assert f"r:{rid}" in parts.ids("anna", "r")
    twins.step(lambda run, batch: run.referrer("anna", newer, batch))  # a duplicate of a settled one: no change
    twins.events(late)  # otto qualifies: back from the store, his day with him
    for _ in range(2):  # and settles: his sums back with his day
        twins.tick(52)
    twins.share("sh3", 53)
    assert sorted(parts.get("anna", "w:2026-05-04").settled) == [("signup", "default", NO_CHANNEL, 1, 1)]
    twins.same_once_whole()


def test_a_live_referral_on_a_day_in_the_part_store_counts_with_the_settled_ones_of_its_day():
    """Ida's and ute's referrals are of the same day; ida's settles, ute's waits for the hold of an order two weeks
    later, and the day goes to the store with ida's part of its cells. Ute's hold ends: her signup's cell is shown
    with ida's part read back from the store (the snapshot brings the day back); then ute's referral settles with
    the day in the store: her part joins ida's there, nothing of ida's lost."""
    s = Story()
    s.signup("ida", code="ANNA")
    s.order("ida", "49.90", minutes=30, order_id="o1")
    s.signup("ute", code="ANNA", minutes=60)
    s.order("ute", "20.00", days=15, order_id="o2")
    twins = Twins(s)
    twins.events(s)
    for _ in range(2):
        twins.tick(20)  # ida's hold ends: settled; ute's goes on
    twins.share("sh1", 22)
    day = twins.parts.get("anna", "w:2026-05-04")
    assert [cell[3:] for cell in day.settled if cell[0] == "signup"] == [(1, 1)]  # ida's
    assert len(twins.archiving.tables.referrers[b"anna"].core.referrals) == 1  # ute's, live
    twins.tick(35)  # ute's hold ends: her rewards confirmed, her contribution changes, every cell of it shown
    assert twins.parts.get("anna", "w:2026-05-04") is not None  # the day back in the store after the snapshot
    twins.tick(35)  # replayed, acknowledged: ute's settles, her day's part read from the store first
    assert not twins.archiving.tables.referrers[b"anna"].core.referrals
    twins.share("sh2", 36)  # the day back in the store after this batch's snapshot (none for a replayed tick)
    assert [cell[3:] for cell in twins.parts.get("anna", "w:2026-05-04").settled if cell[0] == "signup"] == [(2, 2)]
    twins.same_once_whole()
