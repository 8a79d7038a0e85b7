"""The stages under at-least-once delivery with crashes, in memory: nothing lost, nothing counted twice.

A small model of what the Faust shell does (``streams.app``): one log per stage, a table
per stage, committed offsets. What goes through Kafka is encoded and read back as the worker
reads it (``classify_internal``, the tables' ``records`` codec). A crash after a step may lose any part of what the step
wrote (the table change, each output, the Redis snapshot) and sends the stage back to its
last committed offset, as Kafka would. Whatever the crashes, the end state must be the
one the pure core reaches with every event delivered once, in time order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import timedelta

from faust.serializers import codecs
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.derived import DeadLetter
from schemas.events import ClickEvent, ShareEvent
from streams import counters, referrer_parts, stages
from streams.deadletter import classify_internal
from streams.erasure import Adopt, Continue, Erase, Forget, mentions, rename
from streams.inbound import to_fact
from streams.record_codec import RECORDS_CODEC, encode
from streams.redis_layout import RedisLayout
from streams.referrer_rewards import Tick
from tests.unit.streams.story import T0, Story, resolve
from tests.unit.streams.test_properties import stories

LAYOUT = RedisLayout("rp:", 6)
STAGES = ("visitor", "customer", "referrer")
TARGET = {"referrals.visitor-facts": "visitor", "referrals.customer-facts": "customer",
          "referrals.referrer-facts": "referrer"}


def over_kafka(topic: str, fact: object) -> object:
    """A stage's own fact as the next stage reads it from ``topic``: every fact a stage sends must pass."""
    read = classify_internal(topic=topic, partition=0, offset=0, key=b"k", value=encode(fact), received_at=T0)
    assert not isinstance(read, DeadLetter), read.problems
    assert read == fact
    return read


def stored(record: object) -> object:
    """A table record as the table's changelog gives it back."""
    return None if record is None else codecs.loads(RECORDS_CODEC, codecs.dumps(RECORDS_CODEC, record))


@dataclass
class Stage:
    log: list[tuple[str, object]] = field(default_factory=list)
    committed: int = 0
    table: dict[str, object] = field(default_factory=dict)
    refreshed: set[str] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)  # keys this process stepped (the worker's referrers_touched)


