"""After full garbage collections: their survivors frozen, free memory given back (``streams.gc_policy``)."""

from __future__ import annotations

import gc
import sys

from streams.gc_policy import FullCollections, malloc_trim


def test_the_survivors_of_a_full_collection_are_frozen_at_rest_and_only_then():
    policy = FullCollections(freeze=True)
    try:
        frozen = gc.get_freeze_count()
        policy.at_rest()
        assert policy.frozen == 0  # no full collection yet
        gc.collect(1)
        policy.at_rest()
        assert policy.frozen == 0  # a younger generation's collection is not one
        kept = [[i] for i in range(1_000)]  # survivors
        gc.collect(2)
        assert gc.get_freeze_count() == frozen  # not inside the collection
        policy.at_rest()
        assert policy.frozen == 1 and gc.get_freeze_count() >= frozen + len(kept)
        policy.at_rest()
        assert policy.frozen == 1  # once per full collection
    finally:
        policy.close()
        gc.unfreeze()


def test_free_memory_is_given_back_after_a_full_collection_at_rest_only_when_asked():
    assert (malloc_trim() is not None) == sys.platform.startswith("linux")  # glibc here: a missing one is a bug
    asked, not_asked = FullCollections(freeze=False, trim=True), FullCollections(freeze=False)
    try:
        asked.at_rest()
        assert asked.trimmed == 0  # no full collection yet
        gc.collect(2)
        asked.at_rest()
        not_asked.at_rest()
        assert (asked.trimmed, asked.frozen) == (1, 0)
        assert (not_asked.trimmed, not_asked.frozen) == (0, 0)
        asked.at_rest()
        assert asked.trimmed == 1  # once per full collection
    finally:
        asked.close()
        not_asked.close()
