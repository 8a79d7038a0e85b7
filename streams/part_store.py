"""Parts of referrer records that a worker process keeps on local disk instead of in the records' objects.

A referrer's record is written to its changelog in parts (``streams.referrer_parts``). Some kinds of part
grow with the referrer's history and are rarely read:

- the visitors whose clicks on the referrer's links were counted (``v:<visitor id>``) and the customers whose
  records name it (``n:<customer id>``): read only when the referrer is erased (the erasure must reach every
  one of them) and when the same one comes again;
- the ids of the shares and clicks it counted (``c:<event id>``, for the dedup horizon's days): read only
  when the same event comes again (a duplicate) and when the horizon's floor passes their day (their
  tombstones); the store keeps each also under ``d:<day>\x1f<event id>`` (its own entry, not a changelog
  part), so that the floor's move reads its days' ids in key order, not every id;
- a referral decided for good (``r:<referral id>``): read only by a complete counter snapshot, an erasure,
  a repair, or a late fact about it; and the entries the decisions about the referrer's other referrals read
  of it (``referrer_rewards.Settled``, built from that part), looked up by the store's own keys: ``x:<code>
  \x1f<attributed at>\x1f<id>`` (a velocity window), ``y:<campaign>\x1f<device>\x1f<id>`` (a device group),
  ``z:<campaign>\x1f<month>\x1f<id>`` (a month's cap: confirmed ones only), read by the steps whose decisions
  reach them (``referrer_parts.recall_reads``).

- a day older than the referrer's last few (``w:<day>``: the store's own entry, not a changelog part;
  ``referrer_parts.archive_before``): the counts of its shares and clicks and what its funnel cells hold of the
  settled referrals' sums, read by a late share or click of that day, the floor passing it, a referral of that
  day settling, coming back or shown again (``referrer_parts.recall_cells``), a complete snapshot.

A process keeps those in a ``PartStore``, keyed like the changelog (``<referrer id>\x1f<part id>``), and the
record in memory holds none of them (``referrer_parts.fold``; of a settled referral, an entry the decisions
read; of a counted id, its count in the record's ``activity``); the stage runner puts back into the record
what a step reads before it (``referrer_parts.recall_for``). Each part is in one place: the store or the
record.

The store is scratch, like the records' own copy on disk (``streams.record_store``): each process starts
with an empty one, and the table's recovery fills it from the changelog (``referrer_parts.Assembler``),
which stays the truth. A process's store holds the parts of the records its tables hold; a record that is
not in the table (new, or dropped with a partition this process no longer owns) has its parts dropped
before it is first stepped, so nothing of an earlier owner's is read.

Bound: on disk, one value per part (a visitor or a customer: about 70 bytes with its key; a counted id:
about 220 bytes with its entry by day, for the horizon's days only; a referral: its changelog part, about
500 bytes, and up to three entries of about 100 bytes; a day before the last few: its few cells,
about 100 bytes and 30 more a cell of its settled referrals, one per day the referrer was active or a referral of
its settled); in memory, nothing per part beyond RocksDB's one budget
per process (``record_store.DISK_MEMORY_BYTES``).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from rocksdict import Rdict

from streams import record_codec, record_store
from streams.referrer_parts import SEP, Part, changelog_key


class PartStore:
    """Referrer id -> part id -> part, in memory (the crash model's tests; what ``DiskPartStore`` keeps on disk)."""

    def __init__(self) -> None:
        self._parts: dict[str, dict[str, Part]] = {}

    def get(self, referrer_id: str, part_id: str) -> Part | None:
        return self._parts.get(referrer_id, {}).get(part_id)

    def put(self, referrer_id: str, part_id: str, value: Part) -> None:
        self._parts.setdefault(referrer_id, {})[part_id] = value

    def delete(self, referrer_id: str, part_id: str) -> None:
        parts = self._parts.get(referrer_id)
        if parts is not None:
            parts.pop(part_id, None)
            if not parts:
                del self._parts[referrer_id]

    def ids(self, referrer_id: str, kind: str, through: str | None = None, start: str = "") -> list[str]:
        """The ids of the referrer's parts of one kind (``"v"``: ``v:<visitor id>``), sorted; with ``through``, only
        those whose id after the kind is at most that; with ``start``, only those at least that."""
        prefix = f"{kind}:"
        return sorted(pid for pid in self._parts.get(referrer_id, {})
                      if pid.startswith(prefix) and (through is None or pid[len(prefix):] <= through)
                      and pid[len(prefix):] >= start)

    def drop(self, referrer_id: str) -> None:
        """Every part of the referrer."""
        self._parts.pop(referrer_id, None)

    def close(self) -> None:
        self._parts.clear()


class DiskPartStore(PartStore):
    """The same on local disk (RocksDB, through rocksdict, within the process's one memory budget)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        options, writes = record_store.rocks_options()
        self._disk = Rdict(str(path), options)
        self._disk.set_write_options(writes)

    def get(self, referrer_id: str, part_id: str) -> Part | None:
        data = self._disk.get(changelog_key(referrer_id, part_id))
        return None if data is None else record_codec.decode(data)

    def put(self, referrer_id: str, part_id: str, value: Part) -> None:
        self._disk[changelog_key(referrer_id, part_id)] = record_codec.encode(value)

    def delete(self, referrer_id: str, part_id: str) -> None:
        key = changelog_key(referrer_id, part_id)
        if self._disk.get(key) is not None:
            del self._disk[key]

    def _keys(self, prefix: bytes, first: bytes | None = None) -> Iterator[bytes]:
        for key in self._disk.keys(from_key=prefix if first is None else first):
            if not key.startswith(prefix):
                return
            yield key

    def ids(self, referrer_id: str, kind: str, through: str | None = None, start: str = "") -> list[str]:
        cut = len(referrer_id.encode()) + 1
        out = []
        prefix = changelog_key(referrer_id, f"{kind}:")
        for key in self._keys(prefix, prefix + start.encode()):  # in key order: stops at the first beyond
            part_id = key[cut:].decode()
            if through is not None and part_id[len(kind) + 1:] > through:
                break
            out.append(part_id)
        return out

    def drop(self, referrer_id: str) -> None:
        # key by key, not ``delete_range``: a range tombstone per new referrer would slow every later read
        for key in list(self._keys(f"{referrer_id}{SEP}".encode())):
            del self._disk[key]

    def close(self) -> None:
        """Closes and removes the directory; the store is unusable after."""
        with contextlib.suppress(Exception):
            self._disk.close()
        shutil.rmtree(self.path, ignore_errors=True)