@dataclass
class Shell:
    story: Story
    rnd: random.Random
    crash_rate: float
    stages: dict[str, Stage] = field(default_factory=lambda: {s: Stage() for s in STAGES})
    redis: dict[str, counters.CounterSnapshot] = field(default_factory=dict)
    rewards_log: list = field(default_factory=list)  # referrals.rewards as delivered (duplicates and all)
    crashes: int = 0
    erased: dict[str, str] = field(default_factory=dict)  # erased customer -> pseudonym (the shell's set)
    # the referrer table's changelog, compacted (a key's last write last), in parts (streams.referrer_parts)
    changelog: dict[bytes, object] = field(default_factory=dict)

    def write_redis(self, k: str, snap: counters.CounterSnapshot) -> None:
        """What the writer's script does (``streams.redis_sink``): nothing unless newer; a partial snapshot's
        summaries and welcome rewards merged into what is there, a complete one's replacing it."""
        old = self.redis.get(k)
        if old is not None and snap.seq <= old.seq:
            return
        if old is not None and not snap.complete:
            welcome = {**old.welcome, **{key: {**old.welcome.get(key, {}), **fields}
                                         for key, fields in snap.welcome.items()}}
            snap = replace(snap, referrals={**old.referrals, **snap.referrals}, welcome=welcome, complete=True)
        self.redis[k] = snap

    def persist(self, entries) -> None:  # noqa: ANN001
        for key, value in entries:
            self.changelog.pop(key, None)
            self.changelog[key] = stored(value)

    def recover_referrers(self) -> None:
        """What a restarted worker's referrer table holds: its changelog assembled, then every record a crash
        left torn repaired before any input is read, as the worker does (``streams.app``): its outputs sent
        first, then its parts and header, then its counters; a crash on the way leaves it torn for the next
        recovery."""
        while True:
            table: dict[str, object] = {}
            assembler = referrer_parts.Assembler(table)
            for key, value in self.changelog.items():
                assembler.apply(key, value)
            torn = assembler.finish()
            self.stages["referrer"].table = table
            crash = bool(torn) and self.rnd.random() < self.crash_rate
            # where a crash cuts the repair short: while the outputs are sent (none of the changelog is), or
            # once they are all acknowledged, while the changelog is (a prefix of it is kept)
            in_outputs = crash and self.rnd.random() < 0.5
            repairs = []
            for k, newest in sorted(torn.items()):
                before = table[k]
                repair = stages.referrer_repair(stored(before), k, self.story.book, newest)
                repairs.append((k, before, repair))
                for out in repair.outbound:
                    if not in_outputs or self.rnd.random() < 0.5:
                        if out.topic == "referrals.rewards":
                            self.rewards_log.append(out.value)
                        elif out.topic in TARGET:
                            self.stages[TARGET[out.topic]].log.append((out.key, over_kafka(out.topic, out.value)))
            if not in_outputs:
                entries = [e for k, before, repair in repairs
                           for e in referrer_parts.entries(repair.record, k, None, before)]
                self.persist(entries if not crash else entries[:self.rnd.randint(0, len(entries))])
            if not crash:
                for k, _before, repair in repairs:
                    table[k] = repair.record
                    self.write_redis(k, counters.snapshot(LAYOUT, k, repair.record))
            if not crash:
                return
            self.crashes += 1

    def inbound(self, event) -> None:  # noqa: ANN001 - what the agents make of each inbound event
        key, fact = to_fact(event, resolve)
        stage = {ShareEvent: "referrer", ClickEvent: "visitor"}.get(type(event), "customer")
        self.stages[stage].log.append((key, fact))

    def _step(self, name: str, key: str, fact) -> tuple[stages.Step, list[stages.Outbound]]:  # noqa: ANN001
        book = self.story.book
        # the stages update a record in place (streams.referrer_rewards): each step gets its own copy, as a
        # worker's memory is gone with its crash and only the writes that reached Kafka remain
        table = {k: stored(v) for k, v in self.stages[name].table.items() if k == key}
        alias = self.erased.get(key)
        if alias is not None and table.get(key) is None and not isinstance(fact, Erase | Adopt | Continue | Forget | Tick):
            # what the shell does with a late fact for an erased customer: forward it (referrer), drop it
            if name == "referrer":
                return stages.Step(None, [stages.Outbound("referrals.referrer-facts", alias,
                                                          rename(fact, key, alias))]), []
            return stages.Step(None), []
        if name == "visitor":
            step = stages.visitor_step(table.get(key) or stages.VisitorRecord(), fact, book)
            return step, stages.visitor_resend(step.record) if step.record is not None else []
        if name == "customer":
            step = stages.customer_step(table.get(key) or stages.CustomerRecord(), key, fact, book)
            return step, stages.customer_resend(step.record, key) if step.record is not None else []
        step = stages.referrer_step(table.get(key) or stages.ReferrerRecord(), key, fact, book)
        return step, stages.referrer_resend(step.record, key) if step.record is not None else []

    def _deliver(self, name: str, index: int) -> None:
        stage = self.stages[name]
        key, fact = stage.log[index]
        keys = sorted(stage.table) if isinstance(fact, Tick) else [key]
        crash = self.rnd.random() < self.crash_rate
        for k in keys:
            writes = []
            entries: list = []  # the referrer table's changelog writes, in the order the worker sends them
            before = stage.table.get(k)
            first = before is not None and k not in stage.touched
            stage.touched.add(k)
            rename = name == "referrer" and before is not None and stages.renames(before, k, fact)
            step, resend = self._step(name, k, fact)
            outbound = list(step.outbound)
            # the worker's snapshot: complete after a restart, on a first duplicate, for a whole-record change;
            # else only the summaries of the referrals the step changed
            complete = first or step.parts is None or (step.duplicate and k not in stage.refreshed)
            if step.duplicate and k not in stage.refreshed:
                stage.refreshed.add(k)
                outbound = resend + outbound
            if step.changed and name == "referrer":
                entries += referrer_parts.entries(step.record, k, step.parts, before, header_first=rename)
                if step.record is None:
                    stage.table.pop(k, None)
                else:
                    stage.table[k] = step.record
            elif step.changed:
                writes.append(lambda k=k, step=step: stage.table.__setitem__(k, stored(step.record)))  # None: deleted
            for out in outbound:
                if out.topic in TARGET:
                    writes.append(lambda out=out: self.stages[TARGET[out.topic]].log.append(
                        (out.key, over_kafka(out.topic, out.value))))
                elif out.topic == "referrals.rewards":
                    writes.append(lambda out=out: self.rewards_log.append(out.value))
            for w in writes:  # a crash loses any of them (Kafka acknowledges per partition)
                if not crash or self.rnd.random() < 0.5:
                    w()
            # the changelog is one partition per referrer: a crash keeps a prefix of what was sent to it
            self.persist(entries if not crash else entries[:self.rnd.randint(0, len(entries))])
            # Redis is written only after Kafka acknowledged everything (a crash before: nothing written)
            if name == "referrer" and not crash and step.changed and step.record is None:
                self.redis.pop(k, None)  # an erased referrer's counters retired
            elif name == "referrer" and not crash and (step.changed or complete) and stage.table.get(k) is not None:
                self.write_redis(k, counters.snapshot(LAYOUT, k, stage.table[k], None if complete
                                                      else stages.referrals_in(step.parts)))
        if crash:
            self.crashes += 1
            stage.refreshed.clear()
            for s in self.stages.values():  # the whole worker restarts: every stage from its commit
                s.refreshed.clear()
                s.touched.clear()
            self.recover_referrers()
        else:
            stage.committed = index + 1

    def run(self) -> None:
        while True:
            pending = [n for n in STAGES if self.stages[n].committed < len(self.stages[n].log)]
            if not pending:
                return
            name = self.rnd.choice(pending)
            self._deliver(name, self.stages[name].committed)


