"""The stages under at-least-once delivery with crashes, in memory: nothing lost, nothing counted twice.

A small model of the worker's processes: one log per stage, a table changelog per stage,
committed offsets, and the worker's own glue (``streams.stage_runner``, which the Faust shell
runs too) over batches of one to three records. What goes through Kafka is encoded and read
back as the worker reads it (``classify_internal``, ``streams.record_codec``). A crash in a
batch may lose any part of what it wrote (each table change, a suffix of the referrer
changelog's, each output, the Redis snapshots) and starts a new process: the tables read
back from their changelogs, every stage from its last committed offset, as Kafka would. Whatever the crashes, the end state must be the
one the pure core reaches with every event delivered once, in time order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.derived import DeadLetter, RewardChange
from schemas.events import ClickEvent, ShareEvent
from streams import counters, record_codec, referrer_parts
from streams.deadletter import classify_internal
from streams.erasure import Erase, mentions, rename
from streams.inbound import to_fact
from streams.part_store import PartStore
from streams.recent_keys import REMEMBERED
from streams.redis_layout import RedisLayout
from streams.referrer_rewards import Tick
from streams.stage_runner import Batch, ByName, StageRunner, Tables
from tests.oracle import counters as reference_counters
from tests.oracle.counters import counted_activity
from tests.unit.streams.story import T0, Story, resolve
from tests.unit.streams.test_properties import stories

LAYOUT = RedisLayout("rp:", 6)
STAGES = ("visitor", "customer", "referrer")
TARGET = {"referrals.visitor-facts": "visitor", "referrals.customer-facts": "customer",
          "referrals.referrer-facts": "referrer"}


def over_kafka(topic: str, key: bytes, value: bytes) -> object:
    """A stage's own fact as the next stage reads it from ``topic``: every fact a stage sends must pass."""
    read = classify_internal(topic=topic, partition=0, offset=0, key=key, value=value, received_at=T0)
    assert not isinstance(read, DeadLetter), read.problems
    return read


def stored(record: object) -> object:
    """A table record as the table's changelog gives it back."""
    return None if record is None else record_codec.decode(record_codec.encode(record))


CHANGELOGS = ("visitors-changelog", "customers-changelog", "referrers-changelog")
STAGE_OF_CHANGELOG = dict(zip(CHANGELOGS, STAGES, strict=True))


@dataclass
class Stage:
    log: list[tuple[str, object]] = field(default_factory=list)
    committed: int = 0
    # the stage's table changelog, compacted (a key's last write last), as encoded bytes (None: a tombstone);
    # the referrer table's in parts (streams.referrer_parts)
    changelog: dict[bytes, bytes | None] = field(default_factory=dict)


