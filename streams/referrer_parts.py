"""A referrer's record in the changelog as many small values: none grows with the referrer's history.

The referrer table keeps one ``ReferrerRecord`` per referrer in memory, but its changelog
holds it in parts, each under its own key (``<referrer_id>\\x1f<part id>``; ids cannot hold
control characters, ``schemas.fields``):

- the **header** (key ``<referrer_id>``): the record without its collections: seq, last
  tick, erasure marker, the referrer's profile and its version;
- ``r:<referral id>``: one referral with everything decided about it: its version, its
  rewards (with the milestone bonuses it earned), their change counts and finality, the
  statuses they reached and the reasons it was withheld for;
- ``c:<event id>``: a share or click counted, with the funnel cell it counted in, for as long
  as its day is within the dedup horizon (``streams.stages._count``);
- ``a:<day>``: a day's shares and clicks counted, per cell, once the horizon's floor has passed
  the day and its ``c:`` parts went (the referrer's activity is the sum of these and the
  ``c:`` parts after the floor);
- ``v:<visitor id>``, ``n:<customer id>``: a visitor whose click was counted, a customer
  whose records name the referrer.

So one event writes the parts it changed and the header, each bounded: a part by one
referral's story, the header by the erasure marker (which holds the whole record an erased
referrer leaves to its pseudonym: the one value still bounded only by the history).

**Torn writes.** A crash can leave only some of a batch's changelog writes on Kafka. Within
one partition Kafka keeps a prefix of what was sent, so the shell sends a referrer's parts
before its header, and every part carries the seq of the record it belongs to. A record whose
parts are newer than its header lost the end of a write (``Assembler.torn``): the shell then
decides it again from the ground up and re-sends its outputs the first time it touches it
(``streams.stages.referrer_repair``), while the uncommitted events come again as usual.
The funnel cells a record contributed to are not kept beyond what its activity, referrals and
settled sums count: a cell at 0 is left out of a complete snapshot, which takes back any cell Redis
still holds that it does not name (``streams.redis_sink``), exactly as a 0 would.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from schemas.derived import ReasonCode, RewardStatus
from streams import counters, referrer_rewards, stages
from streams.erasure import Adopt, AdoptPart, Continue, Erase, Forget
from streams.interning import interned
from streams.referee_ledger import Profile, Referral
from streams.referrer_rewards import ReferrerState, Reward, rewards_of
from streams.stages import ReferrerRecord, referral_part

if TYPE_CHECKING:
    from streams.campaigns import CampaignBook
    from streams.part_store import PartStore

SEP = "\x1f"
Cell = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class ReferralPart:
    seq: int  # of the record when written
    referral: Referral
    version: int | None  # the newest version of the referral fact applied
    rewards: tuple[Reward, ...]
    changes: tuple[int, ...]  # per reward: changes emitted
    final: tuple[str, ...]  # ids of its rewards that are final
    reached: tuple[tuple[str, str, str, str, int], ...]  # (reward id, status, role, campaign, points)
    withheld: tuple[tuple[str, str], ...]  # (reason, campaign)


@dataclass(frozen=True, slots=True)
class Counted:
    seq: int
    cell: Cell  # (stage, campaign, channel, day) the share or click counted in
    floor: str = ""  # the record's dedup floor once it was counted (``Assembler``: a header a crash kept back)


@dataclass(frozen=True, slots=True)
class Folded:
    """A day's shares and clicks once the dedup horizon has passed it: never changes again. As the part store's
    entry of a day out of the record (``archive_before``), also what the day's cells hold of the settled referrals'
    sums (``settled``); a changelog part (``a:<day>``) has none."""

    seq: int
    cells: tuple[tuple[str, str, str, int], ...]  # (stage, campaign, channel, count) of the day
    settled: tuple[tuple[str, str, str, int, int], ...] = ()  # (stage, campaign, channel, sum, how many name it)


@dataclass(frozen=True, slots=True)
class Member:
    """A visitor (``v:``) or a customer (``n:``) the record names."""

    seq: int


Part = ReferralPart | Counted | Folded | Member


def changelog_key(referrer_id: str, part_id: str | None = None) -> bytes:
    return (referrer_id if part_id is None else f"{referrer_id}{SEP}{part_id}").encode()


def split_key(key: bytes) -> tuple[str, str | None]:
    referrer_id, sep, part_id = key.decode().partition(SEP)
    return referrer_id, part_id if sep else None


# -- a record into parts --------------------------------------------------------------------------------------


def header(record: ReferrerRecord, referrer_id: str) -> ReferrerRecord:
    """The record without its collections; of the fact versions only the referrer's profile's (every other
    version is a referral's, kept in its part)."""
    profile = f"profile:{referrer_id}"
    return ReferrerRecord(
        core=ReferrerState(profile=record.core.profile), seq=record.seq, ticked=record.ticked,
        erasure=record.erasure, versions={profile: record.versions[profile]} if profile in record.versions else {},
        acked=record.acked, floor=record.floor)


def part(record: ReferrerRecord, part_id: str) -> Part | None:
    """The value of one part as the record holds it now; None: the record has no such part (a tombstone)."""
    kind, ident = part_id[0], part_id[2:]
    if kind == "r":
        if ident in record.core.settled:  # not a tombstone: its part is where ``fold`` put it
            raise ValueError(f"referral {ident} is settled: unfold the record before writing its part")
        referral = record.core.referrals.get(ident)
        if referral is None:
            return None
        rewards = tuple(rewards_of(record.core, ident))
        return ReferralPart(
            seq=record.seq, referral=referral, version=record.versions.get(f"referral:{ident}"), rewards=rewards,
            changes=tuple(record.core.changes.get(w.reward_id, 0) for w in rewards),
            final=tuple(w.reward_id for w in rewards if w.reward_id in record.core.final),
            reached=tuple((w.reward_id, status.value, *record.reached[(w.reward_id, status.value)])
                          for w in rewards for status in RewardStatus
                          if (w.reward_id, status.value) in record.reached),
            withheld=tuple((reason.value, record.withheld[(ident, reason.value)]) for reason in ReasonCode
                           if (ident, reason.value) in record.withheld))
    if kind == "c":
        cell = record.counted.get(ident)
        return None if cell is None else Counted(record.seq, cell, record.floor)
    if kind == "a":
        if ident > record.floor:
            return None
        cells = stages.day_cells(record, ident)
        return Folded(record.seq, tuple(sorted((*cell[:3], record.activity[cell]) for cell in cells)))
    return Member(record.seq) if ident in _members(record, kind) else None


# -- parts into a record --------------------------------------------------------------------------------------


def _apply(record: ReferrerRecord, part_id: str, value: Part | None) -> None:
    """Put one part into the record (in place); None removes it."""
    kind, ident = part_id[0], part_id[2:]
    core = record.core
    if kind == "r":
        if ident in core.settled:
            raise ValueError(f"referral {ident} is settled: unsettle it before its part changes")
        old = core.referrals.pop(ident, None)
        record.versions.pop(f"referral:{ident}", None)
        if old is not None:
            for w in rewards_of(core, ident):
                core.rewards.pop(w.reward_id, None)
                core.changes.pop(w.reward_id, None)
                core.final.discard(w.reward_id)
                for status in RewardStatus:
                    record.reached.pop((w.reward_id, status.value), None)
            for reason in ReasonCode:
                record.withheld.pop((ident, reason.value), None)
            core.forget_bonuses(ident)
        changed_at = core.__dict__.setdefault("_changed_at", {})  # the seq each referral last changed at
        changed_at.pop(ident, None)
        if value is None:
            return
        assert isinstance(value, ReferralPart)
        changed_at[ident] = value.seq
        core.referrals[ident] = value.referral
        if value.version is not None:
            record.versions[f"referral:{ident}"] = value.version
        for w, n in zip(value.rewards, value.changes, strict=True):
            core.rewards[w.reward_id] = w
            core.note_bonus(w)
            if n:
                core.changes[w.reward_id] = n
        ids = {w.reward_id: w.reward_id for w in value.rewards}  # the rewards' own id strings, not copies of them
        core.final.update(ids.get(reward_id, reward_id) for reward_id in value.final)
        for reward_id, status, role, campaign, points in value.reached:
            record.reached[(ids.get(reward_id, reward_id), status)] = interned((role, campaign, points))
        for reason, campaign in value.withheld:
            record.withheld[(ident, reason)] = campaign
    elif kind == "c":
        stages.forget_count_index(record)
        old_cell = record.counted.pop(ident, None)
        if old_cell is not None:
            record.activity[old_cell] -= 1
            if not record.activity[old_cell]:
                del record.activity[old_cell]
        if value is not None:
            assert isinstance(value, Counted)
            record.counted[ident] = value.cell
            record.activity[value.cell] = record.activity.get(value.cell, 0) + 1
    else:
        members = _members(record, kind)
        if value is None:
            members.discard(ident)
        else:
            members.add(ident)


def put(record: ReferrerRecord, part_id: str, value: Part) -> ReferrerRecord:
    """One part of an adopted record taken in (``streams.erasure.AdoptPart``), in place; the record, its floor at
    least the part's (a folded day, a counted event's), as ``Assembler`` reads it."""
    if part_id.startswith("a:"):
        assert isinstance(value, Folded)
        day = part_id[2:]
        stages.forget_count_index(record)
        for stage, campaign, channel, n in value.cells:
            record.activity[(stage, campaign, channel, day)] = n
        floor = day
    else:
        _apply(record, part_id, value)
        floor = value.floor if isinstance(value, Counted) else ""
    return replace(record, floor=max(record.floor, floor))  # its cells: when the ``Adopt`` completes it


# -- parts kept on local disk, not as objects (``streams.part_store``) ------------------------------------------


def fold(record: ReferrerRecord, referrer_id: str, store: PartStore, acked: int = 0) -> int:
    """What the record need not hold as objects into ``store``, in place (each grows with the referrer's history
    and is rarely read again; ``recall`` puts back what a step reads):

    - its visitors and the customers that name it (only an erasure, or the same one again, reads them);
    - the ids of the shares and clicks it counted (only the same event again, or the floor passing their day,
      reads them; their counts stay in ``activity``), with an entry per day and id (``d:<day>\x1f<id>``, the
      store's own, not a changelog part) so that the floor's move finds its days' ids without a scan;
    - its referrals decided for good, or at rest without rewards, whose last change is acknowledged
      (``settle``, ``referrer_rewards.settleable``), and their ``Settled`` entries (what the decisions about the
      others read of them), kept in ``store`` by what a step looks them up by (``recall_reads``); of them the
      record keeps a count per campaign (the milestones'). ``acked``: a seq up to which the record's outputs are
      known to be on Kafka, if more than it says.

    Returns how many referrals it settled."""
    for members, part_of in ((record.visitors, stages.visitor_part), (record.named, stages.named_part)):
        if members:
            for member in members:
                store.put(referrer_id, part_of(member), Member(record.seq))
            members.clear()
    if record.counted:
        for event_id, cell in stages.take_counted(record):
            store.put(referrer_id, stages.counted_part(event_id), Counted(record.seq, cell, record.floor))
            store.put(referrer_id, _by_day(cell[3], event_id), Member(record.seq))
    acked = max(acked, record.acked)
    settled = 0
    if acked:  # else nothing acknowledged yet (a record being adopted part by part has seq 0 until it is whole)
        changed_at = _changed_at(record)
        for rid in settling(record):
            if changed_at.get(rid, record.seq) <= acked:  # not known (read back from disk): at most the record's seq
                settle(record, referrer_id, rid, store)
                settled += 1
    forget_settled(record)
    return settled


def settling(record: ReferrerRecord) -> list[str]:
    """The referrals of the record that may settle and are not settled yet (``referrer_rewards.settleable``;
    derived, kept with the state while it lives: a tick adds those whose hold it ended, a step those it changed,
    ``stages.may_settle``; after a load, every referral is looked at once). One that may not leaves the list:
    only a tick or a step that changes it makes it settleable, and either adds it again."""
    core = record.core
    waiting = core.__dict__.get("_settling")
    if waiting is None:
        waiting = core.__dict__["_settling"] = set(core.referrals)
    waiting.difference_update([rid for rid in waiting if not referrer_rewards.settleable(core, rid)])
    return sorted(waiting)


def _changed_at(record: ReferrerRecord) -> dict[str, int]:
    return record.core.__dict__.setdefault("_changed_at", {})


def settle(record: ReferrerRecord, referrer_id: str, referral_id: str, store: PartStore) -> None:
    """One referral decided for good out of the record's objects, in place: its part into ``store`` and the
    record's totals, the ``Settled`` entry kept (``referrer_rewards.settle``). The changelog already holds the
    part (its last change is acknowledged), so nothing is written to it."""
    core = record.core
    value = part(record, referral_part(referral_id))
    assert isinstance(value, ReferralPart)
    store.put(referrer_id, referral_part(referral_id), value)
    contribution = counters.referral_contribution(record, referrer_id, referral_id)
    recall_cells(record, referrer_id, store, _days(contribution))
    _add_sums(record, contribution, 1)
    referrer_rewards.settle(core, referral_id, record.versions.pop(f"referral:{referral_id}", None))
    for entry_id in _entry_ids(referral_id, core.settled[referral_id]):
        store.put(referrer_id, entry_id, Member(record.seq))
    for w in value.rewards:
        for status in RewardStatus:
            record.reached.pop((w.reward_id, status.value), None)
    for reason in ReasonCode:
        record.withheld.pop((referral_id, reason.value), None)
    _changed_at(record).pop(referral_id, None)
    waiting = core.__dict__.get("_settling")
    if waiting is not None:
        waiting.discard(referral_id)
    totals = core.__dict__.get("_totals")
    if totals is not None:
        totals.settle(referral_id, contribution)


def unsettle(record: ReferrerRecord, referrer_id: str, referral_id: str, store: PartStore) -> None:
    """A settled referral back into the record's objects, as it was (before a fact about it, or a step that
    reads every part), in place."""
    value = store.get(referrer_id, referral_part(referral_id))
    assert isinstance(value, ReferralPart), f"the part of settled referral {referral_id} is not in the store"
    entry = settled_entry(value)
    store.delete(referrer_id, referral_part(referral_id))  # the store holds what is settled, nothing stale
    # its entries stay (``recall_reads`` skips an entry whose part is not in the store, and settling it again
    # writes them again): deleted, each would leave a tombstone that every later range read over it steps
    # through until RocksDB compacts it (measured: 0.5 ms a read after 10,000 referrals settled and back)
    referrer_rewards.recall(record.core, referral_id, entry)  # its places in the indexes: the live referral's
    referrer_rewards.unsettle(record.core, referral_id)
    _apply(record, referral_part(referral_id), value)
    stages.may_settle(record, [referral_id])  # settled again by the next ``fold`` unless a step changes it
    contribution = counters.referral_contribution(record, referrer_id, referral_id)  # what ``settle`` added
    recall_cells(record, referrer_id, store, _days(contribution))
    _add_sums(record, contribution, -1)
    totals = record.core.__dict__.get("_totals")
    if totals is not None:
        totals.unsettle(referral_id, contribution)


def _days(contribution: counters.Contribution) -> set[str]:
    """The days of the funnel cells a contribution names."""
    return {key[1][3] for key, _n in contribution if key[0] == "cell"}


def _add_sums(record: ReferrerRecord, contribution: counters.Contribution, sign: int) -> None:
    """A settled referral's contribution into (1) or out of (-1) the record's ``settled_sums``."""
    sums = record.settled_sums
    for key, n in contribution:
        entry = sums.get(key)
        if entry is None:
            entry = sums[key] = [0, 0]
        entry[0] += sign * n
        entry[1] += sign
        if not entry[1]:
            del sums[key]


def unfold(record: ReferrerRecord, referrer_id: str, store: PartStore) -> None:
    """The record as a whole again, in place: its visitors, named customers, counted ids, settled referrals and
    archived days of activity back from ``store`` (before a step that reads or rewrites every part: an erasure,
    an adoption, a repair; a complete snapshot reads the settled referrals from ``store`` itself)."""
    for kind in ("v", "n"):
        for pid in store.ids(referrer_id, kind):
            store.delete(referrer_id, pid)
            _members(record, kind).add(pid[2:])
    recall_days(record, referrer_id, store)  # first: the settled referrals taken back find their days in the record
    for pid in store.ids(referrer_id, "c"):
        recall(record, referrer_id, pid[2:], store)
    for pid in store.ids(referrer_id, "r"):
        unsettle(record, referrer_id, pid[2:], store)


def _members(record: ReferrerRecord, kind: str) -> set[str]:
    """The record's visitors (``v``) or the customers that name it (``n``)."""
    return record.visitors if kind == "v" else record.named


def _by_day(day: str, event_id: str) -> str:
    """The store's entry of a counted id under its day (``fold``): ``d:<day>\x1f<event id>``."""
    return f"d:{day}{SEP}{event_id}"


def recall(record: ReferrerRecord, referrer_id: str, event_id: str, store: PartStore) -> None:
    """A counted id ``store`` holds back into the record, in place (the same share or click again: a duplicate)."""
    if event_id not in record.counted:
        _take_back(record, referrer_id, event_id, store.get(referrer_id, stages.counted_part(event_id)), store)


def _take_back(record: ReferrerRecord, referrer_id: str, event_id: str, value: Part | None, store: PartStore
               ) -> None:
    """A counted id and its ``value`` in ``store`` (None: not there) out of the store, into the record."""
    if value is None:
        return
    assert isinstance(value, Counted)
    store.delete(referrer_id, stages.counted_part(event_id))
    store.delete(referrer_id, _by_day(value.cell[3], event_id))
    stages.keep_counted(record, event_id, value.cell)


def recall_through(record: ReferrerRecord, referrer_id: str, floor: str, store: PartStore) -> None:
    """Every counted id ``store`` holds of a day up to ``floor`` back into the record, in place (before a step
    that moves the floor there: it tombstones them)."""
    for entry in store.ids(referrer_id, "d", through=f"{floor}\x20"):  # "<day>\x1f<id>" <= "<floor> ": day <= floor
        event_id = entry[2:].partition(SEP)[2]
        value = None if event_id in record.counted else store.get(referrer_id, stages.counted_part(event_id))
        if value is None:
            store.delete(referrer_id, entry)  # stale: its id is back already, or went
        else:
            _take_back(record, referrer_id, event_id, value, store)


# -- the days before the last few, in the store (``archive_before``) ------------------------------------------


def day_entry(day: str) -> str:
    """The store's entry of a day out of the record (``archive_before``): ``w:<day>``, the store's own, not a
    changelog part (the changelog keeps the day's ``c:`` parts, or its ``a:`` part once folded, and the settled
    referrals' ``r:`` parts)."""
    return f"w:{day}"


def keeps_days(record: ReferrerRecord) -> bool:
    """Whether the store may hold days of the record (``archive_before``). False when it holds none: a day goes to
    the store with shares or clicks (``archived`` keeps their totals) or with settled referrals' sums (and while
    any referral is settled, ``settled_sums`` keeps its campaign's entry: ``counters.referral_contribution``)."""
    return bool(record.archived or record.settled_sums)


def _settled_cells(record: ReferrerRecord, days: set[str]) -> list[tuple]:
    """The keys of ``settled_sums`` that are funnel cells of ``days``."""
    return [key for key in record.settled_sums if key[0] == "cell" and key[1][3] in days]


def archive_before(record: ReferrerRecord, referrer_id: str, store: PartStore, cutoff: str) -> None:
    """The days before ``cutoff`` into ``store``, one entry per day, in place: the record's activity of each and
    what its funnel cells hold of the settled referrals' sums (the stage runner calls it once a batch's snapshot
    has read the record). What it costs: a scan of ``activity`` and ``settled_sums`` when ``cutoff`` moved since
    the last call (a day, for a busy referrer), else only the days brought back since (``recall_day``);
    ``archived`` keeps the shares' and clicks' totals per (stage, channel), for the referrer's own fields (the
    settled referrals' are entries of ``settled_sums`` of their own: ``("signups",)``, ...)."""
    kept = record.core.__dict__
    recalled = kept.pop("_recalled", None)
    if kept.get("_archived_before") == cutoff:  # derived: a record read back from disk scans once
        days = {day for day in recalled or () if day < cutoff}
    else:
        days = {cell[3] for cell in record.activity if cell[3] < cutoff}
        days.update(key[1][3] for key in record.settled_sums if key[0] == "cell" and key[1][3] < cutoff)
        kept["_archived_before"] = cutoff
    if not days:
        return
    by_day: dict[str, list[tuple[str, str, str, int]]] = {}
    for cell in [c for c in record.activity if c[3] in days]:
        n = record.activity.pop(cell)
        by_day.setdefault(cell[3], []).append((cell[0], cell[1], cell[2], n))
        key = interned((cell[0], cell[2]))
        record.archived[key] = record.archived.get(key, 0) + n
    sums: dict[str, list[tuple[str, str, str, int, int]]] = {}
    for key in _settled_cells(record, days):
        (stage, campaign, channel, day), (n, named) = key[1], record.settled_sums.pop(key)
        sums.setdefault(day, []).append((stage, campaign, channel, n, named))
    for day in by_day.keys() | sums.keys():  # none of them in ``store``: a day is in the record or there
        store.put(referrer_id, day_entry(day),
                  Folded(record.seq, tuple(sorted(by_day.get(day, ()))), tuple(sorted(sums.get(day, ())))))


def recall_day(record: ReferrerRecord, referrer_id: str, day: str, store: PartStore) -> None:
    """A day ``store`` holds back into the record, in place (before a step or a snapshot that reads or changes its
    counts or its settled referrals' sums); ``archive_before`` takes it out again after the batch's snapshot."""
    record.core.__dict__.setdefault("_recalled", set()).add(day)
    value = store.get(referrer_id, day_entry(day))
    if not isinstance(value, Folded):
        return
    store.delete(referrer_id, day_entry(day))
    for stage, campaign, channel, n in value.cells:
        cell = interned((stage, campaign, channel, day))
        record.activity[cell] = record.activity.get(cell, 0) + n
        key = interned((stage, channel))
        left = record.archived.get(key, 0) - n
        if left:
            record.archived[key] = left
        else:
            record.archived.pop(key, None)
    for stage, campaign, channel, n, named in value.settled:  # not in the record: a day is in one place
        record.settled_sums[interned(("cell", interned((stage, campaign, channel, day))))] = [n, named]


def recall_days(record: ReferrerRecord, referrer_id: str, store: PartStore, start: str = "",
                through: str | None = None) -> None:
    """Every day ``store`` holds (from ``start``, through ``through``) back into the record."""
    if keeps_days(record):
        for entry in store.ids(referrer_id, "w", through=through, start=start):
            recall_day(record, referrer_id, entry[2:], store)


def recall_cells(record: ReferrerRecord, referrer_id: str, store: PartStore, days: Iterable[str]) -> None:
    """The days of funnel cells a step or a snapshot reads the settled referrals' sums of, back from ``store`` if
    it holds them (only days before the record's last cutoff can be there)."""
    if keeps_days(record):
        before = record.core.__dict__.get("_archived_before", "\uffff")  # unknown (read back from disk): any
        for day in days:
            if day < before and day not in record.core.__dict__.get("_recalled", ()):
                recall_day(record, referrer_id, day, store)


def knows_member(record: ReferrerRecord, referrer_id: str, part_id: str, store: PartStore) -> None:
    """A visitor (``v:``) or a named customer (``n:``) ``store`` holds back into the record, in place, so that the
    same one again writes no part."""
    members = _members(record, part_id[0])
    if part_id[2:] not in members and store.get(referrer_id, part_id) is not None:
        store.delete(referrer_id, part_id)
        members.add(part_id[2:])


def recall_for(record: ReferrerRecord, referrer_id: str, fact: object, store: PartStore, horizon_days: int,
               campaigns: CampaignBook) -> None:
    """Back into the record, in place, what ``store`` holds of it that the step of ``fact`` reads (``fold`` takes
    it out again after the step): every part before an erasure fact; the part an adopted one replaces; a share's
    or click's id if counted before, its day's counts if out of the record (``archive_before``), and the ids and
    counts of the days it moves the floor past; the clicking visitor; the
    named customer; a settled referral before a newer version of it, the entry of one before an older version
    (its version tells); before a new referral or profile fact, the settled entries its step reads
    (``referrer_rewards.settled_reads``)."""
    if isinstance(fact, Erase | Adopt | Continue | Forget):
        unfold(record, referrer_id, store)  # the step reads or rewrites every part
        return
    if isinstance(fact, AdoptPart):  # taken in again (a re-sent adoption): what it replaces must be in the record
        if fact.part_id.startswith("c:"):
            recall(record, referrer_id, fact.part_id[2:], store)
            new = fact.value.cell if isinstance(fact.value, Counted) else None
            for cell in (record.counted.get(fact.part_id[2:]), new):  # the count it takes back, the one it adds
                if cell is not None and keeps_days(record):
                    recall_day(record, referrer_id, cell[3], store)
        elif fact.part_id.startswith("a:") and keeps_days(record):
            recall_day(record, referrer_id, fact.part_id[2:], store)
        elif fact.part_id[0] in "vn":
            knows_member(record, referrer_id, fact.part_id, store)
        return
    counting = stages.counting(fact)
    if counting is not None:
        event_id, day = counting
        recall(record, referrer_id, event_id, store)
        if event_id not in record.counted and day > record.floor:
            if keeps_days(record) and day < record.core.__dict__.get("_archived_before", "\uffff"):
                recall_day(record, referrer_id, day, store)  # a late share or click: its day's counts come back
            floor = stages.floor_of(day, horizon_days)
            if floor > record.floor:
                recall_through(record, referrer_id, floor, store)
                recall_days(record, referrer_id, store, start=f"{record.floor}\x20", through=floor)  # folded now
    if isinstance(fact, referrer_rewards.Tick):
        return  # a tick reads no settled referral (``referrer_rewards.settled_reads``)
    if not isinstance(fact, stages.Versioned):
        return
    inner = fact.fact
    if isinstance(inner, stages.ClickCounted) and inner.visitor_id:
        knows_member(record, referrer_id, stages.visitor_part(inner.visitor_id), store)
    elif isinstance(inner, stages.Named):
        knows_member(record, referrer_id, stages.named_part(inner.customer_id), store)
    elif isinstance(inner, Referral | Profile) and record.settled_sums:  # empty: none settled (each adds its campaign)
        if isinstance(inner, Referral) and inner.referral_id not in record.core.referrals:
            value = store.get(referrer_id, referral_part(inner.referral_id))
            if isinstance(value, ReferralPart):  # settled: its version says whether the fact is new
                if fact.version <= (-1 if value.version is None else value.version):
                    # a duplicate, not stepped: its entry, which ``stages.version_of`` reads
                    referrer_rewards.recall(record.core, inner.referral_id, settled_entry(value))
                    return
                unsettle(record, referrer_id, inner.referral_id, store)  # it changes again
        if fact.version > stages.version_of(record, fact.fact_id):  # else a duplicate: not stepped
            recall_reads(record, referrer_id, referrer_rewards.settled_reads(record.core, inner, campaigns), store)


def recall_reads(record: ReferrerRecord, referrer_id: str, reads: referrer_rewards.Reads, store: PartStore
                 ) -> None:
    """The settled entries a step reads (``referrer_rewards.settled_reads``) back into the record's state from the
    entries ``settle`` kept of them in ``store``, in place (``fold`` takes them out again after the step)."""
    found: set[str] = set()
    for code, (first, last) in reads.spans.items():
        for entry_id in store.ids(referrer_id, "x", through=f"{code}{SEP}{_stamp(last)}\x20",
                                  start=f"{code}{SEP}{_stamp(first)}"):
            found.add(entry_id.rpartition(SEP)[2])
    for kind, keys in (("y", reads.groups), ("z", reads.months)):  # (campaign, device), (campaign, month)
        for campaign, name in keys:
            prefix = f"{campaign}{SEP}{name}{SEP}"
            found.update(e[len(prefix) + 2:] for e in store.ids(referrer_id, kind, through=f"{prefix}\U0010ffff",
                                                                start=prefix))
    core = record.core
    for rid in sorted(found):
        if rid not in core.settled and rid not in core.referrals:
            value = store.get(referrer_id, referral_part(rid))
            if isinstance(value, ReferralPart):  # else an entry left by a referral that came back (``unsettle``)
                referrer_rewards.recall(core, rid, settled_entry(value))


def settled_entry(value: ReferralPart) -> referrer_rewards.Settled:
    """The entry a settled referral's part gives its referrer's decisions (``referrer_rewards.settled_entry``)."""
    rid = value.referral.referral_id
    own = next((w for w in value.rewards if w.reward_id == f"{rid}:referrer"), None)
    return referrer_rewards.settled_entry(value.referral, own, value.version)


def _stamp(at: datetime) -> str:
    """A time as a key sorts it: UTC, fixed width, to the microsecond."""
    return at.astimezone(UTC).strftime("%Y%m%d%H%M%S%f")


def _entry_ids(referral_id: str, entry: referrer_rewards.Settled) -> list[str]:
    """The store's own entries of a settled referral (not changelog parts), by what a step looks it up by
    (``recall_reads``): ``x:<code>\x1f<attributed at>\x1f<id>`` in its code's velocity windows and
    ``y:<campaign>\x1f<device>\x1f<id>`` in its device group (a live one), ``z:<campaign>\x1f<month>\x1f<id>`` in
    its month's order (one whose referrer reward was confirmed: the others count nothing against the cap).
    They stay when the referral comes back (``unsettle``); one whose referral settles again under other keys
    (its code, time, device or month changed, or it is no longer live) is left behind, skipped by every lookup,
    until the referrer's parts are dropped: at most one set per change of those, not per step."""
    out = []
    if entry.live:
        out.append(f"x:{entry.code}{SEP}{_stamp(entry.attributed_at)}{SEP}{referral_id}")
        if entry.referee_device_id:
            out.append(f"y:{entry.campaign_id}{SEP}{entry.referee_device_id}{SEP}{referral_id}")
    if entry.confirmed and entry.in_month and entry.qualified_at is not None:
        month = referrer_rewards.cap_month(entry.campaign_id, entry.qualified_at)[1]
        out.append(f"z:{entry.campaign_id}{SEP}{month}{SEP}{referral_id}")
    return out


def forget_settled(record: ReferrerRecord) -> None:
    """The settled entries a step read out of the record's state again, in place (``store`` keeps them)."""
    core = record.core
    if core.settled:
        for rid in list(core.settled):
            referrer_rewards.forget_settled(core, rid)
        core.settled = {}  # an emptied dict keeps its capacity


def settled_referrals(record: ReferrerRecord, referrer_id: str, store: PartStore
                      ) -> Iterator[tuple[Referral, tuple[Reward, ...]]]:
    """The record's settled referrals with their rewards, read back from ``store`` (a complete snapshot)."""
    for pid in store.ids(referrer_id, "r"):
        value = store.get(referrer_id, pid)
        assert isinstance(value, ReferralPart), f"the part of settled referral {pid[2:]} is not in the store"
        yield value.referral, value.rewards


class Assembler:
    """Builds records from changelog entries in log order (a table's recovery, ``referrals rebuild``).

    ``data`` receives the records (referrer id -> record). Parts that come before any header of their
    referrer wait in ``pending``; ``finish`` drops those that never got one (the start of a write a crash
    cut short), puts in the folded days, rebuilds each record's funnel cells, and tells which records are
    torn.

    A folded day (``a:<day>``) replaces whatever the record counted on that day. The step that moves the floor
    sends its folded days in order, then the tombstones of their ``c:`` parts and the ``c:`` part of the event
    that moved it (carrying the new floor), and the batch ends with the header; cut short, it leaves folded days
    up to some day, perhaps that ``c:`` part, and the header's older floor. The floor read is the latest of
    the header's, the last folded day's and any ``c:`` part's: every day up to it is folded (its ``c:`` parts
    left out, their tombstones may be missing), the days after it still have their ``c:`` parts, and the
    events whose writes the crash kept back come again: an event of a folded day is not counted twice, one of
    a later day counts once."""

    def __init__(self, data: MutableMapping[str, ReferrerRecord], parts: PartStore | None = None) -> None:
        self.data = data
        self.parts = parts  # where the records' visitors go (``fold``), None: kept in the records
        self.pending: dict[str, dict[str, Part | None]] = {}
        self.folded: dict[str, dict[str, Folded | None]] = {}  # referrer -> day -> its folded part (None: deleted)
        self.floors: dict[str, str] = {}  # referrer -> the latest floor a ``c:`` part carries
        self.newest: dict[str, int] = {}  # referrer -> the newest seq of a part seen
        self.touched: set[str] = set()
        self.recalled: set[str] = set()  # referrers whose days ``apply`` took back from ``parts`` (until ``finish``)
        self.settled = 0  # referrals ``finish`` settled so far (``fold``)
        # referrer -> referral -> the seq of its part: when each last changed, which ``fold`` compares with the
        # header's ``acked`` (a record read back from disk during the recovery has lost its own note of it)
        self.changed: dict[str, dict[str, int]] = {}

    def apply(self, key: bytes, value: Any) -> str:
        """One changelog entry (``value`` None: a tombstone); the referrer it belongs to."""
        referrer_id, part_id = split_key(key)
        self.touched.add(referrer_id)
        record = self.data.get(referrer_id)
        if record is not None and self.parts is not None and referrer_id not in self.recalled:
            recall_days(record, referrer_id, self.parts)  # a recovery over a record whose older days a stage archived
            self.recalled.add(referrer_id)  # nothing goes back to the store before ``finish``
        if part_id is None:
            if value is None:
                if self.parts is not None:
                    self.parts.drop(referrer_id)
                self.data.pop(referrer_id, None)
                self.pending.pop(referrer_id, None)
                self.folded.pop(referrer_id, None)
                self.floors.pop(referrer_id, None)
                self.newest.pop(referrer_id, None)
                self.changed.pop(referrer_id, None)
                return referrer_id
            if record is None:
                if self.parts is not None:
                    self.parts.drop(referrer_id)  # an earlier owner's, of a partition this process had before
                record = ReferrerRecord(core=ReferrerState())
                for pid, pvalue in self.pending.pop(referrer_id, {}).items():
                    _apply(record, pid, pvalue)
            record.core.profile = value.core.profile
            record.versions.update(value.versions)
            self.data[referrer_id] = replace(record, seq=value.seq, ticked=value.ticked, erasure=value.erasure,
                                             acked=value.acked, floor=max(record.floor, value.floor))
            return referrer_id
        if value is not None:
            self.newest[referrer_id] = max(self.newest.get(referrer_id, -1), value.seq)
            if part_id.startswith("r:") and self.parts is not None:
                self.changed.setdefault(referrer_id, {})[part_id[2:]] = value.seq
        if part_id.startswith("a:"):
            self.folded.setdefault(referrer_id, {})[part_id[2:]] = value
            return referrer_id
        if isinstance(value, Counted) and value.floor > self.floors.get(referrer_id, ""):
            self.floors[referrer_id] = value.floor
        if record is None:
            self.pending.setdefault(referrer_id, {})[part_id] = value
        else:
            if part_id.startswith("r:") and self.parts is not None and record.settled_sums \
                    and self.parts.get(referrer_id, part_id) is not None:  # empty sums: nothing settled to look up
                unsettle(record, referrer_id, part_id[2:], self.parts)  # a recovery over a record it built before
            elif part_id.startswith("c:") and self.parts is not None:
                recall(record, referrer_id, part_id[2:], self.parts)  # its count is taken back if it changes
            _apply(record, part_id, value)
            if value is None and self.parts is not None and part_id[0] in "vnr":
                self.parts.delete(referrer_id, part_id)  # folded out of the record before
        return referrer_id

    def finish(self) -> dict[str, int]:
        """Records complete: their folded days put in; the torn ones (a part newer than the
        header) with the newest seq of a part."""
        self.pending.clear()
        torn: dict[str, int] = {}
        for referrer_id in self.touched:
            record = self.data.get(referrer_id)
            if record is None:
                continue
            days, floor = self.folded.pop(referrer_id, {}), self.floors.pop(referrer_id, "")
            if self.parts is not None:  # ids an earlier ``finish`` folded into the store, of days now folded
                recall_through(record, referrer_id, self._floor(record, days, floor), self.parts)
            record = self._fold(record, days, floor)
            self.data[referrer_id] = record
            if self.newest.get(referrer_id, -1) > record.seq:
                torn[referrer_id] = self.newest[referrer_id]
            if self.parts is not None:
                _changed_at(record).update(self.changed.pop(referrer_id, {}))
                self.settled += fold(record, referrer_id, self.parts)
        self.touched.clear()
        self.recalled.clear()
        self.changed.clear()
        self.newest.clear()
        self.folded.clear()
        self.floors.clear()
        return torn

    @staticmethod
    def _floor(record: ReferrerRecord, days: dict[str, Folded | None], counted_floor: str) -> str:
        return max([record.floor, counted_floor, *(day for day, f in days.items() if f is not None)])

    @staticmethod
    def _fold(record: ReferrerRecord, days: dict[str, Folded | None], counted_floor: str) -> ReferrerRecord:
        floor = Assembler._floor(record, days, counted_floor)
        stale = [eid for eid, cell in record.counted.items() if cell[3] <= floor]
        if not days and not stale:
            return record if floor == record.floor else replace(record, floor=floor)
        stages.forget_count_index(record)
        for eid in stale:  # a folded day's ids whose tombstones a crash kept from the log
            _apply(record, stages.counted_part(eid), None)
        for cell in [c for c in record.activity if c[3] in days]:
            del record.activity[cell]
        for day, folded in days.items():
            for stage, campaign, channel, n in folded.cells if folded is not None else ():
                record.activity[(stage, campaign, channel, day)] = n
        return replace(record, floor=floor)


def entries(record: ReferrerRecord | None, referrer_id: str, changed: Iterable[str] | None,
            before: ReferrerRecord | None = None, *, header_first: bool = False) -> list[tuple[bytes, Any]]:
    """The changelog entries a change writes, in the order to send them: the parts ``changed`` (None: every part,
    with tombstones for those of ``before`` the record no longer has), then the header; a deleted record (None)
    deletes every part of ``before`` and then its header.

    ``header_first`` (a rename: an erased customer's id replaced in the record's keys), and an erasure marker,
    send the header first: cut short, such a write leaves the new header with some parts under old names, which
    the replayed erasure finds and renames again (parts first, a part newer than the header would instead call
    for a repair, which would decide with the same referral under two names)."""
    if record is None:
        gone = stages.part_ids(before) if before is not None else []
        return [(changelog_key(referrer_id, pid), None) for pid in gone] + [(changelog_key(referrer_id), None)]
    ids = stages.part_ids(record) if changed is None else sorted(set(changed))
    out = [(changelog_key(referrer_id, pid), part(record, pid)) for pid in ids]
    if changed is None and before is not None:
        kept = set(ids)
        out += [(changelog_key(referrer_id, pid), None) for pid in stages.part_ids(before) if pid not in kept]
    if record.erasure is not None or header_first:  # the marker: once it is on Kafka the record is being erased
        return [(changelog_key(referrer_id), header(record, referrer_id))] + out
    return out + [(changelog_key(referrer_id), header(record, referrer_id))]
