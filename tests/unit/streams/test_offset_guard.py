"""The worker's offset guard (pure part): no record of a partition skipped."""

from streams.app import OffsetGuard


def test_offsets_must_go_on_one_by_one_from_the_commit():
    guard = OffsetGuard()
    guard.start({("t", 0): 5, ("t", 1): 0})
    assert guard.check([("t", 0, 5), ("t", 1, 0), ("t", 0, 6)]) is None
    assert guard.check([("t", 0, 4), ("t", 0, 7)]) is None  # a replayed earlier record is fine
    assert guard.check([("t", 1, 1), ("t", 1, 3)]) == ("t", 1, 2, 3)


def test_the_first_record_after_a_restart_must_be_the_committed_one():
    guard = OffsetGuard()
    guard.start({("t", 0): 10})
    guard.start({("t", 0): 3})  # known already: kept
    assert guard.check([("t", 0, 12)]) == ("t", 0, 10, 12)
