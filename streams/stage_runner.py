"""The stages run as the worker runs them: one object between the pure stages (``streams.stages``) and the
shell that feeds them, with no Faust, Kafka, Redis or clock inside.

Three shells use it: the Faust worker (``streams.app``: parses records, looks up codes, sends a
batch's records and table changes, waits for Kafka's acknowledgement, then writes Redis), the
in-memory crash model of the tests (``tests/unit/streams/test_at_least_once.py``: loses any part
of a batch's writes and recovers from what it kept) and ``referrals rebuild`` (replays the
referrer stage's log). What they share is here, so the crash model checks the worker's own glue:

- a step's record goes to its table, its changelog write (a referrer's record in parts, its
  header last unless it renames: ``streams.referrer_parts``) and its outputs to the ``Batch``;
- on a duplicate, a key's current outputs are sent again, once per key and process;
- an erased customer's late facts are forwarded to the pseudonym (referrers) or dropped; an
  erased referrer's record goes to the pseudonym part by part (``AdoptPart``, then the
  ``Adopt`` with its header), and the pseudonym's key takes the parts in;
- inputs a stage does not take (``Step.dropped``: beyond the dedup horizon, over a visitor's
  cap) are told to ``dropped`` (the worker's metric);
- which referrers a tick visits (only those due, or all of a partition on a replayed tick);
- which referrers' counters the batch writes, complete or only the changed referrals;
- a record a crash left torn is decided again (``repair``);
- with a ``PartStore`` (``streams.part_store``), the parts a referrer's record keeps on local disk instead of
  as objects (its visitors and named customers, the ids of the shares and clicks it counted, its referrals
  decided for good once acknowledged) go there after each step, and come back before a step that reads them
  (``referrer_parts.recall_for``): every part before an erasure fact or a repair, an event's id before the
  same event, the ids of the days the floor passes, a visitor before a click of theirs, a settled referral
  before a newer fact about it; a complete snapshot reads them there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from schemas.derived import Attribution, RewardChange
from schemas.records import attribution_record, reward_record
from schemas.topics import CUSTOMER_FACTS, REFERRER_FACTS
from streams import counters, recent_keys, record_codec, referee_ledger, referrer_parts, stages, visitor_attribution
from streams.campaigns import CampaignBook
from streams.erasure import Adopt, AdoptPart, Continue, Erase, Forget, rename
from streams.part_store import PartStore
from streams.recent_keys import RecentKeys
from streams.redis_layout import RedisLayout, partition_of
from streams.referee_ledger import CodeOwner
from streams.referrer_rewards import Tick

Store = MutableMapping[bytes, Any]  # a table: key -> record (Faust's in-memory store, or a dict)
_SENT_AS_FACTS = (stages.Versioned, visitor_attribution.VisitorSignup, stages.Share, Erase, Continue, Forget)
_ERASURE_FACTS = (Erase, Adopt, AdoptPart, Continue, Forget, Tick)


class Batch:
    """What one batch of one stage sends and writes once all its events have been stepped."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]] | None]] = []
        # referrers whose counters changed, in order -> the referrals whose summaries changed (None: all of them,
        # a complete snapshot: after a restart, a duplicate, a repair, a change of the whole record)
        self.dirty: dict[str, set[str] | None] = {}
        # referrers in ``dirty`` with a set -> the cells of shares and clicks the batch changed (``touched_cells``)
        self.cells: dict[str, set[tuple[str, str, str, str]]] = {}
        # the table changes: (changelog topic, key) -> (partition, value; None: a tombstone). One write per key
        # and batch, the last: the changelog is compacted, only a key's last value counts
        self.changelog: dict[tuple[str, bytes], tuple[int, Any]] = {}
        self.partition = 0  # of the event being handled: its key's partition in every co-partitioned topic
        self.deadletters: list[tuple[str, str, int, int]] = []  # (source topic, reason, partition, offset)
        self.caused_at: list[datetime] = []  # event times of the events whose counters this batch writes
        self.retired: dict[str, None] = {}  # erased referrers whose counters go
        self.owners: dict[str, CodeOwner | None] = {}  # the batch's codes looked up before it is stepped
        self.headers_first: set[tuple[str, bytes]] = set()  # referrer headers sent before the parts (renames)
        self.referrers: set[str] = set()  # the referrers this batch stepped
        self.emitted: set[tuple[str, str]] = set()  # (table, key): keys whose outputs this batch sends

    def add(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        self.records.append((topic, key, value, headers))

    def mark(self, referrer_id: str, parts: frozenset[str] | None, record: stages.ReferrerRecord | None = None
             ) -> None:
        """The referrer's counters to write; ``parts`` the parts of ``record`` (as the step left it) that changed
        (None: any)."""
        if parts is None or self.dirty.get(referrer_id, set()) is None:
            self.dirty[referrer_id] = None
            self.cells.pop(referrer_id, None)
        else:
            assert record is not None, "the record the parts are of"
            self.dirty.setdefault(referrer_id, set()).update(stages.referrals_in(parts))
            self.cells.setdefault(referrer_id, set()).update(stages.touched_cells(record, parts))

    def table_changes(self) -> list[tuple[str, bytes, int, Any]]:
        """The table changes (topic, key, partition, record or None) in the order they are sent: erasure markers
        and renamed headers, then a referrer record's parts (and every other table's records), then the other
        referrer headers (``streams.referrer_parts``: torn writes)."""
        return [(topic, key, partition, value) for (topic, key), (partition, value)
                in sorted(self.changelog.items(), key=self._order)]

    def _order(self, item: tuple[tuple[str, bytes], tuple[int, Any]]) -> int:
        (topic, key), (_partition, value) = item
        if (isinstance(value, stages.ReferrerRecord) and value.erasure is not None) or (topic, key) in self.headers_first:
            return 0
        if b"\x1f" in key or not isinstance(value, stages.ReferrerRecord | None):
            return 1
        return 2


@functools.lru_cache(maxsize=4096)
def recent_cutoff(floor: str, horizon_days: int, recent_days: int) -> str:
    """The first of the last ``recent_days`` days up to the newest counted (the floor plus the horizon)."""
    return (date.fromisoformat(floor) + timedelta(days=horizon_days - recent_days + 1)).isoformat()


class ByName(MutableMapping):
    """A table's store keyed by bytes, seen by id (what ``referrer_parts.Assembler`` and ``rebuild`` read)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __getitem__(self, key: str) -> Any:
        return self.store[key.encode()]

    def __setitem__(self, key: str, value: Any) -> None:
        self.store[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        del self.store[key.encode()]

    def __iter__(self) -> Iterator[str]:
        return (k.decode() for k in self.store)

    def __len__(self) -> int:
        return len(self.store)


@dataclass
class Tables:
    """The three stages' tables and their changelog topics."""

    visitors: Store
    customers: Store
    referrers: Store
    changelogs: tuple[str, str, str]  # visitors, customers, referrers


@dataclass
class StageRunner:
    """The glue of one worker process. ``erased`` holds the pseudonyms of erased customers (the shell keeps it
    current); ``pseudonym_of`` gives a customer id's pseudonym; ``written(table, key, partition)`` hears of every
    record written (Faust's store must learn a key's partition)."""

    campaigns: CampaignBook
    tables: Tables
    partitions: int
    topic_prefix: str = ""
    source: str = "referrals-worker"
    erased: set[str] = field(default_factory=set)
    pseudonym_of: Callable[[str], str] = str
    written: Callable[[Store, bytes, int], None] = lambda _store, _key, _partition: None
    horizon_days: int = stages.DEDUP_HORIZON_DAYS  # the referrers' dedup horizon (``streams.stages._count``)
    visitor_cap: int = stages.VISITOR_FACTS_KEPT  # clicks and signups a visitor's record keeps (``stages.visitor_step``)
    customer_limits: referee_ledger.Limits = referee_ledger.LIMITS  # what a customer's record keeps
    dropped: Callable[[str, str], None] = lambda _table, _reason: None  # hears of every input not applied, why
    parts: PartStore | None = None  # what referrer records keep out of their objects (``streams.part_store``)
    settled: Callable[[int], None] = lambda _n: None  # hears how many referrals each fold settled (the metric)
    remembered: int = recent_keys.REMEMBERED  # keys each of the per-process sets below keeps (``streams.recent_keys``)
    # days of a referrer's activity kept in its record, back from the newest it counted (with ``parts``; 0: all):
    # older ones wait in the part store (``referrer_parts.archive_before``)
    recent_days: int = 0
    # per process: keys whose outputs were re-sent on a duplicate, referrers stepped (first touch: complete snapshot);
    # a key forgotten is re-sent again, or written complete again: always safe
    refreshed: dict[str, RecentKeys] = field(init=False)
    touched: RecentKeys = field(init=False)
    # referrers stepped by a batch of this process that is done (every output and table change acknowledged);
    # one forgotten re-sends on a duplicate what is already on Kafka
    acknowledged: RecentKeys = field(init=False)
    # which referrers a tick can change, per partition (built at the first tick after an assignment), and the
    # latest tick a record of the partition was ticked at (a tick no later than that is a replay)
    due_at: dict[int, dict[bytes, datetime]] = field(default_factory=dict)
    ticked_until: dict[int, datetime] = field(default_factory=dict)
    _partition_of: dict[bytes, int] = field(default_factory=dict)  # a cache, cleared when it holds ``remembered``

    def __post_init__(self) -> None:
        self.refreshed = {table: RecentKeys(self.remembered) for table in ("visitors", "customers", "referrers")}
        self.touched = RecentKeys(self.remembered)
        self.acknowledged = RecentKeys(self.remembered)

    # -- the stages --------------------------------------------------------------------------------

    def visitor(self, key: str, fact: Any, batch: Batch) -> None:
        record = self.tables.visitors.get(key.encode()) or stages.VisitorRecord()
        step = stages.visitor_step(record, fact, self.campaigns, self.visitor_cap)
        if step.dropped is not None:
            self.dropped("visitors", step.dropped)
        self._apply("visitors", key, step, batch, stages.visitor_resend)

    def customer(self, customer_id: str, fact: Any, batch: Batch) -> None:
        stored = self.tables.customers.get(customer_id.encode())
        if isinstance(fact, Erase):
            self.erased.add(fact.pseudonym)
        elif stored is None and not isinstance(fact, Forget) and self.erased_as(customer_id) is not None:
            return  # an event of an erased customer: dropped
        record = stored or stages.CustomerRecord()
        step = stages.customer_step(record, customer_id, fact, self.campaigns, self.customer_limits)
        if step.dropped is not None:
            self.dropped("customers", step.dropped)
        if self._deferred("customers", customer_id, step, fact, batch):
            return
        self._apply("customers", customer_id, step, batch, lambda r: stages.customer_resend(r, customer_id))

    def referrer(self, referrer_id: str, fact: Any, batch: Batch) -> None:
        stored = self.tables.referrers.get(referrer_id.encode())
        if self.parts is None:
            self._referrer(referrer_id, fact, batch, stored)
            return
        if stored is None:
            self.parts.drop(referrer_id)  # not this process's record: none of its parts here are (part_store)
        else:
            referrer_parts.recall_for(stored, referrer_id, fact, self.parts, self.horizon_days, self.campaigns)
        self._fold(referrer_id, self._referrer(referrer_id, fact, batch, stored))

    def _fold(self, referrer_id: str, acked: int = 0) -> None:
        """Out of the record's objects, into the part store, what it need not hold (``referrer_parts.fold``);
        ``acked``: a seq up to which its outputs are known to be on Kafka (more than the record says when a
        step that changed nothing did not store it)."""
        assert self.parts is not None
        record = self.tables.referrers.get(referrer_id.encode())
        if record is None:
            self.parts.drop(referrer_id)
        elif settled := referrer_parts.fold(record, referrer_id, self.parts, acked):
            self.settled(settled)

    def _referrer(self, referrer_id: str, fact: Any, batch: Batch, stored: stages.ReferrerRecord | None) -> int:
        """One step of a referrer; the seq its outputs are acknowledged up to, as the step knew it."""
        if stored is None and not isinstance(fact, _ERASURE_FACTS):
            alias = self.erased_as(referrer_id)
            if alias is not None:  # late for an erased referrer: to its pseudonym, renamed
                self.emit(batch, [stages.Outbound(REFERRER_FACTS.name, alias, rename(fact, referrer_id, alias))])
                return 0
        if isinstance(fact, Erase):
            self.erased.add(fact.pseudonym)
        record = stored or stages.ReferrerRecord()
        if isinstance(fact, AdoptPart):
            self._adopt_part(referrer_id, record, fact, batch)
            return 0
        if referrer_id not in batch.referrers:  # its first step in the batch
            if referrer_id in self.acknowledged and record.acked != record.seq:
                # the last batch of this process that stepped it is done: every output of its steps is on Kafka
                record = replace(record, acked=record.seq)
            self.acknowledged.discard(referrer_id)  # until this batch is done
            batch.referrers.add(referrer_id)
        if stored is not None:
            counters.keep_totals(record, referrer_id)  # read back from disk: summed before the step changes them
        renaming = stages.renames(record, referrer_id, fact)
        step = stages.referrer_step(record, referrer_id, fact, self.campaigns, self.horizon_days)
        if step.dropped is not None:
            self.dropped("referrers", step.dropped)
        if self._deferred("referrers", referrer_id, step, fact, batch):
            return record.acked
        if step.changed and step.record is None:  # an erased referrer's marker goes: so do its counters
            batch.dirty.pop(referrer_id, None)
            batch.cells.pop(referrer_id, None)
            batch.retired[referrer_id] = None
        elif step.changed and step.record.seq != record.seq:
            batch.mark(referrer_id, None if isinstance(fact, Adopt) else step.parts, step.record)  # adopted: all
            caused_at = stages.caused_at(fact)
            if caused_at is not None:
                batch.caused_at.append(caused_at)
        if step.duplicate and referrer_id not in self.refreshed["referrers"]:
            batch.mark(referrer_id, None)  # the snapshot may not have reached Redis: write it again, complete
        if stored is not None and referrer_id not in self.touched:
            # first touched by this process: what an earlier one wrote to the table (a repair, a partial snapshot
            # whose batch a crash cut short) may not have reached Redis: the snapshot is written again, complete
            self.touched.add(referrer_id)
            batch.mark(referrer_id, None)
        self._apply("referrers", referrer_id, step, batch, lambda r: stages.referrer_resend(r, referrer_id),
                    before=record, rename=renaming)
        if step.changed:
            self._note_due(batch.partition, referrer_id.encode(), step.record)
        return record.acked

    def _adopt_part(self, referrer_id: str, record: stages.ReferrerRecord, fact: AdoptPart, batch: Batch) -> None:
        """A part of a record this key adopts (an erased referrer's, renamed): taken in and written like any
        part, with the header, until the ``Adopt`` with the record's header completes it. Once adopted, a part
        sent again changes nothing (the adoption re-sent after a crash)."""
        if record.seq > 0 or record.erasure is not None:
            return
        record = referrer_parts.put(record, fact.part_id, fact.value)
        self._apply("referrers", referrer_id, stages.Step(record, changed=True, parts=frozenset({fact.part_id})),
                    batch, lambda r: [])

    def done(self, batch: Batch) -> None:
        """The shell's word that ``batch`` is done: Kafka acknowledged all it sent (a later duplicate of its
        referrers need not re-send what their steps so far sent)."""
        self.acknowledged.update(batch.referrers)

    def tick(self, partition: int, now: datetime, batch: Batch) -> None:
        """The clock's tick on one referrer partition: every referrer of it the tick can change."""
        for key in self.tick_targets(partition, now):
            self.referrer(key.decode(), Tick(now), batch)

    # -- ticks -------------------------------------------------------------------------------------

    def referrer_keys(self, partition: int) -> list[bytes]:
        keys = []
        for key in list(self.tables.referrers.keys()):
            p = self._partition_of.get(key)
            if p is None:
                if len(self._partition_of) >= self.remembered:
                    self._partition_of.clear()
                p = self._partition_of[key] = partition_of(key.decode(), self.partitions)
            if p == partition:
                keys.append(key)
        return sorted(keys)

    def tick_targets(self, partition: int, now: datetime) -> list[bytes]:
        """The referrers due by ``now`` (``stages.tick_due``); all of the partition's on a replayed tick (no later
        than one a record was already ticked at: a duplicate re-sends what a crash may have lost). The same
        records change either way."""
        index = self.due_at.get(partition)
        if index is None:
            index = self.due_at[partition] = {}
            for key in self.referrer_keys(partition):
                self._note_due(partition, key, self.tables.referrers.get(key))
        if partition in self.ticked_until and now <= self.ticked_until[partition]:
            return self.referrer_keys(partition)
        return sorted(key for key, when in index.items() if when <= now)

    def reassigned(self) -> None:
        """Partitions moved: the tables may have changed under another owner (whose last batch a crash may have
        cut short). The tick index is read again, and every key counts as not yet touched by this process: its
        first duplicate re-sends, its first step writes complete counters, nothing is taken as acknowledged."""
        self.due_at.clear()
        self.ticked_until.clear()
        for done in self.refreshed.values():
            done.clear()
        self.touched.clear()
        self.acknowledged.clear()

    def _note_due(self, partition: int, key: bytes, record: stages.ReferrerRecord | None) -> None:
        index = self.due_at.get(partition)
        if index is None:  # not built yet: the first tick reads the table
            return
        when = stages.tick_due(record, self.campaigns) if record is not None else None
        if when is None:
            index.pop(key, None)
        else:
            index[key] = when
        if record is not None and record.ticked is not None:
            self.ticked_until[partition] = max(self.ticked_until.get(partition, record.ticked), record.ticked)

    # -- recovery ------------------------------------------------------------------------------------

    def repair(self, torn: dict[str, int]) -> tuple[Batch, Batch]:
        """Records a crash left torn (referrer id -> newest part seq), decided again: the batch of their outputs
        and complete counters to send (and have acknowledged) and write first, then the batch of their parts and
        headers. Cut short before the parts are all on Kafka, the record is still torn at the next recovery and
        decided again alike (nothing else is read before the repair): the counters written ahead show that same
        state. Written after the parts, the counters could be lost for good with a crash in between (the record
        whole again, nothing would write them before its next change)."""
        outputs, changelog = Batch(), Batch()
        for referrer_id, newest in sorted(torn.items()):
            stored = self.tables.referrers[referrer_id.encode()]
            if self.parts is not None:
                referrer_parts.unfold(stored, referrer_id, self.parts)  # every part is written again
            step = stages.referrer_repair(stored, referrer_id, self.campaigns, newest)
            self.emit(outputs, step.outbound)
            changelog.partition = partition_of(referrer_id, self.partitions)
            self._apply("referrers", referrer_id, replace(step, outbound=[]), changelog, lambda r: [], before=stored,
                        refreshed=set())
            if self.parts is not None:
                self._fold(referrer_id)
            outputs.mark(referrer_id, None)
        return outputs, changelog

    def snapshots(self, batch: Batch, layout: RedisLayout) -> list[counters.CounterSnapshot]:
        """The counter snapshots of a batch's changed referrers (``Batch.dirty``), each computed once: a partial one
        takes the changes its record's totals gathered since the last."""
        out = []
        for referrer_id, referrals in batch.dirty.items():
            record = self.tables.referrers.get(referrer_id.encode())
            if record is not None and record.erasure is None:  # an erased one's counters go at ``Forget``
                settled = ()
                if referrals is None and self.parts is not None:  # complete: every day and settled referral
                    referrer_parts.recall_days(record, referrer_id, self.parts)
                    settled = referrer_parts.settled_referrals(record, referrer_id, self.parts)
                recall = None if self.parts is None else functools.partial(
                    referrer_parts.recall_cells, record, referrer_id, self.parts)  # the days a partial one reads
                out.append(counters.snapshot(layout, referrer_id, record, referrals,
                                             batch.cells.get(referrer_id, ()), settled, recall))
                cutoff = self._cutoff(record.floor)
                if cutoff:
                    assert self.parts is not None
                    referrer_parts.archive_before(record, referrer_id, self.parts, cutoff)
                else:  # none archived: the days looked up need no note
                    record.core.__dict__.pop("_recalled", None)
        return out

    def _cutoff(self, floor: str) -> str:
        """The first day of activity a record with ``floor`` keeps (``recent_days`` back from the newest it counted,
        which set the floor); "" while it keeps every day."""
        if not (self.recent_days and self.parts is not None and floor):
            return ""
        return recent_cutoff(floor, self.horizon_days, self.recent_days)

    # -- plumbing ------------------------------------------------------------------------------------

    def erased_as(self, customer_id: str) -> str | None:
        """The pseudonym of an erased customer, or None."""
        if not self.erased:
            return None
        alias = self.pseudonym_of(customer_id)
        return alias if alias in self.erased else None

    def emit(self, batch: Batch, outbound: Iterable[stages.Outbound]) -> None:
        """The outputs as Kafka records: facts for the stages' own topics in their encoding, attributions and
        reward changes as their JSON events."""
        for out in outbound:
            if isinstance(out.value, Adopt):  # the adopted record part by part, its header last: no value grows
                record, topic, key = out.value.record, self.topic_prefix + out.topic, out.key.encode()
                part_ids = stages.part_ids(record)
                for part_id in part_ids:
                    value = AdoptPart(out.value.erasure_id, part_id, referrer_parts.part(record, part_id))
                    batch.add(topic, key, record_codec.encode(value))
                header = Adopt(out.value.erasure_id, referrer_parts.header(record, out.key), len(part_ids))
                batch.add(topic, key, record_codec.encode(header))
            elif isinstance(out.value, _SENT_AS_FACTS):
                batch.add(self.topic_prefix + out.topic, out.key.encode(), record_codec.encode(out.value))
            elif isinstance(out.value, Attribution):
                r = attribution_record(out.value, self.source, self.topic_prefix)
                batch.add(r.topic, r.key, r.value, r.headers)
            elif isinstance(out.value, RewardChange):
                r = reward_record(out.value, out.key, self.source, self.topic_prefix)
                batch.add(r.topic, r.key, r.value, r.headers)
            else:  # pragma: no cover - a new kind of output without a wire format
                raise TypeError(f"cannot send {type(out.value).__name__}")

    def _deferred(self, table: str, key: str, step: stages.Step, fact: Any, batch: Batch) -> bool:
        """An erasure marker's deletion (``Forget``) in a batch that also sends the key's outputs (the marker's
        facts re-sent on a duplicate, say) waits: sent to itself again, it comes in a later batch, once these
        outputs are on Kafka. Deleted in this batch, the tombstone could reach Kafka and the outputs not, and
        with the marker gone nothing would send them again. So does a referrer's erasure going on (``Continue``)
        in the batch that re-sends its adoption (a duplicate ``Erase`` after a crash, the ``Continue`` the
        crashed batch left on Kafka right behind it): sent together, a crash could keep the customers' erasures
        and the ``Forget`` they lead to, and lose parts of the adoption, which nothing would send again (the
        crash model found it)."""
        if (table, key) not in batch.emitted:
            return False
        if not (step.changed and step.record is None) and not (isinstance(fact, Continue) and step.outbound):
            return False
        own = CUSTOMER_FACTS.name if table == "customers" else REFERRER_FACTS.name
        self.emit(batch, [stages.Outbound(own, key, fact)])
        return True

    def _apply(self, table: str, key: str, step: stages.Step, batch: Batch, resend: Callable[[Any], list],
               before: Any = None, rename: bool = False, refreshed: set[str] | RecentKeys | None = None) -> None:
        """Store a changed record and send its outputs; on a duplicate, re-send once per key and process."""
        store = getattr(self.tables, table)
        topic = self.tables.changelogs[("visitors", "customers", "referrers").index(table)]
        k = key.encode()
        if step.changed and table == "referrers":  # in parts: what changed, then the header
            for entry_key, value in referrer_parts.entries(step.record, key, step.parts, before, header_first=rename):
                batch.changelog[(topic, entry_key)] = (batch.partition, value)
            header = (topic, referrer_parts.changelog_key(key))
            if rename:  # the header's last writer in the batch decides where it goes (``Batch.table_changes``)
                batch.headers_first.add(header)
            else:
                batch.headers_first.discard(header)
        elif step.changed:  # None: an erased customer's marker goes (a tombstone)
            batch.changelog[(topic, k)] = (batch.partition, step.record)
        if step.changed and step.record is None:
            store.pop(k, None)
        elif step.changed:
            store[k] = step.record
            if table == "referrers":
                stages.note_changed(step.record, step.parts)
            # the store drops a key whose partition this worker no longer owns when a recovery completes, but
            # knows the partitions only of keys recovery read: without this, a record written here would stay
            # when its partition moves away, and a later recovery would build on it
            self.written(store, k, batch.partition)
        if step.duplicate:
            done = self.refreshed[table] if refreshed is None else refreshed
            if key in done:
                return
            done.add(key)
            again = resend(step.record)
            if again:
                batch.emitted.add((table, key))
            self.emit(batch, again)
        if step.outbound:
            batch.emitted.add((table, key))
        self.emit(batch, step.outbound)
