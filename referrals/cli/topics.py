"""``referrals topics``: the project's Kafka topics."""

from __future__ import annotations

import typer

from referrals.cli.common import fail, settings
from referrals.kafka_admin import TopicMismatch, ensure_topics, project_topics
from schemas.topics import ALL

app = typer.Typer(help="The project's Kafka topics.",
                  no_args_is_help=True, add_completion=False)


@app.command("create")
def create(
    partitions: int = typer.Option(None, help="partitions per topic (default: REFERRALS_KAFKA__PARTITIONS, 6)"),
) -> None:
    """Create every topic of the project (existing ones are checked, not changed)."""
    own = settings()
    try:
        states = ensure_topics(own, project_topics(own), partitions)
    except TopicMismatch as exc:
        fail(str(exc))
    for state in states:
        typer.echo(f"{state.name:<24} {state.partitions} partitions  {'created' if state.created else 'exists'}")


@app.command("list")
def list_topics() -> None:
    """Every topic of the project with its partition key and why."""
    for spec in ALL:
        typer.echo(f"{spec.name:<24} key={spec.key_field:<13} {spec.why}")
