"""Statements for finance: every change of a campaign's rewards in a period, from the reward log, as CSV.

The reward log (``referrals.rewards``) is read to where it ended when the statement began, every partition,
each in log order; a row for every change whose event time (``occurred_at``) is in the period (``from``
inclusive, ``to`` exclusive) and whose campaign is the statement's. Then the closing rows: per status, how
many rewards reached it in the period and their points, counted as the campaign's ledger counts (each reward
once per status, with the points it had when it first reached it), so that over all time they are the
read API's ``/v1/campaigns/{id}/rewards`` figures.

Kafka delivers the worker's outputs at least once: a change can be on the log twice, and a restarted worker
re-sends a referrer's current rewards, which may have changed months before. A change's event id names it, so
the statement writes each change once; to know which it wrote, and which statuses each reward reached, it keeps
a 16-byte digest of each in SQLite (the standard library's), in a temporary file with a page cache of
``CACHE_KIB``: its memory stays the same however many rows, the file grows with them (32 bytes and SQLite's
overhead a row) and goes when the statement ends. The rows themselves are streamed, never held.

An erased customer (``referrals erase``) appears as their pseudonym, in every id that names them: the log keeps
their old ids until its retention deletes them, the statement does not show them.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from consumers import kafka_log
from referrals.privacy import pseudonym
from referrals.settings import Settings
from schemas.derived import RewardStatus
from schemas.fields import rfc3339
from schemas.topics import REWARDS
from streams import erasure_registry
from streams.inbound import DEFAULT_CAMPAIGN

COLUMNS = ("kind", "event_id", "occurred_at", "campaign_id", "reward_id", "referral_id", "customer_id", "role",
           "status", "reason", "points", "rewards")
_STATUSES = frozenset(status.value for status in RewardStatus)
CACHE_KIB = 4096  # the seen digests' page cache; the rest of them stay in the temporary file
STALL_S = 30.0  # a statement whose reading of the log stands still this long ends, cut short (no total rows)


class PeriodError(ValueError):
    """A period bound that is not a date or an RFC 3339 time, or an empty period."""


def parse_bound(text: str, name: str) -> datetime:
    """``YYYY-MM-DD`` (midnight UTC) or an RFC 3339 time with an offset."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise PeriodError(f"{name} must be a date (YYYY-MM-DD) or an RFC 3339 time, not {text!r}") from None
    if len(text) == 10:
        return at.replace(tzinfo=UTC)
    if at.tzinfo is None:
        raise PeriodError(f"{name} needs a UTC offset (Z or +hh:mm): {text!r}")
    return at.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime  # inclusive
    end: datetime  # exclusive

    @classmethod
    def parse(cls, start: str, end: str) -> Period:
        period = cls(parse_bound(start, "from"), parse_bound(end, "to"))
        if period.end <= period.start:
            raise PeriodError("to must be later than from (the period is from <= occurred_at < to)")
        return period

    def holds(self, at: datetime) -> bool:
        return self.start <= at < self.end