@dataclass
class Shell:
    """The worker's processes over the stage runner (``streams.stage_runner``, the glue the worker runs): a
    batch of one to three records of one stage, its writes lost in part by a crash, then a new process whose
    tables are what the changelogs kept."""

    story: Story
    rnd: random.Random
    crash_rate: float
    remembered: int = REMEMBERED  # keys the process's sets keep (``streams.recent_keys``)
    horizon_days: int = 1  # the dedup horizon: short, so that the stories' 40 days fold and drop shares and clicks
    recent_days: int = 0  # days of activity the records keep, the older in the part store (0: all)
    stages: dict[str, Stage] = field(default_factory=lambda: {s: Stage() for s in STAGES})
    redis: dict[str, counters.CounterSnapshot] = field(default_factory=dict)
    cells: dict[str, dict] = field(default_factory=dict)  # referrer -> its cells hash (``streams.redis_sink``)
    rewards_log: list = field(default_factory=list)  # referrals.rewards as delivered (duplicates and all)
    crashes: int = 0
    erased: dict[str, str] = field(default_factory=dict)  # erased customer -> pseudonym (the erasure registry)
    # the process's referrer parts on local disk (``streams.part_store``), as the worker keeps them: lost with it
    parts: PartStore = field(init=False)
    runner: StageRunner = field(init=False)

    def __post_init__(self) -> None:
        self.runner = self.recover()

    @property
    def tables(self) -> dict[str, dict[str, object]]:
        """Every stage's table as the current process holds it, by key; the referrer records whole (copies, with
        what the process keeps of them in its part store put back: ``referrer_parts.unfold``)."""
        t = self.runner.tables
        out = {name: dict(ByName(store)) for name, store in zip(STAGES, (t.visitors, t.customers, t.referrers),
                                                                strict=True)}
        out["referrer"] = {k: self.whole(k, record) for k, record in out["referrer"].items()}
        return out

    def whole(self, referrer_id: str, record: object) -> object:
        whole, scratch = record.copy(), PartStore()  # unfolding takes the settled parts out of the store: a copy's
        for kind in ("v", "n", "c", "d", "r", "w"):
            for part_id in self.parts.ids(referrer_id, kind):
                scratch.put(referrer_id, part_id, self.parts.get(referrer_id, part_id))
        referrer_parts.unfold(whole, referrer_id, scratch)
        return whole

    def register_erasure(self, customer_id: str, alias: str) -> None:
        """What ``referrals erase`` writes to Redis before it sends the Erase facts (the worker reads it)."""
        self.erased[customer_id] = alias
        self.runner.erased.add(alias)

    def write_redis(self, snap: counters.CounterSnapshot) -> None:
        """What the writer's script does (``streams.redis_sink``): nothing unless newer; a partial snapshot's
        summaries and welcome rewards merged into what is there, a complete one's replacing it."""
        k = snap.referrer_id
        old = self.redis.get(k)
        if old is not None and snap.seq <= old.seq:
            return
        cells = reference_counters.applied(self.cells.get(k, {}), snap.contribution, snap.complete)
        self.cells[k] = cells
        if old is not None and not snap.complete:
            welcome = {**old.welcome, **{key: {**old.welcome.get(key, {}), **fields}
                                         for key, fields in snap.welcome.items()}}
            snap = replace(snap, referrals={**old.referrals, **snap.referrals}, welcome=welcome,
                           leaderboard={**old.leaderboard, **snap.leaderboard},
                           campaigns=tuple(sorted({*old.campaigns, *snap.campaigns})), complete=True)
        # the funnel and ledger as the cells hash says (the script adds each cell's difference)
        self.redis[k] = replace(snap, sums=reference_counters.cell_sums(LAYOUT, k, cells), contribution="")

    def process(self) -> tuple[StageRunner, dict[str, int]]:
        """A new worker process: its tables read back from the changelogs (the referrer records assembled from
        their parts), and the records a crash left torn."""
        def table(name: str) -> dict[bytes, object]:
            return {k: record_codec.decode(v) for k, v in self.stages[name].changelog.items() if v is not None}

        referrers: dict[bytes, object] = {}
        self.parts = PartStore()  # a new process's: empty, filled by the recovery
        assembler = referrer_parts.Assembler(ByName(referrers), self.parts)
        for key, value in self.stages["referrer"].changelog.items():
            assembler.apply(key, None if value is None else record_codec.decode(value))
        torn = assembler.finish()
        runner = StageRunner(self.story.book, Tables(table("visitor"), table("customer"), referrers, CHANGELOGS), 1,
                             erased=set(self.erased.values()),
                             pseudonym_of=lambda customer_id: self.erased.get(customer_id, f"p:{customer_id}"),
                             horizon_days=self.horizon_days, remembered=self.remembered, parts=self.parts,
                             recent_days=self.recent_days)
        return runner, torn

    def recover(self) -> StageRunner:
        """A new process, with every record a crash left torn repaired before any input is read, as the worker
        does (``streams.app``): its outputs sent and its counters written first, then its parts and header; a
        crash on the way leaves it torn for the next recovery."""
        while True:
            runner, torn = self.process()
            if not torn:
                return runner
            crash = self.rnd.random() < self.crash_rate
            # where a crash cuts the repair short: while the outputs are sent (none of the changelog is), or
            # once they are all acknowledged, while the changelog is (a prefix of it is kept)
            in_outputs = crash and self.rnd.random() < 0.5
            outputs, changelog = runner.repair(torn)
            self.send(outputs, lossy=in_outputs)
            if not in_outputs:
                self.write_counters(runner, outputs)
                self.persist(changelog, lossy=crash)
            if not crash:
                return runner
            self.crashes += 1

    def send(self, batch: Batch, lossy: bool) -> None:
        """A batch's records as the next stages (and the reward log) read them; a crash loses any of them (Kafka
        acknowledges per partition)."""
        for topic, key, value, _headers in batch.records:
            if lossy and self.rnd.random() < 0.5:
                continue
            if topic == "referrals.rewards":
                self.rewards_log.append(RewardChange.model_validate_json(value))
            elif topic in TARGET:
                self.stages[TARGET[topic]].log.append((key.decode(), over_kafka(topic, key, value)))

    def persist(self, batch: Batch, lossy: bool) -> None:
        """A batch's table changes, encoded when the batch is done, as the worker sends them. A crash keeps a
        prefix of the referrer changelog's (one partition per referrer) and any of the other tables'."""
        changes = batch.table_changes()
        referrer = [c for c in changes if c[0] == CHANGELOGS[2]]
        keep = self.rnd.randint(0, len(referrer)) if lossy else len(referrer)
        kept = set(map(id, referrer[:keep]))
        for change in changes:
            topic, key, _partition, value = change
            if lossy and (id(change) not in kept if topic == CHANGELOGS[2] else self.rnd.random() < 0.5):
                continue
            changelog = self.stages[STAGE_OF_CHANGELOG[topic]].changelog
            changelog.pop(key, None)
            changelog[key] = None if value is None else record_codec.encode(value)

    def write_counters(self, runner: StageRunner, batch: Batch) -> None:
        """Redis, once Kafka acknowledged everything (a crash before: nothing written)."""
        for snap in runner.snapshots(batch, LAYOUT):
            self.write_redis(snap)
        for referrer_id in batch.retired:
            self.redis.pop(referrer_id, None)  # an erased referrer's counters retired
            self.cells.pop(referrer_id, None)

    def inbound(self, event) -> None:  # what the agents make of each inbound event
        key, fact = to_fact(event, resolve)
        stage = {ShareEvent: "referrer", ClickEvent: "visitor"}.get(type(event), "customer")
        self.stages[stage].log.append((key, fact))

    def _deliver(self, name: str) -> None:
        stage = self.stages[name]
        start = stage.committed
        records = stage.log[start:start + self.rnd.randint(1, 3)]
        batch = Batch()
        for key, fact in records:
            if name == "visitor":
                self.runner.visitor(key, fact, batch)
            elif name == "customer":
                self.runner.customer(key, fact, batch)
            elif isinstance(fact, Tick):
                self.runner.tick(0, fact.now, batch)
            else:
                self.runner.referrer(key, fact, batch)
        crash = self.rnd.random() < self.crash_rate
        self.send(batch, lossy=crash)
        self.persist(batch, lossy=crash)
        if crash:  # the whole worker restarts: every stage from its commit, the tables from their changelogs
            self.crashes += 1
            self.runner = self.recover()
            return
        self.write_counters(self.runner, batch)
        self.runner.done(batch)
        stage.committed = start + len(records)

    def run(self) -> None:
        while True:
            pending = [n for n in STAGES if self.stages[n].committed < len(self.stages[n].log)]
            if not pending:
                return
            self._deliver(self.rnd.choice(pending))


