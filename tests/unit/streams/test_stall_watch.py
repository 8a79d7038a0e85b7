"""The worker's stall watchdog (pure part): a partition with records waiting whose offset does not move."""

from streams.app import StallWatch

A, B = ("t", 0), ("t", 1)


def test_one_stuck_partition_is_a_stall_even_while_the_others_move():
    watch = StallWatch(60)
    assert watch.stalled(0, {A: (5, 8), B: (0, 10)}) == []
    assert watch.stalled(30, {A: (5, 8), B: (4, 10)}) == []
    assert watch.stalled(59, {A: (5, 8), B: (9, 10)}) == []
    assert watch.stalled(60, {A: (5, 8), B: (10, 12)}) == [A]


def test_progress_or_nothing_to_do_is_never_a_stall():
    watch = StallWatch(60)
    assert watch.stalled(0, {A: (5, 8)}) == []
    assert watch.stalled(50, {A: (6, 8)}) == []  # moved: its clock starts again
    assert watch.stalled(100, {A: (6, 8)}) == []
    assert watch.stalled(500, {A: (8, 8)}) == []  # caught up
    assert watch.stalled(1000, {A: (8, 8)}) == []
    watch.stalled(1000, {A: (8, 9)})
    watch.reset()  # restoring tables: the clocks start again afterwards
    assert watch.stalled(1100, {A: (8, 9)}) == []


def test_kafka_not_answering_the_positions_is_no_stall_and_the_watch_starts_over():
    """After a broker restart the group coordinator answers CoordinatorLoadInProgressError for a moment: that
    ended the worker once (the error left the watchdog's timer)."""
    import asyncio

    from kafka.errors import CoordinatorLoadInProgressError

    from streams.app import stalled_partitions

    watch = StallWatch(0.0)  # any partition not moving between two looks is stalled

    def loading() -> dict:
        raise CoordinatorLoadInProgressError("OffsetFetchResponse failed for group 'g'.")

    assert asyncio.run(stalled_partitions(watch, lambda: {A: (5, 8)})) == []  # first look
    assert asyncio.run(stalled_partitions(watch, loading)) == []
    assert watch.since == {}  # started over: the next look is a first look again
    assert asyncio.run(stalled_partitions(watch, lambda: {A: (5, 8)})) == []
    assert asyncio.run(stalled_partitions(watch, lambda: {A: (5, 8)})) == [A]  # the watch still works
