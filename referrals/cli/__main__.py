"""``python -m referrals.cli``: what the worker's, the gateway's and the tests' child processes run."""

from referrals.cli import app

app(prog_name="referrals")
