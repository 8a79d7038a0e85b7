"""The retry policy: delivered, retried when, or dead and why."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.webhooks.retry import (
    Answer,
    Attempts,
    Dead,
    Delivered,
    Policy,
    RetryAt,
    backoff_s,
    next_step,
    retry_after_s,
)

POLICY = Policy(retry_for_s=86400, backoff_first_s=5, backoff_max_s=3600)
jitters = st.floats(min_value=0, max_value=1, exclude_max=True)
policies = st.builds(Policy, retry_for_s=st.floats(1, 1e6), backoff_first_s=st.floats(0.01, 100),
                     backoff_max_s=st.floats(0.01, 1e4))
retried = st.one_of(st.integers(500, 599), st.sampled_from([408, 429])).map(Answer) | st.sampled_from(
    [Answer(None, error="timeout"), Answer(None, error="connection: ConnectError")])


@given(status=st.integers(200, 299), count=st.integers(1, 100))
def test_a_2xx_is_delivered(status, count):
    assert next_step(POLICY, Attempts(0, count), Answer(status), 10, 0.5) == Delivered()


@given(status=st.integers(100, 499).filter(lambda s: not 200 <= s < 300 and s not in (408, 429)))
def test_any_other_answer_below_500_is_dead_at_once(status):
    step = next_step(POLICY, Attempts(0, 1), Answer(status), 1, 0.5)
    assert step == Dead("redirect" if 300 <= status < 400 else f"status_{status}")


@given(policy=policies, answer=retried, count=st.integers(1, 80), first=st.floats(0, 1e6),
       elapsed=st.floats(0, 2e6), jitter=jitters)
def test_a_retry_waits_half_to_all_of_the_doubled_backoff_and_never_past_the_retry_period(
        policy, answer, count, first, elapsed, jitter):
    now = first + elapsed
    step = next_step(policy, Attempts(first, count), answer, now, jitter)
    full = min(policy.backoff_max_s, policy.backoff_first_s * 2 ** (count - 1))
    if now + full / 2 > first + policy.retry_for_s:
        assert step == Dead("retries_exhausted") or step.at <= first + policy.retry_for_s
    if isinstance(step, RetryAt):
        assert full / 2 - 1e-6 <= step.at - now <= full + 1e-6
        assert step.at <= first + policy.retry_for_s
        assert step.cause in {"timeout", "connection"} or step.cause.startswith("status_")
    else:
        assert step == Dead("retries_exhausted")
        assert now + backoff_s(policy, count, jitter) > first + policy.retry_for_s


@given(seconds=st.floats(0, 1e5), status=st.sampled_from([429, 503]))
def test_retry_after_is_honoured_up_to_the_longest_backoff(seconds, status):
    step = next_step(POLICY, Attempts(0, 1), Answer(status, retry_after_s=seconds), 100, 0.9)
    wait = min(seconds, POLICY.backoff_max_s)
    assert step == (RetryAt(100 + wait, f"status_{status}") if 100 + wait <= POLICY.retry_for_s
                    else Dead("retries_exhausted"))


def test_the_waits_double_from_the_first_to_the_longest():
    assert [backoff_s(POLICY, n, 1 - 1e-12) for n in (1, 2, 3)] == pytest.approx([5, 10, 20])
    assert backoff_s(POLICY, 30, 0) == 1800  # half of the longest wait


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert retry_after_s("120") == 120
    assert retry_after_s("Wed, 02 Dec 2026 12:01:30 GMT", now) == 90
    assert retry_after_s("Wed, 02 Dec 2026 11:00:00 GMT", now) == 0
    assert retry_after_s("soon") is None
    assert retry_after_s(None) is None
    assert retry_after_s("") is None
