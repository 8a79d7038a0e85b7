"""``referrals schemas`` (the event contracts as JSON Schema files) and ``referrals validate`` (one event
against them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from referrals.cli.common import fail
from schemas.jsonschema_export import export as export_schemas
from schemas.jsonschema_export import stale
from schemas.parsing import EventRejected, parse_event_json

app = typer.Typer(help="Event contracts as JSON Schema files.",
                  no_args_is_help=True, add_completion=False)
validate_app = typer.Typer(add_completion=False)


@app.command("export")
def export() -> None:
    """Write schemas/jsonschema/*.json from the pydantic models."""
    for path in export_schemas():
        typer.echo(str(path))


@app.command("check")
def check() -> None:
    """Fail when the committed JSON Schema files differ from the models."""
    out = stale()
    if out:
        fail(f"out of date: {', '.join(out)}; run `referrals schemas export`")
    typer.echo("JSON Schema files are up to date")


@validate_app.command("validate")
def validate(path: str = typer.Argument(..., help="a file with one JSON event, or - for standard input")) -> None:
    """Validate one event against the contracts and print every problem as JSON."""
    raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    try:
        event = parse_event_json(raw)
    except EventRejected as exc:
        typer.echo(json.dumps({"errors": exc.as_json()}, indent=2))
        raise typer.Exit(1) from None
    typer.echo(event.model_dump_json(indent=2, exclude_none=True))
