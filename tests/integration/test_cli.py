"""The `referrals` command as a user runs it, against the real stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from referrals.settings import PROJECT_ROOT

REFERRALS = str(Path(sys.executable).parent / "referrals")


def run(*args: str, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([REFERRALS, *args], capture_output=True, text=stdin is None, input=stdin,
                          cwd=PROJECT_ROOT, env={**os.environ, **(env or {})}, timeout=300)


def test_help_lists_every_command():
    out = run("--help").stdout
    for command in ("stack", "topics", "schemas", "validate", "demo", "api", "simulate"):
        assert command in out
    assert all(c in run("stack", "--help").stdout for c in ("up", "down", "status", "prepare", "reset"))


def test_status_says_what_runs_where(stack, settings):
    done = run("stack", "status", "--json")
    assert done.returncode == 0, done.stderr
    services = {s["name"]: s for s in json.loads(done.stdout)}
    assert services["kafka"]["address"] == settings.kafka.bootstrap
    assert services["kafka"]["version"].startswith("4.")
    assert services["redis"]["running"] and services["redis"]["answers"]


def test_second_up_is_a_no_op(stack):
    before = {s.name: s.pid for s in stack.status()}
    done = run("stack", "up")
    assert done.returncode == 0, done.stderr
    assert "kafka: already running, left as it is" in done.stderr
    assert "redis: already running, left as it is" in done.stderr
    assert {s.name: s.pid for s in stack.status()} == before


def test_demo_runs_the_simulator_through_the_gateway_and_stops_the_gateway(stack, settings):
    from deploy.local.processes import port_open

    done = run("demo", "--count", "400", "--rate", "0", "--seed", "77")
    assert done.returncode == 0, done.stderr
    assert "sent 400 events" in done.stdout and "0 rejected" in done.stdout
    assert "a friend opens it: 302 -> " in done.stdout and "visitor cookie set" in done.stdout
    assert "simulating" in done.stderr and "400/400" in done.stderr  # the progress bar
    assert not port_open(settings.gateway.host, settings.gateway.port)


def test_validate_prints_problems_as_json():
    bad = b'{"type":"order","event_id":"e","occurred_at":"2026-05-01T11:00:00","order_id":"o",' \
          b'"customer_id":"c","amount":"1.999","currency":"EUR"}'
    done = run("validate", "-", stdin=bad)
    assert done.returncode == 1
    rules = {(p["field"], p["rule"]) for p in json.loads(done.stdout)["errors"]}
    assert rules == {("occurred_at", "timezone_required")}
    good = bad.replace(b'11:00:00"', b'11:00:00Z"').replace(b"1.999", b"1.99")
    done = run("validate", "-", stdin=good)
    assert done.returncode == 0
    assert json.loads(done.stdout)["amount"] == "1.99"


def test_bad_configuration_is_reported_not_a_traceback():
    done = run("stack", "status", env={"REFERRALS_REDIS__PORT": "seventy"})
    assert done.returncode == 2
    assert "invalid configuration" in done.stderr and "redis.port" in done.stderr
    assert "Traceback" not in done.stderr


def test_codes_issue_is_stable_and_resolves(stack, unique_name):
    customer = unique_name("cust")
    first = run("codes", "issue", customer, "--campaign", "spring")
    assert first.returncode == 0, first.stderr
    issued = json.loads(first.stdout)
    assert issued["newly_issued"] and issued["share_url"].endswith(f"/r/{issued['referral_code']}")
    again = json.loads(run("codes", "issue", customer, "--campaign", "spring").stdout)
    assert again["referral_code"] == issued["referral_code"] and not again["newly_issued"]
    owner = json.loads(run("codes", "resolve", issued["referral_code"].lower()).stdout)
    assert owner == {"referrer_id": customer, "campaign_id": "spring"}
    assert run("codes", "resolve", "NOTACODE00").returncode == 1
    from producers.code_registry import CodeRegistry
    from referrals.settings import Settings

    CodeRegistry.from_settings(Settings()).forget(customer)