def final(shell: Shell):  # noqa: ANN201
    """The rewards as the reward log alone rebuilds them, and the referrals as the referrers hold them."""
    table = shell.stages["referrer"].table
    last = {change.reward_id: change for change in shell.rewards_log}
    rewards = {k: (c.status, c.points) for k, c in last.items()
               if not (c.status.value == "revoked" and c.points == 0)}
    referrals = {k: r.status for rec in table.values() for k, r in rec.core.referrals.items()
                 if r.status != "withdrawn"}
    return rewards, referrals


@settings(max_examples=150, deadline=None)
@given(stories(), st.randoms(use_true_random=False), st.sampled_from([0.0, 0.2, 0.5]))
def test_crashes_and_redeliveries_end_as_one_clean_pass_in_time_order(story, rnd, crash_rate):
    events = sorted(story.events, key=lambda e: e.occurred_at)
    expected = story.run(events, tick_days=200)
    want_rewards = {k: (w.status, w.points) for k, w in expected.rewards().items()
                    if not (w.status.value == "revoked" and w.points == 0)}
    want_referrals = {k: r.status for k, r in expected.referrals().items()}

    shell = Shell(story, rnd, crash_rate)
    arrival = list(story.events)
    rnd.shuffle(arrival)
    for event in arrival:
        shell.inbound(event)
    shell.run()
    # every event in, before the clock: Redis shows every referrer's record (the clock's changes would rewrite
    # most summaries and hide one a crash lost)
    for referrer_id, record in shell.stages["referrer"].table.items():
        assert same_counters(shell.redis.get(referrer_id), counters.snapshot(LAYOUT, referrer_id, record))
    for _ in range(2):  # the clock, after everything (a later tick must find nothing new to do)
        shell.stages["referrer"].log.append(("__tick__", Tick(T0 + timedelta(days=200))))
        shell.run()
    assert final(shell) == (want_rewards, want_referrals)
    # Redis shows every referrer's final record, whatever was lost on the way
    for referrer_id, record in shell.stages["referrer"].table.items():
        assert same_counters(shell.redis.get(referrer_id), counters.snapshot(LAYOUT, referrer_id, record))


def nonzero(cells: dict) -> dict:
    """Funnel cells that count something: a record read back from its changelog parts leaves out the cells only
    earlier versions of its referrals counted in, at 0 (``streams.referrer_parts``), which change no total."""
    return {cell: n for cell, n in cells.items() if n}


def same_counters(a: counters.CounterSnapshot | None, b: counters.CounterSnapshot) -> bool:
    """Two snapshots that put the same numbers in Redis (cells at 0 aside: see ``nonzero``)."""
    if a is None:
        return False
    strip = {"sums": {k: n for k, n in b.sums.items() if n}, "contribution": "", "complete": True}
    return replace(a, **{**strip, "sums": {k: n for k, n in a.sums.items() if n}}) == replace(b, **strip)


def books(shell: Shell) -> dict[str, tuple[str, int]]:
    """Every reward the referrer records hold, by id: status and points."""
    return {k: (w.status.value, w.points) for rec in shell.stages["referrer"].table.values() if rec is not None
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
    funnel_before = {k: nonzero(counters.funnel_cells(r)) for k, r in shell.stages["referrer"].table.items() if r}

    shell.crash_rate = crash_rate
    alias = "c_pseudonym"
    shell.erased[victim] = alias
    erase = Erase(victim, alias, "erasure-1", datetime(2027, 1, 1, tzinfo=UTC))
    shell.stages["customer"].log.append((victim, erase))
    shell.stages["referrer"].log.append((victim, erase))
    shell.run()
    for _ in range(2):  # redeliveries of what came before: late facts for the erased customer
        shell.stages["referrer"].log.append(("__tick__", Tick(T0 + timedelta(days=201))))
        shell.run()

    for name, stage in shell.stages.items():
        assert stage.table.get(victim) is None, f"{name} still has a record under the erased id"
        for key, record in stage.table.items():
            assert not mentions(record, victim), f"{name}[{key}] still mentions the erased customer"
    assert victim not in shell.redis
    assert all(not mentions(snap, victim) for snap in shell.redis.values())
    # the books: every reward kept, renamed; the funnels count the same
    assert books(shell) == {rename(k, victim, alias): v for k, v in before.items()}
    funnel_after = {k: nonzero(counters.funnel_cells(r)) for k, r in shell.stages["referrer"].table.items() if r}
    def content(cells: dict) -> str:  # not the dict's repr: a record read back from its parts orders keys otherwise
        return repr(sorted(cells.items()))

    assert sorted(funnel_after.values(), key=content) == sorted(funnel_before.values(), key=content)
    for referrer_id, record in shell.stages["referrer"].table.items():
        if record is not None:
            assert same_counters(shell.redis.get(referrer_id), counters.snapshot(LAYOUT, referrer_id, record))
