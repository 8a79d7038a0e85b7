"""One object per value for the whole worker process: the tuples many records hold alike.

A referrer's record holds the same few tuples over and over: the funnel cell a share or click counted in
(a referrer counts thousands of ids in a few cells, and a tuple and its day's string per id were 130 of the
about 300 bytes an id held in memory) and the (role, campaign, points) a reward reached (three per
referral). Interned, each is held once. The cache is bounded: cleared when full, which costs only sharing.
"""

from __future__ import annotations

from typing import TypeVar

INTERNED = 100_000  # distinct tuples the process shares one object of (cleared when full)
_kept: dict[tuple, tuple] = {}

TupleT = TypeVar("TupleT", bound=tuple)


def interned(value: TupleT) -> TupleT:
    """The process's one tuple equal to ``value`` (``value`` itself the first time)."""
    kept = _kept.get(value)
    if kept is None:
        if len(_kept) >= INTERNED:
            _kept.clear()
        kept = _kept[value] = value
    return kept  # type: ignore[return-value]

