"""What happens after an attempt: delivered, retried when, or dead, and why. Pure: the clock and the jitter
come in as arguments.

- 2xx: delivered.
- 5xx, 408, 429, a timeout or a connection error: retried after an exponential backoff with jitter (the
  first wait ``backoff_first_s``, doubling, at most ``backoff_max_s``; each wait drawn between half and all
  of it), or after the endpoint's ``Retry-After`` when it sent one (at most ``backoff_max_s``).
- Any other answer (a 4xx, a redirect, a 1xx): dead at once; sending the same body again will not help.
- A retry that would come later than ``retry_for_s`` after the first attempt: dead (``retries_exhausted``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRIED_STATUSES = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt got: a status (and its Retry-After, in seconds), or an error without a status."""

    status: int | None
    retry_after_s: float | None = None
    error: str | None = None  # "timeout" or "connection: <what>", when there was no answer
    excerpt: str | None = None  # the start of the answer's body


@dataclass(frozen=True, slots=True)
class Policy:
    retry_for_s: float
    backoff_first_s: float
    backoff_max_s: float


@dataclass(frozen=True, slots=True)
class Attempts:
    """A delivery's history so far: when it was first tried, how often, and the last answer."""

    first_at: float
    count: int


@dataclass(frozen=True, slots=True)
class Delivered:
    pass


@dataclass(frozen=True, slots=True)
class RetryAt:
    at: float
    cause: str  # status_503, timeout, connection, ...


@dataclass(frozen=True, slots=True)
class Dead:
    cause: str  # status_400, redirect, retries_exhausted, ...


Step = Delivered | RetryAt | Dead


def cause_of(answer: Answer) -> str:
    if answer.status is None:
        return "timeout" if answer.error == "timeout" else "connection"
    return f"status_{answer.status}"


def retryable(answer: Answer) -> bool:
    status = answer.status
    return status is None or status >= 500 or status in RETRIED_STATUSES


def backoff_s(policy: Policy, failed_attempts: int, jitter: float) -> float:
    """The wait after ``failed_attempts`` (>= 1) failures; ``jitter`` in [0, 1) picks it between half and all of
    the doubled wait."""
    full = min(policy.backoff_max_s, policy.backoff_first_s * 2.0 ** min(failed_attempts - 1, 62))
    return full / 2 + full / 2 * jitter


def next_step(policy: Policy, attempts: Attempts, answer: Answer, now: float, jitter: float) -> Step:
    """After attempt number ``attempts.count`` (counted already) got ``answer`` at ``now``."""
    status = answer.status
    if status is not None and 200 <= status < 300:
        return Delivered()
    if not retryable(answer):
        return Dead("redirect" if status is not None and 300 <= status < 400 else cause_of(answer))
    if answer.retry_after_s is not None:
        wait = min(max(answer.retry_after_s, 0.0), policy.backoff_max_s)
    else:
        wait = backoff_s(policy, attempts.count, jitter)
    if now + wait > attempts.first_at + policy.retry_for_s:
        return Dead("retries_exhausted")
    return RetryAt(now + wait, cause_of(answer))


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header in seconds: delay-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
