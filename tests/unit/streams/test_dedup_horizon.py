"""The dedup horizon of a referrer's shares and clicks (``streams.stages._count``): the ids are kept only for the
days after the floor, the older days' counts folded into one part each; nothing counted twice, nothing the rule
keeps dropped, the record and every changelog value bounded by the horizon, not by the history."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from streams import record_codec, referrer_parts, stages
from tests.oracle.counters import counted_activity
from tests.unit.streams.story import T0, Story

BOOK = Story().book
REFERRER = "anna"


def share(n: int, day: int) -> stages.Share:
    return stages.Share(f"s{n}", "default", "whatsapp", T0 + timedelta(days=day))


def click(n: int, day: int, visitor: str | None = None) -> stages.Versioned:
    return stages.Versioned(f"click:c{n}", 0, stages.ClickCounted(f"c{n}", "default", None,
                                                                   T0 + timedelta(days=day), visitor))


def day(d: int) -> str:
    return (T0 + timedelta(days=d)).strftime("%Y-%m-%d")


class Changelog:
    """The referrer changelog as Kafka keeps it (compacted), values encoded and read back."""

    def __init__(self) -> None:
        self.values: dict[bytes, object] = {}
        self.largest = 0

    def write(self, entries: list[tuple[bytes, object]]) -> None:
        for key, value in entries:
            self.values.pop(key, None)
            if value is not None:
                data = record_codec.encode(value)
                self.largest = max(self.largest, len(data))
                self.values[key] = record_codec.decode(data)

    def assembled(self, entries: list[tuple[bytes, object]] = ()) -> tuple[stages.ReferrerRecord, dict[str, int]]:
        records: dict[str, stages.ReferrerRecord] = {}
        assembler = referrer_parts.Assembler(records)
        for key, value in [*self.values.items(), *entries]:
            assembler.apply(key, value)
        torn = assembler.finish()
        return records[REFERRER], torn


def through(facts: list, horizon_days: int, changelog: Changelog | None = None) -> tuple[stages.ReferrerRecord,
                                                                                          list[stages.Step]]:
    record, steps = stages.ReferrerRecord(), []
    for fact in facts:
        step = stages.referrer_step(record, REFERRER, fact, BOOK, horizon_days)
        steps.append(step)
        if step.changed:
            if changelog is not None:
                changelog.write(referrer_parts.entries(step.record, REFERRER, step.parts, record))
            record = step.record
    return record, steps


def test_ids_go_once_the_floor_passes_their_day_and_their_counts_stay():
    record, steps = through([share(1, 0), click(2, 0), share(3, 1), share(4, 5)], horizon_days=3)
    assert record.floor == day(2)  # day 5's share moved it
    assert set(record.counted) == {"share:s4"}  # days 0 and 1 folded
    assert {c: n for c, n in record.activity.items() if n} == {
        ("share", "default", "whatsapp", day(0)): 1, ("click", "default", "unknown", day(0)): 1,
        ("share", "default", "whatsapp", day(1)): 1, ("share", "default", "whatsapp", day(5)): 1}
    assert steps[-1].parts == {"a:" + day(0), "a:" + day(1), "c:share:s1", "c:click:c2", "c:share:s3",
                               "c:share:s4"}


def test_an_event_at_or_before_the_floor_is_not_counted_and_says_why_a_later_one_still_counts_once():
    facts = [share(1, 0), share(2, 10), share(1, 0), share(3, 7), share(4, 8), share(4, 8), click(5, 6, "v9")]
    record, steps = through(facts, horizon_days=3)
    assert record.floor == day(7)
    assert [s.dropped for s in steps] == [None, None, stages.BEYOND_DEDUP_HORIZON, stages.BEYOND_DEDUP_HORIZON,
                                          None, None, stages.BEYOND_DEDUP_HORIZON]
    assert steps[5].duplicate and not steps[2].duplicate  # within the horizon, a repeat is a duplicate
    assert sum(record.activity.values()) == 3
    # a click not counted still tells the record which visitor names the referrer (its erasure must reach it)
    assert "v9" in record.visitors and steps[6].changed and steps[6].record.seq == steps[5].record.seq


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["share", "click"]), st.integers(0, 12), st.integers(0, 40)),
                max_size=60),
       st.integers(1, 10))
def test_the_stage_counts_what_the_model_keeping_every_id_counts_and_its_parts_assemble_to_it(events, horizon):
    """Any order, any repeats (a client resending, a redelivery): the counts equal the model's, which never
    forgets an id; the record read back from its changelog parts (at every step) is the record."""
    first_day: dict[int, int] = {}
    facts = []
    for kind, n, d in events:
        d = first_day.setdefault(n, d)  # an event id always comes with its own time
        facts.append(share(n, d) if kind == "share" else click(n, d))
    changelog = Changelog()
    record = stages.ReferrerRecord()
    for fact in facts:
        step = stages.referrer_step(record, REFERRER, fact, BOOK, horizon)
        if step.changed:
            changelog.write(referrer_parts.entries(step.record, REFERRER, step.parts, record))
            record = step.record
            back, torn = changelog.assembled()
            assert not torn and back.floor == record.floor and back.counted == record.counted
            assert back.activity == record.activity
    want = counted_activity([(REFERRER, f) for f in facts], horizon).get(REFERRER, {})
    assert record.activity == want
    assert all(cell[3] > record.floor for cell in record.counted.values())


def test_a_crash_that_keeps_the_header_back_keeps_the_floor_the_counted_part_carries():
    """The step that moves the floor is cut short after its parts: the header (old floor) never made it. The
    record read back has the new floor from its ``c:`` part, so the older event that comes again after the
    restart is not counted; without it, it would count, and the uninterrupted run would not have counted it."""
    changelog = Changelog()
    record, _ = through([share(1, 0)], horizon_days=1, changelog=changelog)
    step = stages.referrer_step(record, REFERRER, share(2, 9), BOOK, 1)
    entries = referrer_parts.entries(step.record, REFERRER, step.parts, record)
    assert entries[-1][0] == referrer_parts.changelog_key(REFERRER)
    back, torn = changelog.assembled(entries[:-1])
    assert torn and back.floor == day(8)
    assert back.activity == step.record.activity
    late = stages.referrer_step(back, REFERRER, share(3, 4), BOOK, 1)
    assert late.dropped == stages.BEYOND_DEDUP_HORIZON


def test_a_crash_between_a_folded_day_and_its_ids_tombstones_counts_that_day_once():
    changelog = Changelog()
    record, _ = through([share(1, 0), share(2, 0), share(3, 1)], horizon_days=1, changelog=changelog)
    step = stages.referrer_step(record, REFERRER, share(4, 5), BOOK, 1)
    entries = referrer_parts.entries(step.record, REFERRER, step.parts, record)
    folded = [i for i, (key, _) in enumerate(entries) if b"\x1fa:" in key]
    tombstones = [i for i, (key, value) in enumerate(entries) if b"\x1fc:" in key and value is None]
    assert folded and tombstones and max(folded) < min(tombstones)  # the folded days first
    back, torn = changelog.assembled(entries[:max(folded) + 1])  # the folded days only
    assert torn and sum(back.activity.values()) == 3 and not back.counted
    assert stages.referrer_step(back, REFERRER, share(2, 0), BOOK, 1).dropped == stages.BEYOND_DEDUP_HORIZON


def test_a_referrer_sharing_every_day_for_three_years_keeps_a_bounded_record():
    """10 shares a day for 1,095 days: the ids kept stay those of the horizon's days, every changelog value is
    small, and the counts are all there."""
    changelog = Changelog()
    facts = [share(d * 10 + i, d) for d in range(1095) for i in range(10)]
    record, _ = through(facts, horizon_days=30, changelog=changelog)
    assert len(record.counted) <= 31 * 10
    assert sum(record.activity.values()) == 10_950
    assert changelog.largest < 300
    back, torn = changelog.assembled()
    assert not torn and back.activity == record.activity and back.counted == record.counted
    # one value per day folded, one per id still kept, and the header: what compaction leaves
    assert len(changelog.values) == 1 + len(record.counted) + len(stages.folded_days(record))


def test_the_stages_default_horizon_is_the_settings_default():
    from referrals.settings import StreamSettings

    assert StreamSettings().dedup_horizon_days == stages.DEDUP_HORIZON_DAYS