def final(shell: Shell):
    """The rewards as the reward log alone rebuilds them, and the referrals as the referrers hold them."""
    table = shell.tables["referrer"]
    last = {change.reward_id: change for change in shell.rewards_log}
    rewards = {k: (c.status, c.points) for k, c in last.items()
               if not (c.status.value == "revoked" and c.points == 0)}
    referrals = {k: r.status for rec in table.values() for k, r in rec.core.referrals.items()
                 if r.status != "withdrawn"}
    return rewards, referrals


@settings(max_examples=150, deadline=None)
@given(stories(), st.randoms(use_true_random=False), st.sampled_from([0.0, 0.2, 0.5]),
       st.sampled_from([1, REMEMBERED]), st.sampled_from([(1, 0), (10, 1), (10, 3)]))
def test_crashes_and_redeliveries_end_as_one_clean_pass_in_time_order(story, rnd, crash_rate, remembered, days):
    """``remembered`` 1: the process forgets at once which keys it re-sent, wrote complete, saw acknowledged.
    ``days``: the dedup horizon, and the days of activity the records keep (0: all; else the older ones' counts in
    the part store)."""
    events = sorted(story.events, key=lambda e: e.occurred_at)
    expected = story.run(events, tick_days=200)
    want_rewards = {k: (w.status, w.points) for k, w in expected.rewards().items()
                    if not (w.status.value == "revoked" and w.points == 0)}
    want_referrals = {k: r.status for k, r in expected.referrals().items()}

    shell = Shell(story, rnd, crash_rate, remembered=remembered, horizon_days=days[0], recent_days=days[1])
    arrival = list(story.events)
    rnd.shuffle(arrival)
    for event in arrival:
        shell.inbound(event)
    shell.run()
    # every event in, before the clock: Redis shows every referrer's record (the clock's changes would rewrite
    # most summaries and hide one a crash lost)
    for referrer_id, record in shell.tables["referrer"].items():
        assert same_counters(shell.redis.get(referrer_id), counters.snapshot(LAYOUT, referrer_id, record))
    for _ in range(2):  # the clock, after everything (a later tick must find nothing new to do)
        shell.stages["referrer"].log.append(("__tick__", Tick(T0 + timedelta(days=200))))
        shell.run()
    assert final(shell) == (want_rewards, want_referrals)
    # shares and clicks: each counted once, those beyond the dedup horizon not at all, as the model that keeps
    # every id says for the referrer stage's log in the order it was read
    want_counted = counted_activity(shell.stages["referrer"].log, shell.horizon_days)
    got_counted = {k: nonzero({c: n for c, n in r.activity.items()})
                   for k, r in shell.tables["referrer"].items() if r is not None and r.activity}
    assert got_counted == {k: v for k, v in want_counted.items() if v}
    # Redis shows every referrer's final record, whatever was lost on the way
    for referrer_id, record in shell.tables["referrer"].items():
        assert same_counters(shell.redis.get(referrer_id), counters.snapshot(LAYOUT, referrer_id, record))


