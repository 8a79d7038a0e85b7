"""Where a worker process keeps its tables' records: the most recently used as objects, the rest encoded on
local disk (RocksDB, through rocksdict), so that the process's memory is bounded by the number of records it
keeps as objects, not by how many keys the tables hold (``streams.records_on_disk``, ``streams.records_cached``).

The disk is scratch, like the memory it stands in for: the tables' changelogs stay the truth. Every process
starts with an empty directory of its own and its tables recover from their changelogs, as with Faust's
memory store; a directory left by a process that died is removed by the next worker that starts beside it.

``SpilledRecords`` is a mapping from a record's key (bytes) to the record. A record read or written becomes
the newest of the ``cached`` objects; the oldest beyond them is encoded (``streams.record_codec``) and written
to disk. Every record leaving the cache is written back, read-only or not: the stages change the collections of
a record in place (``streams.stages``, ``streams.referrer_parts``) right after reading it. What a record keeps
only while it is an object (the derived indexes the stages cache on it) is rebuilt from its fields when it is
read back, as after a restart. ``cached=0`` writes through, for values never changed in place (the partition
index).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import psutil
from rocksdict import BlockBasedIndexType, BlockBasedOptions, Cache, Options, Rdict, WriteBufferManager, WriteOptions

from streams import record_codec

DISK_MEMORY_BYTES = 48 * 2**20  # RocksDB's memory in one process, all tables together: the block cache, which
# the write buffers are charged to, and the index and filter blocks (kept in it)
WRITE_BUFFERS_BYTES = 16 * 2**20  # of which the memtables (writes not yet flushed to a file) take at most this
WRITE_BUFFER_BYTES = 4 * 2**20  # one table's memtable


@functools.cache
def _memory() -> tuple[Cache, WriteBufferManager]:
    """The process's one budget for RocksDB's memory, shared by every table (a cache and two write buffers per
    database, six databases, could hold up to 192 MiB)."""
    cache = Cache(DISK_MEMORY_BYTES)
    return cache, WriteBufferManager.new_write_buffer_manager_with_cache(WRITE_BUFFERS_BYTES, False, cache)


def rocks_options() -> tuple[Options, WriteOptions]:
    """A database's options in this process: its share of the one memory budget, no write-ahead log (scratch)."""
    cache, buffers = _memory()
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(2)
    options.set_write_buffer_manager(buffers)
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    table.set_cache_index_and_filter_blocks(True)  # charged to the budget too: they grow with the keys on disk
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    table.set_bloom_filter(10, False)  # a key not on disk (a new customer, visitor) costs no file read
    # ... in blocks of their own size (``metadata_block_size``), not one index and one filter per file: a large
    # file's whole filter (1.5 MB at a million keys) does not fit in one shard of the cache (1/64 of it), so it
    # was read from the file again for every lookup (measured: 80 µs a missing key at 1.2 million, 6.5 so)
    table.set_index_type(BlockBasedIndexType.two_level_index_search())
    table.set_partition_filters(True)
    table.set_pin_top_level_index_and_filter(True)
    options.set_block_based_table_factory(table)
    writes = WriteOptions()
    writes.disable_wal = True  # scratch: a crash loses the directory anyway
    return options, writes


class SpilledMap(MutableMapping[bytes, Any]):
    """bytes -> value: the ``cached`` most recently used values as objects, every other one encoded on disk."""

    def __init__(self, path: Path, cached: int, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any],
                 loaded: Callable[[], None] = lambda: None):
        if cached < 0:
            raise ValueError(f"cached must be >= 0, not {cached}")
        self.path = path
        self.cached = cached
        self._encode = encode
        self._decode = decode
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        options, writes = rocks_options()
        self._disk = Rdict(str(path), options)
        self._disk.set_write_options(writes)
        self._hot: OrderedDict[bytes, Any] = OrderedDict()
        self._missed: bytes | None = None  # the last key read and found nowhere: a write of it needs no look on disk
        self.loads = 0  # values read back from disk (the cache's misses)
        self._loaded = loaded  # hears of each

    # -- the cache -------------------------------------------------------------------------------------------

    def _admit(self, key: bytes, value: Any) -> None:
        hot = self._hot
        hot[key] = value
        hot.move_to_end(key)
        while len(hot) > self.cached:
            old_key, old_value = hot.popitem(last=False)
            self._disk[old_key] = self._encode(old_value)

    # -- the mapping -----------------------------------------------------------------------------------------

    def __getitem__(self, key: bytes) -> Any:
        hot = self._hot
        if key in hot:
            hot.move_to_end(key)
            return hot[key]
        data = self._disk.get(key)
        if data is None:
            self._missed = key
            raise KeyError(key)
        self.loads += 1
        self._loaded()
        value = self._decode(data)
        if self.cached:
            del self._disk[key]  # the object is the record now; it is written back when it leaves the cache
            self._admit(key, value)
        return value

    def __setitem__(self, key: bytes, value: Any) -> None:
        if self.cached:
            if key not in self._hot and key != self._missed and self._disk.get(key) is not None:
                del self._disk[key]  # written without being read: the copy on disk is stale
            self._missed = None
            self._admit(key, value)
        else:
            self._disk[key] = self._encode(value)

    def get(self, key: bytes, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __delitem__(self, key: bytes) -> None:
        if self._hot.pop(key, _ABSENT) is _ABSENT:
            if self._disk.get(key) is None:
                raise KeyError(key)
            del self._disk[key]

    def __contains__(self, key: object) -> bool:
        return key in self._hot or self._disk.get(key) is not None

    def __iter__(self) -> Iterator[bytes]:
        """Every key once: those cached, then those on disk (a key is in one place only). Iterates over a
        snapshot of the cached keys; changing the map while iterating is not supported."""
        yield from list(self._hot)
        yield from self._disk.keys()

    def __len__(self) -> int:
        """Counts the keys on disk: O(keys), for tests and ops, never on an event's path."""
        return len(self._hot) + sum(1 for _ in self._disk.keys())

    def clear(self) -> None:
        self._hot.clear()
        keys = list(self._disk.keys())
        for key in keys:
            del self._disk[key]

    def close(self) -> None:
        """Closes and removes the directory; the map is unusable after."""
        self._hot.clear()
        with contextlib.suppress(Exception):
            self._disk.close()
        shutil.rmtree(self.path, ignore_errors=True)


_ABSENT = object()


def _partition_bytes(partition: int) -> bytes:
    return partition.to_bytes(4, "big")


def _partition_of(data: bytes) -> int:
    return int.from_bytes(data, "big")


def spilled_records(path: Path, cached: int, loaded: Callable[[], None] = lambda: None) -> SpilledMap:
    """A table's records (``streams.record_codec``), ``cached`` (at least 1: the one being changed) as objects."""
    if cached < 1:
        raise ValueError(f"a table keeps at least the record it changes as an object, not cached={cached}")
    return SpilledMap(path, cached, record_codec.encode, record_codec.decode, loaded)


def spilled_partitions(path: Path) -> SpilledMap:
    """A table's key -> partition index (what Faust's memory store keeps to drop revoked partitions), on disk."""
    return SpilledMap(path, 0, _partition_bytes, _partition_of)


def process_dir(root: Path) -> Path:
    """This process's own directory under ``root``, after removing those of processes no longer running."""
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("pid-*"):
        try:
            pid = int(old.name[4:])
        except ValueError:
            continue
        if pid != os.getpid() and not psutil.pid_exists(pid):
            shutil.rmtree(old, ignore_errors=True)
    return root / f"pid-{os.getpid()}"

