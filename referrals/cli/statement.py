"""``referrals statement``: every reward change of a campaign in a period, as CSV, for finance."""

from __future__ import annotations

import sys
from pathlib import Path

import redis
import typer
from kafka.errors import KafkaError

from consumers.statement import Period, PeriodError, statement_csv
from referrals.cli.common import echo, fail, settings
from referrals.redis_client import redis_client

app = typer.Typer(add_completion=False)


@app.command("statement")
def statement(
    campaign: str = typer.Argument("default", help="the campaign id"),
    start: str = typer.Option(..., "--from", help="first day (YYYY-MM-DD, UTC) or time (RFC 3339), inclusive"),
    end: str = typer.Option(..., "--to", help="end day or time, exclusive: --from 2026-03-01 --to 2026-04-01 is March"),
    out: Path | None = typer.Option(None, "--out", help="write the CSV here (default: standard output)"),
) -> None:
    """Every change of the campaign's rewards with its event time in the period, from the reward log, each change
    once, then a total row per status (rewards that reached it, their points). The same CSV as the read API's
    /v1/campaigns/{campaign}/statement.csv."""
    own = settings()
    try:
        period = Period.parse(start, end)
    except PeriodError as exc:
        fail(str(exc), code=2)
    try:
        chunks = statement_csv(own, redis_client(own), campaign, period)
        target = out.open("w", encoding="utf-8", newline="") if out else sys.stdout
        try:
            for chunk in chunks:
                target.write(chunk)
        finally:
            if out:
                target.close()
    except (KafkaError, redis.RedisError) as exc:
        fail(f"the statement could not be read ({type(exc).__name__}: {exc}); is the stack up?")
    if out:
        echo(f"statement written to {out}")