def nonzero(cells: dict) -> dict:
    """Funnel cells that count something: a record read back from its changelog parts leaves out the cells only
    earlier versions of its referrals counted in, at 0 (``streams.referrer_parts``), which change no total."""
    return {cell: n for cell, n in cells.items() if n}


def same_counters(a: counters.CounterSnapshot | None, b: counters.CounterSnapshot) -> bool:
    """Two snapshots that put the same numbers in Redis (cells at 0 aside: see ``nonzero``). A record whose
    counters never changed (seq 0: it only knows who names it) is written nowhere: the worker snapshots a
    referrer when its seq moves."""
    if a is None:
        return b.seq == 0

    def shown(snap: counters.CounterSnapshot) -> counters.CounterSnapshot:
        return replace(snap, sums={k: n for k, n in snap.sums.items() if n}, contribution="", complete=True,
                       leaderboard={k: n for k, n in snap.leaderboard.items() if n})
    return shown(a) == shown(b)


def books(shell: Shell) -> dict[str, tuple[str, int]]:
    """Every reward the referrer records hold, by id: status and points."""
    return {k: (w.status.value, w.points) for rec in shell.tables["referrer"].values() if rec is not None
            for k, w in rec.core.rewards.items() if not (w.status.value == "revoked" and w.points == 0)}


@settings(max_examples=100, deadline=None)
@given(stories(), st.randoms(use_true_random=False), st.sampled_from([0.0, 0.3]),
       st.sampled_from(["anna", "ben", "eva", "finn"]))
def test_an_erased_customer_is_gone_from_every_record_and_the_books_are_the_same_under_the_pseudonym(
        story, rnd, crash_rate, victim):
    from datetime import UTC, datetime

    shell = Shell(story, rnd, 0.0)
    for event in story.events:
        shell.inbound(event)
    shell.run()
    shell.stages["referrer"].log.append(("__tick__", Tick(T0 + timedelta(days=200))))
    shell.run()
    before = books(shell)
    funnel_before = {k: nonzero(counters.funnel_cells(r)) for k, r in shell.tables["referrer"].items() if r}

    shell.crash_rate = crash_rate
    alias = "c_pseudonym"
    shell.register_erasure(victim, alias)
    erase = Erase(victim, alias, "erasure-1", datetime(2027, 1, 1, tzinfo=UTC))
    shell.stages["referrer"].log.append((victim, erase))  # what ``referrals erase`` sends
    shell.run()
    for _ in range(2):  # redeliveries of what came before: late facts for the erased customer
        shell.stages["referrer"].log.append(("__tick__", Tick(T0 + timedelta(days=201))))
        shell.run()

    for name, table in shell.tables.items():
        assert table.get(victim) is None, f"{name} still has a record under the erased id"
        for key, record in table.items():
            assert not mentions(record, victim), f"{name}[{key}] still mentions the erased customer"
    assert victim not in shell.redis
    assert all(not mentions(snap, victim) for snap in shell.redis.values())
    assert shell.parts.ids(victim, "v") == shell.parts.ids(victim, "r") == []  # the process's parts on disk
    for referrer_id in shell.tables["referrer"]:
        for part_id in shell.parts.ids(referrer_id, "r"):
            assert not mentions(shell.parts.get(referrer_id, part_id), victim), (referrer_id, part_id)
    # the books: every reward kept, renamed; the funnels count the same
    assert books(shell) == {rename(k, victim, alias): v for k, v in before.items()}
    funnel_after = {k: nonzero(counters.funnel_cells(r)) for k, r in shell.tables["referrer"].items() if r}
    def content(cells: dict) -> str:  # not the dict's repr: a record read back from its parts orders keys otherwise
        return repr(sorted(cells.items()))

    assert sorted(funnel_after.values(), key=content) == sorted(funnel_before.values(), key=content)
    for referrer_id, record in shell.tables["referrer"].items():
        if record is not None:
            assert same_counters(shell.redis.get(referrer_id), counters.snapshot(LAYOUT, referrer_id, record))
