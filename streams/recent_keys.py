"""What a worker process remembers about keys it worked on, bounded: the most recent ``size`` keys.

The stage runner remembers, per process, which keys it already re-sent on a duplicate, which referrers
it already wrote complete counters for, and which referrers' last batch is acknowledged. Each lets it
skip work that is always safe to do again: forgetting a key costs a re-send, a complete snapshot, or a
re-send of rewards already on Kafka, never a wrong count. So a process keeps the most recently
added ``size`` keys (an insertion-ordered set, re-adding a key makes it the newest) and its memory does
not grow with the number of keys the tables hold.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, MutableSet

REMEMBERED = 50_000  # keys each set keeps by default: about 100 bytes each


class RecentKeys(MutableSet[str]):
    def __init__(self, size: int = REMEMBERED, keys: Iterable[str] = ()) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, not {size}")
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()
        for key in keys:
            self.add(key)

    def add(self, key: str) -> None:
        keys = self._keys
        keys[key] = None
        keys.move_to_end(key)
        if len(keys) > self.size:
            keys.popitem(last=False)

    def discard(self, key: str) -> None:
        self._keys.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def clear(self) -> None:
        self._keys.clear()

    def update(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.add(key)
