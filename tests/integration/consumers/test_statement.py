"""Statements on the real stack: after a simulated run, the statement is the reward log, each change once, and
its totals are the ledger the read API shows; the read API and the command give the same CSV."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx

from schemas.derived import RewardStatus
from tests.integration.fixtures.gateway import APP_KEY, READ_KEY
from tests.integration.support.worker import (
    ledger_from_reward_log,
    reward_changes,
    run_through,
    send,
    simulated,
    wait_for,
)

COLUMNS = ("event_id", "occurred_at", "campaign_id", "reward_id", "referral_id", "customer_id", "role", "status",
           "reason", "points")


def parsed(text: str) -> tuple[list[dict[str, str]], dict[str, tuple[int, int]]]:
    """(the change rows, status -> (rewards, points) of the total rows)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["kind"] for r in rows} <= {"change", "total"}, "an unreadable row: the log had records it could not read"
    assert [r["kind"] for r in rows[-len(RewardStatus):]] == ["total"] * len(RewardStatus), "cut short"
    return ([r for r in rows if r["kind"] == "change"],
            {r["status"]: (int(r["rewards"]), int(r["points"])) for r in rows if r["kind"] == "total"})


def as_row(change: dict) -> tuple[str, ...]:
    at = datetime.fromisoformat(change["occurred_at"]).astimezone(UTC).isoformat().replace("+00:00", "Z")
    values = {**change, "occurred_at": at, "campaign_id": change.get("campaign_id") or "default",
              "reason": change.get("reason") or "", "points": str(change["points"])}
    return tuple(values[c] for c in COLUMNS)


def test_the_statement_is_the_reward_log_once_each_and_its_totals_are_the_ledger(pipeline_factory, app_factory):
    own, worker = pipeline_factory("statement")
    events = simulated(own, 23, 2500)
    run_through(own, worker, events)
    first = len(reward_changes(own))
    worker.stop()  # restarted, the worker re-sends every reward of a referrer an event it has seen touches
    worker.start()
    send(own, events)
    log = wait_for(lambda: ((log := reward_changes(own)) and len(log) > first, log), timeout_s=120)
    distinct = {c["event_id"]: c for c in log}
    assert len(distinct) > 50, "too few rewards to say anything"
    assert len(log) > len(distinct), "the log holds some changes twice"
    gateway = app_factory(data_of=own)
    http = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {READ_KEY}"}, timeout=60)

    answer = http.get("/v1/campaigns/default/statement.csv", params={"from": "2000-01-01", "to": "2100-01-01"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == 'attachment; filename="statement-default-2000-01-01-2100-01-01.csv"'
    changes, totals = parsed(answer.text)
    # row for row: every change of the log once (the log may hold some twice: at-least-once re-sends)
    assert Counter(tuple(r[c] for c in COLUMNS) for r in changes) == Counter(as_row(c) for c in distinct.values())

    # the totals: the ledger of the reward log, and the read API's, per status over both roles
    want: Counter = Counter()
    for name, n in ledger_from_reward_log(own).items():
        kind, _role, status = name.split(":")
        want[(status, kind)] += n
    assert {(s, k): v for s, (n, p) in totals.items() for k, v in (("rewards", n), ("points", p)) if v} == want
    ledger = http.get("/v1/campaigns/default/rewards").json()
    api: Counter = Counter()
    for by_status in ledger["by_role"].values():
        for status, figures in by_status.items():
            api.update({(status, kind): n for kind, n in figures.items()})
    assert +api == want

    # a period: only the changes whose event time is in it (from inclusive, to exclusive)
    times = sorted(datetime.fromisoformat(c["occurred_at"]) for c in distinct.values())
    start = times[len(times) // 3].astimezone(UTC)
    end = start + timedelta(days=7)
    window = {"from": start.isoformat(), "to": end.isoformat()}
    some, _ = parsed(http.get("/v1/campaigns/default/statement.csv", params=window).text)
    assert sorted(r["event_id"] for r in some) == sorted(
        c["event_id"] for c in distinct.values() if start <= datetime.fromisoformat(c["occurred_at"]) < end)
    assert some, "the period holds changes"

    # the command writes the same CSV
    done = subprocess.run([sys.executable, "-m", "referrals.cli", "statement", "default", "--from", window["from"],
                           "--to", window["to"]], env=worker.env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()[1:]) == sorted(
        http.get("/v1/campaigns/default/statement.csv", params=window).text.splitlines()[1:])

    # refusals: an empty or malformed period, no key, a key without read
    for params, says in [({"from": "2026-04-01", "to": "2026-03-01"}, "later"), ({"from": "March", "to": "x"}, "date")]:
        bad = http.get("/v1/campaigns/default/statement.csv", params=params)
        assert bad.status_code == 422 and says in bad.json()["errors"][0]["message"], bad.text
    missing = http.get("/v1/campaigns/default/statement.csv", params={"to": "2026-03-01"})
    assert missing.status_code == 422 and missing.json()["errors"][0]["rule"] == "invalid_period"
    anonymous = httpx.get(f"{gateway.url}/v1/campaigns/default/statement.csv", params=window)
    assert anonymous.status_code == 401
    writer = httpx.get(f"{gateway.url}/v1/campaigns/default/statement.csv", params=window,
                       headers={"Authorization": f"Bearer {APP_KEY}"})
    assert writer.status_code == 403
    bad_cli = subprocess.run([sys.executable, "-m", "referrals.cli", "statement", "--from", "2026-04-01", "--to",
                              "2026-03-01"], env=worker.env(), capture_output=True, text=True, timeout=60)
    assert bad_cli.returncode == 2 and "later" in bad_cli.stderr
