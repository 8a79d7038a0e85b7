"""How the worker's process collects garbage (``streams.gc_freeze``, ``streams.gc_freeze_survivors``).

A full collection walks every object the collector tracks: with a worker's tables in memory (hundreds
of MiB of records) one took seconds, and the event loop waits meanwhile (``referral_worker_gc_pause_seconds``).
Records are not cyclic: one replaced by a newer version is freed by its reference count, frozen or not. So
the survivors of a full collection (mostly the tables' records) can be frozen (``gc.freeze``): later
collections walk only what came since. What it costs: garbage that forms a cycle among objects frozen while
they were alive is never collected.
"""

from __future__ import annotations

import gc
from typing import Any


class FreezeSurvivors:
    """Notes every full collection; ``at_rest`` (the shell calls it between batches) then freezes what survived
    it. Not inside the collector's callback: the process's own code decides when."""

    def __init__(self) -> None:
        self.due = False
        self.frozen = 0  # times frozen, for the tests
        gc.callbacks.append(self._collected)

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2:
            self.due = True

    def at_rest(self) -> None:
        if self.due:
            self.due = False
            gc.freeze()
            self.frozen += 1

    def close(self) -> None:
        if self._collected in gc.callbacks:
            gc.callbacks.remove(self._collected)
