"""The `referrals` command: every command loads from its own module, and only the one that runs."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from referrals.cli import COMMANDS, app


def test_every_command_loads_under_its_name_with_its_help():
    runner = CliRunner()
    listing = runner.invoke(app, ["--help"])
    assert listing.exit_code == 0, listing.output
    for name in COMMANDS:
        assert f" {name} " in listing.output
        shown = runner.invoke(app, [name, "--help"], prog_name="referrals")
        assert shown.exit_code == 0, shown.output
        assert f"referrals {name}" in shown.output and "--install-completion" not in shown.output


def test_an_unknown_command_is_refused_and_no_command_shows_the_help():
    runner = CliRunner()
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2
    bare = runner.invoke(app, [])
    assert bare.exit_code == 2 and "stack" in bare.output


def test_a_command_imports_its_own_module_only():
    probe = ("import sys\nfrom referrals.cli import app\napp(['topics', 'list'], standalone_mode=False)\n"
             "print(sorted(m for m in ('faust', 'uvicorn', 'producers.gateway.app', 'consumers.rebuild', "
             "'referrals.cli.demo') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "referrals.shares" in done.stdout and done.stdout.strip().endswith("[]"), done.stdout


def test_tokens_issue_prints_a_token_the_gateway_accepts_and_refuses_a_key_that_is_not_publishable(monkeypatch):
    import json
    import time

    from referrals.customer_tokens import verify

    secret = "ts_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    monkeypatch.setenv("REFERRALS_GATEWAY__API_KEYS", json.dumps([
        {"name": "web", "key": "pk_live_a1b2c3d4e5f6g7h8", "publishable": True, "types": ["share"],
         "token_secret": secret},
        {"name": "shop", "key": "sk_live_a1b2c3d4e5f6g7h8", "types": ["order"]}]))
    runner = CliRunner()
    done = runner.invoke(app, ["tokens", "issue", "cust-eva", "--key", "web", "--ttl", "600"])
    assert done.exit_code == 0, done.output
    printed = json.loads(done.output)
    assert printed["header"] == "X-Customer-Token" and 590 <= printed["expires"] - time.time() <= 600
    assert verify(printed["token"], secret=secret, key_name="web", now=time.time(), max_ttl_s=86400) == "cust-eva"
    for args in (["--key", "shop"], ["--key", "nobody"], ["--key", "web", "--ttl", "90000"]):
        refused = runner.invoke(app, ["tokens", "issue", "cust-eva", *args])
        assert refused.exit_code == 1, refused.output
