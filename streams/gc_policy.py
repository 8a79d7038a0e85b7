"""How the worker's process collects garbage (``streams.gc_freeze``, ``streams.gc_freeze_survivors``,
``streams.trim_after_gc``).

A full collection walks every object the collector tracks: with a worker's tables in memory (hundreds
of MiB of records) one took seconds, and the event loop waits meanwhile (``referral_worker_gc_pause_seconds``).
Records are not cyclic: one replaced by a newer version is freed by its reference count, frozen or not. So
the survivors of a full collection (mostly the tables' records) can be frozen (``gc.freeze``): later
collections walk only what came since. What it costs: garbage that forms a cycle among objects frozen while
they were alive is never collected.

Memory freed is not given back to the system by itself: glibc's allocator keeps freed pages for its next
allocations, and a worker that read and wrote records of every size kept about half of its heap free (a census of
the 1M-event run: 117 of 230 MiB free after 100,000 events, 156 of 293 MiB at the end). After a full collection,
``malloc_trim(0)`` returns the free pages to the system (about a millisecond; where the C library has no
``malloc_trim``, as musl or macOS, nothing is done).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable
from typing import Any


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (looked up among the symbols the process
    has loaded already: no search for the library, which runs ``ldconfig`` at start-up)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


class FullCollections:
    """Notes every full collection; ``at_rest`` (the shell calls it between batches) then freezes what survived
    it (``freeze``) and gives the free memory back to the system (``trim``). Not inside the collector's callback:
    the process's own code decides when."""

    def __init__(self, *, freeze: bool = True, trim: bool = False) -> None:
        self.due = False
        self.freeze = freeze
        self.trim = malloc_trim() if trim else None
        self.frozen = 0  # times frozen, for the tests
        self.trimmed = 0  # times trimmed, for the tests
        gc.callbacks.append(self._collected)

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2:
            self.due = True

    def at_rest(self) -> None:
        if self.due:
            self.due = False
            if self.freeze:
                gc.freeze()
                self.frozen += 1
            if self.trim is not None:
                self.trim(0)
                self.trimmed += 1

    def close(self) -> None:
        if self._collected in gc.callbacks:
            gc.callbacks.remove(self._collected)
