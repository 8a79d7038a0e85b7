"""``referrals deadletter``: the records the worker refused, listed and, fixed, re-injected."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from consumers.deadletters import read_letters, replay
from referrals.cli.common import fail, settings
from referrals.redis_client import redis_client

app = typer.Typer(help="Records the worker refused: list them, re-inject fixed ones.",
                  no_args_is_help=True, add_completion=False)


@app.command("list")
def list_letters(
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line, with the original value "
                                 "(the form `deadletter replay` takes back)"),
    limit: int = typer.Option(0, help="show only the last N (0: all)"),
) -> None:
    """The dead-letter topic: where each refused record came from, and why."""
    own = settings()
    letters = read_letters(own)
    letters = letters[-limit:] if limit else letters
    for letter in letters:
        data = letter.as_json(own.kafka.topic_prefix)
        if as_json:
            typer.echo(json.dumps(data))
        else:
            typer.echo(f"{data['id']:>8}  {data['received_at'][:19]}  {data['source_topic']}[{data['source_partition']}]"
                       f"@{data['source_offset']}  {data['reason']}: "
                       + "; ".join(p.get("message", "") for p in data["problems"])[:160])
    if not as_json:
        typer.echo(f"{len(letters)} dead letters")


@app.command("replay")
def replay_letters(
    path: str = typer.Argument(..., help="JSON lines as `deadletter list --json` prints them, values fixed; - for "
                               "standard input"),
    again: bool = typer.Option(False, "--again", help="replay letters that were replayed before"),
) -> None:
    """Re-inject fixed dead letters into their source topics; each checked against the contract first."""
    own = settings()
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    try:
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        fail(f"not JSON lines: {exc}", code=2)
    outcomes = replay(own, lines, redis_client(own), again=again)
    for o in outcomes:
        typer.echo(f"{o.id:>8}  {o.result:<8}  {o.detail}")
    counts = {r: sum(o.result == r for o in outcomes) for r in ("replayed", "skipped", "invalid")}
    typer.echo(", ".join(f"{n} {r}" for r, n in counts.items()))
    raise typer.Exit(1 if counts["invalid"] else 0)
