"""The `referrals` command as a user runs it, against the real stack."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from referrals.settings import PROJECT_ROOT, changed

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


def _tables(stdout: str) -> str:
    return stdout[stdout.index("referral funnel"):stdout.index("Every event above")]


def _funnel_rows(tables: str) -> dict[str, list[int]]:
    """channel -> [share, click, signup, conversion] from the printed funnel table."""
    rows = {}
    for line in tables[:tables.index("top referrers")].splitlines():
        cells = line.replace("│", " ").split()
        if len(cells) == 5 and all(c.isdigit() for c in cells[1:]):
            rows[cells[0]] = [int(c) for c in cells[1:]]
    return rows


def test_demo_runs_the_whole_pipeline_shows_redis_counters_and_counts_nothing_twice(stack, settings, unique_name):
    from deploy.local.processes import port_open
    from referrals.kafka_admin import delete_topics
    from schemas.topics import FULFILMENTS, WEBHOOK_DEADLETTER
    from streams.topology import changelog_topics, worker_topics

    tag = unique_name("demo").replace(".", "-")
    own = {"REFERRALS_KAFKA__TOPIC_PREFIX": tag + ".", "REFERRALS_REDIS__KEY_PREFIX": tag + ":",
           "REFERRALS_STREAMS__APP_ID": tag}
    try:
        done = run("demo", "--count", "600", "--seed", "77", env=own)
        assert done.returncode == 0, done.stderr
        assert "sent 600 events" in done.stdout and "0 rejected" in done.stdout
        assert "a friend opens it: 302 -> " in done.stdout and "visitor cookie set" in done.stdout
        assert "simulating" in done.stderr and "600/600" in done.stderr  # the progress bar
        assert "stream worker ready" in done.stderr
        tables = _tables(done.stdout)
        first = _funnel_rows(tables)
        shares, clicks, signups, _ = first["total"]
        assert shares > clicks > signups > 0
        assert "top referrers" in tables and "s77-cust-" in tables
        # the read API answered for the top referrer, the exporter served the funnel, and the pointers are shown
        assert "read API: GET http://" in tables and "points {'pending':" in tables
        assert 'referral_funnel_events_total{campaign="default",channel="whatsapp",stage="share"}' in tables
        assert "Where to look:" in tables and "localhost:3000" in tables
        # the dispatcher delivered the run's reward changes to the demo's receiver, which verified each one
        delivered = re.search(r"webhooks: (\d+) signed deliveries to demo-shop at http://127.0.0.1:\d+/hooks/referrals "
                              r"in this run \(each signature verified by the receiver\): (.*)", tables)
        assert delivered and int(delivered.group(1)) > 0, tables[-2000:]
        assert "reward.pending x" in delivered.group(2) and "referral.attributed x" in delivered.group(2)
        assert not port_open(settings.gateway.host, settings.gateway.port)
        assert not port_open(settings.exporter.host, settings.exporter.port)
        assert not port_open(settings.webhooks.metrics_host, settings.webhooks.metrics_port)
        running = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.replace(tag, "")
        assert "referrals.cli worker" not in running and "referrals.cli exporter" not in running  # stopped
        assert "referrals.cli dispatcher" not in running and "referrals.cli webhooks" not in running
        again = run("demo", "--count", "600", "--seed", "77", env=own)
        assert again.returncode == 0, again.stderr
        # The same simulated events again change no counter; the demo's own link is followed once more
        # by a new visitor: one more WhatsApp click, nothing else.
        second = _funnel_rows(_tables(again.stdout))
        first["whatsapp"][1] += 1
        first["total"][1] += 1
        assert second == first
    finally:
        own_settings = changed(settings, kafka={"topic_prefix": tag + "."}, streams={"app_id": tag})
        delete_topics(settings, worker_topics(own_settings) + changelog_topics(own_settings)
                      + [f"{tag}-__assignor-__leader", f"{tag}.{WEBHOOK_DEADLETTER.name}", f"{tag}.{FULFILMENTS.name}"])


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
    from referrals.code_registry import CodeRegistry
    from referrals.settings import Settings

    CodeRegistry.from_settings(Settings()).forget(customer)


def test_worker_refuses_a_bad_campaign_file_naming_the_key(tmp_path):
    bad = tmp_path / "campaigns.toml"
    example = (PROJECT_ROOT / "deploy" / "campaigns" / "example.toml").read_text()
    bad.write_text(example.replace("hold_period_days = 14", 'hold_period_days = "two weeks"'))
    done = run("worker", env={"REFERRALS_STREAMS__CAMPAIGNS_FILE": str(bad)})
    assert done.returncode == 2
    assert "campaign file is not usable" in done.stderr and "hold_period_days" in done.stderr
    assert "Traceback" not in done.stderr
