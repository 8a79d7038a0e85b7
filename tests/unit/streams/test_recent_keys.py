"""What a process remembers about keys (``streams.recent_keys``): the most recently added, no more."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.recent_keys import RecentKeys


@given(st.lists(st.tuples(st.sampled_from(["add", "discard"]), st.sampled_from("abcdefg"))), st.integers(1, 4))
def test_it_keeps_the_most_recently_added_keys_and_no_more(ops, size):
    keys = RecentKeys(size)
    order: list[str] = []  # a model: the keys, oldest first
    for op, key in ops:
        if key in order:
            order.remove(key)
        if op == "add":
            order.append(key)
            del order[:-size]
            keys.add(key)
        else:
            keys.discard(key)
        assert list(keys) == order
        assert all(k in keys for k in order) and len(keys) == len(order) <= size


def test_update_and_clear():
    keys = RecentKeys(2, ["a"])
    keys.update(["b", "c"])
    assert set(keys) == {"b", "c"}
    keys.clear()
    assert not keys


def test_size_must_be_positive():
    with pytest.raises(ValueError, match="size"):
        RecentKeys(0)
