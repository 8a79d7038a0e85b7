"""The worker waits for Redis at start (``streams.app.redis_at_start``): backoff, then the answer."""

from __future__ import annotations

import pytest
import redis

from streams.app import redis_at_start


def test_redis_unavailable_at_start_is_waited_out_with_growing_pauses():
    answers = [redis.ConnectionError("refused")] * 7 + [redis.BusyLoadingError("loading"), {"pseudonym"}]
    slept: list[float] = []

    def call():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert redis_at_start(call, sleep=slept.append) == {"pseudonym"}
    assert slept == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]  # doubling, at most 5 s apart


def test_other_redis_errors_are_not_waited_out():
    def call():
        raise redis.ResponseError("WRONGTYPE")

    with pytest.raises(redis.ResponseError):
        redis_at_start(call, sleep=lambda s: pytest.fail("must not wait"))