def _cell(text: str) -> str:
    """An id as a spreadsheet cannot take it for a formula (OWASP's CSV injection advice: a leading ``'``
    before ``=``, ``+``, ``-``, ``@``, tab or carriage return); any other id as it is."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _digest(text: str) -> bytes:
    """128 bits of BLAKE2b: the odds of two changes sharing one, over a billion changes, are below 1e-20."""
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class Seen:
    """Which digests a statement has met, in a temporary SQLite file (constant memory: its page cache)."""

    def __init__(self) -> None:
        # "": a private temporary file, deleted when closed; read by one statement, whichever thread streams it
        self._db = sqlite3.connect("", check_same_thread=False)
        for pragma in (f"cache_size=-{CACHE_KIB}", "journal_mode=OFF", "synchronous=OFF", "temp_store=FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE seen (digest BLOB PRIMARY KEY) WITHOUT ROWID")

    def first(self, digest: bytes) -> bool:
        """Whether ``digest`` is met here for the first time (it is remembered either way)."""
        return self._db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (digest,)).rowcount == 1

    def close(self) -> None:
        self._db.close()


class Statement:
    """The rows of reward changes given in log order (``take``), and the closing totals (``closing``); no Kafka,
    no Redis, its memory of what it wrote in a temporary SQLite file (``Seen``; ``close`` removes it).

    ``renamed`` maps an id part (a ``:``-separated part of an id) to what the statement shows for it: the
    pseudonym of an erased customer, else the part itself."""

    def __init__(self, campaign_id: str, period: Period, renamed: Callable[[str], str] = lambda part: part):
        self.campaign_id, self.period, self._renamed = campaign_id, period, renamed
        self._seen = Seen()  # the changes written, and each (reward, status) reached
        self.totals: dict[str, list[int]] = {}  # status -> [rewards that reached it, their points]
        self.rows = self.duplicates = self.unreadable = 0

    def _ids(self, value: str) -> str:
        return ":".join(self._renamed(part) for part in value.split(":"))

    def _first_time(self, event_id: str, reward_id: str, status: str) -> tuple[bool, bool]:
        """(whether this change is new, whether the reward reached ``status`` for the first time)."""
        if not self._seen.first(b"c" + _digest(event_id)):
            return False, False
        return True, self._seen.first(b"r" + _digest(f"{reward_id}\x00{status}"))

    def close(self) -> None:
        self._seen.close()

    def take(self, value: bytes | None) -> list[str] | None:
        """The row of one record of the reward log, or None (another campaign or period, or a change written
        already)."""
        try:
            change = json.loads(value or b"")
            campaign_id = change.get("campaign_id") or DEFAULT_CAMPAIGN
            at = datetime.fromisoformat(change["occurred_at"])
            if at.tzinfo is None:
                raise ValueError("occurred_at without an offset")
            status, points = change["status"], int(change["points"])
            event_id, reward_id = self._ids(change["event_id"]), self._ids(change["reward_id"])
            if status not in _STATUSES:
                raise ValueError(status)
        except (ValueError, KeyError, TypeError, AttributeError):
            self.unreadable += 1
            return None
        if campaign_id != self.campaign_id or not self.period.holds(at):
            return None
        new, reached = self._first_time(event_id, reward_id, status)
        if not new:
            self.duplicates += 1
            return None
        if reached:
            total = self.totals.setdefault(status, [0, 0])
            total[0] += 1
            total[1] += points
        self.rows += 1
        return ["change", _cell(event_id), rfc3339(at.astimezone(UTC)), _cell(campaign_id), _cell(reward_id),
                _cell(self._ids(change.get("referral_id") or "")), _cell(self._ids(change.get("customer_id") or "")),
                change.get("role") or "", status, change.get("reason") or "", str(points), ""]

    def closing(self) -> list[list[str]]:
        """A ``total`` row per status (every status, zeros too), and an ``unreadable`` row if records of the log
        could not be read (it says the statement is not complete)."""
        rows = [["total", "", "", self.campaign_id, "", "", "", "", status.value, "",
                 str(self.totals.get(status.value, (0, 0))[1]), str(self.totals.get(status.value, (0, 0))[0])]
                for status in RewardStatus]
        if self.unreadable:
            rows.append(["unreadable", "", "", self.campaign_id, "", "", "", "", "", "", "", str(self.unreadable)])
        return rows


def csv_chunks(statement: Statement, values: Iterable[bytes | None], rows_per_chunk: int = 2000) -> Iterator[str]:
    """The statement as CSV text, header first, in chunks of about ``rows_per_chunk`` rows (the statement is
    closed when they end, or when the reader stops early)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    pending = 0
    try:
        for value in values:
            row = statement.take(value)
            if row is None:
                continue
            writer.writerow(row)
            pending += 1
            if pending >= rows_per_chunk:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
                pending = 0
        writer.writerows(statement.closing())
        yield buffer.getvalue()
    finally:
        statement.close()


def renaming(erased: set[str], pseudonym_of: Callable[[str], str], cache: int = 1 << 16) -> Callable[[str], str]:
    """``Statement``'s ``renamed`` for the erased customers' pseudonyms ``erased`` (the last ``cache`` id parts
    asked are remembered)."""
    if not erased:
        return lambda part: part

    @functools.lru_cache(maxsize=cache)
    def renamed(part: str) -> str:
        p = pseudonym_of(part)
        return p if p in erased else part

    return renamed


def statement_csv(settings: Settings, client: redis.Redis, campaign_id: str, period: Period) -> Iterator[str]:
    """The statement of the reward log as it is now, as CSV chunks. Kafka and Redis are asked before this
    returns (their errors come here, not from the iterator); the log is read as the iterator is."""
    until = kafka_log.end_offsets(settings, [settings.kafka.topic_prefix + REWARDS.name])
    erased = {member.decode() if isinstance(member, bytes) else member
              for member in client.smembers(erasure_registry.erased_key(settings.redis.key_prefix))}
    secret = settings.privacy.pseudonym_key.get_secret_value()
    statement = Statement(campaign_id, period, renaming(erased, lambda part: pseudonym(secret, part)))
    records = kafka_log.read(settings, until, stall_s=STALL_S)
    return csv_chunks(statement, (record.value for record in records))
