"""The referrer record in changelog parts (``streams.referrer_parts``): what the stage writes, assembled, is the
record; each part stays small however long the referrer's history; a torn write is told apart."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from streams import record_codec, referrer_parts
from streams.part_store import PartStore
from streams.referrer_rewards import Tick
from streams.stage_runner import ByName
from tests.unit.streams.story import T0
from tests.unit.streams.test_at_least_once import Shell, stored
from tests.unit.streams.test_properties import stories


def assembled(changelog: dict[bytes, object], order: list[bytes] | None = None) -> dict[str, object]:
    records: dict[str, object] = {}
    assembler = referrer_parts.Assembler(records)
    for key in order or list(changelog):
        assembler.apply(key, changelog[key])
    assert assembler.finish() == {}  # nothing torn without a crash
    return records


def same_record(a, b) -> bool:
    return a == b


@settings(max_examples=150, deadline=None)
@given(stories(), st.randoms(use_true_random=False))
def test_what_the_stage_writes_assembles_to_the_record_in_any_order_of_keys(story, rnd):
    shell = Shell(story, rnd, 0.0)
    arrival = list(story.events)
    rnd.shuffle(arrival)
    for event in arrival:
        shell.inbound(event)
    shell.run()
    for _ in range(2):  # the clock; again (a replay visits every referrer: what the first made final is settled)
        shell.stages["referrer"].log.append(("__tick__", Tick(T0 + timedelta(days=200))))
        shell.run()
    table = shell.tables["referrer"]
    changelog = {k: None if v is None else record_codec.decode(v)
                 for k, v in shell.stages["referrer"].changelog.items()}
    # the worker's records keep their visitors in the process's part store (``streams.part_store``), not as
    # objects; recovery with a part store of its own folds them the same way
    folded: dict[str, object] = {}
    parts = PartStore()
    rebuilt_folded = referrer_parts.Assembler(folded, parts)
    for key in sorted(changelog, key=lambda _: rnd.random()):
        rebuilt_folded.apply(key, changelog[key])
    assert rebuilt_folded.finish() == {}
    held = dict(ByName(shell.runner.tables.referrers))  # the records as the process holds them: folded
    assert all(not record.visitors for record in [*held.values(), *folded.values()])
    assert any(shell.parts.ids(k, "r") for k in held) or not any(
        record.core.final for record in table.values())  # every final referral acknowledged by now: settled
    assert not any(record.core.settled for record in held.values())  # their entries are in the store too
    for referrer_id, record in table.items():  # ``table``: whole (``Shell.tables``)
        assert parts.ids(referrer_id, "v") == shell.parts.ids(referrer_id, "v")
        referrer_parts.unfold(folded[referrer_id], referrer_id, parts)
        assert same_record(folded[referrer_id], stored(record)), differences(folded[referrer_id], stored(record))
    for order in (None, sorted(changelog, key=lambda _: rnd.random())):
        rebuilt = assembled(changelog, order)
        assert set(rebuilt) == set(table)
        for referrer_id, record in table.items():
            assert same_record(rebuilt[referrer_id], stored(record)), differences(rebuilt[referrer_id], stored(record))


def differences(a, b):  # debugging aid
    import dataclasses
    out = []
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "core":
            for g in dataclasses.fields(x):
                if getattr(x, g.name) != getattr(y, g.name):
                    out.append((g.name, getattr(x, g.name), getattr(y, g.name)))
        elif x != y:
            out.append((f.name, x, y))
    return out


def test_no_changelog_value_grows_with_the_referrers_history():
    """An influencer with 3,000 referrals (a qualifying order and a share each, ticks daily): every value the
    stage writes stays small; the whole record as one value would be megabytes (the poison pill of #17)."""
    from bench.referrer_history import REFERRER, book, facts, through_stage
    from streams import stages

    record = stages.ReferrerRecord()
    largest = 0
    changelog: dict[bytes, object] = {}
    for stepped, entries in through_stage(stages.ReferrerRecord(), (f for g in facts(3_000) for f in g), book()):
        record = stepped
        for key, value in entries:
            largest = max(largest, len(record_codec.encode(value)) if value is not None else 0)
            changelog.pop(key, None)
            changelog[key] = stored(value)
    assert largest < 4_096, largest
    assert len(record_codec.encode(record)) > 1_000_000  # what one value would have been
    assert same_record(assembled(changelog)[REFERRER], stored(record))


def test_a_write_cut_short_is_torn_and_one_without_any_header_is_dropped():
    from bench.referrer_history import REFERRER, book, facts, through_stage
    from streams import stages

    campaigns = book()
    record = stages.ReferrerRecord()
    changelog: dict[bytes, object] = {}
    groups = facts(40)
    for stepped, entries in through_stage(stages.ReferrerRecord(), (f for g in groups[:-1] for f in g), campaigns):
        record = stepped
        changelog.update(entries)
    last = groups[-1][-1]  # the last referral qualifies: its part, then the header
    step = stages.referrer_step(record, REFERRER, last, campaigns)
    entries = referrer_parts.entries(step.record, REFERRER, step.parts, record)
    assert entries[-1][0] == referrer_parts.changelog_key(REFERRER) and len(entries) >= 2
    cut = dict(changelog)
    cut.update(entries[:-1])  # the header never made it
    records: dict[str, object] = {}
    assembler = referrer_parts.Assembler(records)
    for key, value in cut.items():
        assembler.apply(key, value)
    assert assembler.finish() == {REFERRER: step.record.seq}
    # a referrer's first write cut short: parts, no header at all: nothing of it
    records = {}
    assembler = referrer_parts.Assembler(records)
    for key, value in referrer_parts.entries(step.record, "newcomer", None, None)[:-1]:
        assembler.apply(key, value)
    assert assembler.finish() == {} and records == {}
