"""Freezing the survivors of full garbage collections (``streams.gc_policy``)."""

from __future__ import annotations

import gc

from streams.gc_policy import FreezeSurvivors


def test_the_survivors_of_a_full_collection_are_frozen_at_rest_and_only_then():
    policy = FreezeSurvivors()
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
