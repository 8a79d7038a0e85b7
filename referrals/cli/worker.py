"""``referrals worker``: the stream worker (Faust)."""

from __future__ import annotations

import logging

import typer

from referrals.cli.common import campaigns, settings
from streams.app import run_worker

app = typer.Typer(add_completion=False)


@app.command("worker")
def worker(loglevel: str = typer.Option("warn", help="crit, error, warn, info or debug")) -> None:
    """Run the stream worker: attribution, rewards, fraud checks and live counters (Faust)."""
    own = settings()
    book = campaigns(own)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    run_worker(own, book, loglevel=loglevel)
