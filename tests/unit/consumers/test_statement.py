"""Statements: each change once however often the log holds it, in its period and campaign; totals as the ledger
counts them; erased customers as pseudonyms; the CSV as a spreadsheet reads it."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.statement import COLUMNS, Period, PeriodError, Statement, csv_chunks, renaming
from schemas.derived import RewardStatus

T0 = datetime(2026, 3, 1, tzinfo=UTC)
ALL_TIME = Period(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def change(reward: str, status: str, n: int, points: int = 500, at: datetime = T0, campaign: str | None = "default",
           role: str = "referrer", reason: str | None = None) -> bytes:
    referral = reward.rsplit(":", 1)[0]
    return json.dumps({
        "type": "reward", "event_id": f"{reward}:{status}:{n}", "occurred_at": at.isoformat().replace("+00:00", "Z"),
        "reward_id": reward, "referral_id": referral, "role": role, "customer_id": referral.split(":")[1],
        "points": points, "status": status, "reason": reason, "campaign_id": campaign}).encode()


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_periods_are_dates_or_times_from_inclusive_to_exclusive():
    march = Period.parse("2026-03-01", "2026-04-01")
    assert march.holds(T0) and march.holds(datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC))
    assert not march.holds(datetime(2026, 4, 1, tzinfo=UTC)) and not march.holds(T0 - timedelta(microseconds=1))
    assert Period.parse("2026-03-01T01:00:00+01:00", "2026-03-02T00:00:00Z").start == T0
    for start, end, says in [("March", "2026-04-01", "from must be a date"), ("2026-03-01", "2026-03-01", "later"),
                             ("2026-03-01T00:00:00", "2026-04-01", "UTC offset"), ("2026-03-01", "", "to must be")]:
        with pytest.raises(PeriodError, match=says):
            Period.parse(start, end)


def test_a_change_on_the_log_twice_is_one_row_and_a_status_reached_again_counts_once_in_the_totals():
    statement = Statement("default", ALL_TIME)
    log = [change("default:a:b:referrer", "pending", 1), change("default:a:b:referrer", "held_for_review", 2, 0,
                                                                 reason="velocity_limit"),
           change("default:a:b:referrer", "pending", 1),  # a re-send of the first, after the second
           change("default:a:b:referrer", "pending", 3, 400), change("default:a:b:referrer", "confirmed", 4, 400),
           change("default:a:b:referrer", "confirmed", 4, 400)]
    rows = [statement.take(v) for v in log]
    assert [r[1] if r else None for r in rows] == [
        "default:a:b:referrer:pending:1", "default:a:b:referrer:held_for_review:2", None,
        "default:a:b:referrer:pending:3", "default:a:b:referrer:confirmed:4", None]
    assert (statement.rows, statement.duplicates) == (4, 2)
    # the ledger's way: each status once per reward, with the points it had when it first reached it
    assert statement.totals == {"pending": [1, 500], "held_for_review": [1, 0], "confirmed": [1, 400]}


def test_other_campaigns_and_times_outside_the_period_are_left_out_and_an_unreadable_record_is_said():
    march = Statement("spring", Period.parse("2026-03-01", "2026-04-01"))
    assert march.take(change("spring:a:b:referrer", "pending", 1, campaign="spring")) is not None
    assert march.take(change("default:a:b:referrer", "pending", 1, campaign=None)) is None
    assert march.take(change("spring:a:c:referrer", "pending", 1, campaign="spring", at=T0 - timedelta(days=1))) is None
    assert march.take(b"\x80 not json") is None and march.take(b'{"status": "pending"}') is None
    closing = march.closing()
    assert [r[0] for r in closing] == ["total"] * len(RewardStatus) + ["unreadable"]
    assert closing[-1][-1] == "2" and closing[0][COLUMNS.index("rewards")] == "1"


def test_an_erased_customer_is_their_pseudonym_in_every_id_that_names_them():
    renamed = renaming({"c_p"}, lambda part: "c_p" if part == "bob" else f"other:{part}")
    statement = Statement("default", ALL_TIME, renamed)
    row = dict(zip(COLUMNS, statement.take(change("default:bob:carol:referrer", "pending", 1)), strict=True))
    assert (row["event_id"], row["reward_id"], row["referral_id"], row["customer_id"]) == (
        "default:c_p:carol:referrer:pending:1", "default:c_p:carol:referrer", "default:c_p:carol", "c_p")
    # the same change, renamed by the worker after the erasure and re-sent: the same row, written once
    assert statement.take(change("default:c_p:carol:referrer", "pending", 1)) is None


def test_the_csv_has_a_header_the_rows_in_chunks_and_the_closing_totals():
    log = [change(f"default:a:b{i}:referrer", "pending", 1, points=i) for i in range(5)]
    chunks = list(csv_chunks(Statement("default", ALL_TIME), log, rows_per_chunk=2))
    assert len(chunks) == 3  # two full chunks, then the last row with the totals
    rows = rows_of("".join(chunks))
    assert [r["kind"] for r in rows] == ["change"] * 5 + ["total"] * len(RewardStatus)
    pending = next(r for r in rows if r["kind"] == "total" and r["status"] == "pending")
    assert (pending["rewards"], pending["points"]) == ("5", "10")


STATUSES = [s.value for s in RewardStatus]
histories = st.lists(st.lists(st.tuples(st.sampled_from(STATUSES), st.integers(0, 1000), st.integers(-40, 40)),
                              min_size=1, max_size=5), min_size=1, max_size=8)


@given(histories, st.data())
def test_any_log_with_repeats_gives_each_change_once_and_the_ledger_totals(histories, data):
    """The oracle: the distinct changes in the period, and every (reward, status) reached first with its points."""
    log: list[tuple[str, str, int, int, datetime]] = []
    for i, history in enumerate(histories):
        log += [(f"default:r{i}:e{i}:referrer", status, n, points, T0 + timedelta(days=day))
                for n, (status, points, day) in enumerate(history, start=1)]
    for _ in range(data.draw(st.integers(0, 10))):  # re-sends: any change again, anywhere after itself
        at = data.draw(st.integers(0, len(log) - 1))
        log.insert(data.draw(st.integers(at + 1, len(log))), log[at])
    period = Period(T0, T0 + timedelta(days=data.draw(st.integers(1, 41))))
    statement = Statement("default", period)
    got = [row for entry in log if (row := statement.take(change(*entry[:4], at=entry[4]))) is not None]

    distinct = list(dict.fromkeys(e for e in log if period.holds(e[4])))
    assert [row[1] for row in got] == [f"{r}:{s}:{n}" for r, s, n, _p, _at in distinct]
    reached: dict[tuple[str, str], int] = {}
    for reward, status, _n, points, _at in distinct:
        reached.setdefault((reward, status), points)
    want: Counter = Counter()
    for (_reward, status), points in reached.items():
        want[(status, "rewards")] += 1
        want[(status, "points")] += points
    assert {(s, k): v for s, (n, p) in statement.totals.items() for k, v in (("rewards", n), ("points", p))} == want


def test_an_id_a_spreadsheet_would_run_as_a_formula_is_quoted():
    row = Statement("default", ALL_TIME).take(change("default:=HYPERLINK(1):b:referrer", "pending", 1))
    as_row = dict(zip(COLUMNS, row, strict=True))
    assert as_row["reward_id"] == "default:=HYPERLINK(1):b:referrer"  # not at the start: a spreadsheet keeps text
    hostile = json.loads(change("default:x:b:referrer", "pending", 1))
    hostile["customer_id"] = "=cmd|' /C calc'!A0"
    row = dict(zip(COLUMNS, Statement("default", ALL_TIME).take(json.dumps(hostile).encode()), strict=True))
    assert row["customer_id"] == "'=cmd|' /C calc'!A0"
