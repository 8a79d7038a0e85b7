"""``referrals status``, ``rebuild`` and ``erase``: what operators run against a running pipeline."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from consumers.erasure_command import erase
from consumers.ops_status import gather
from consumers.rebuild import rebuild
from consumers.story_keeper import rebuild_stories
from referrals.cli.common import campaigns, fail, settings

status_app = typer.Typer(add_completion=False)
rebuild_app = typer.Typer(add_completion=False)
erase_app = typer.Typer(add_completion=False)


@status_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Stack, topics, consumer lag, worker heartbeats and dead letters; exit 1 unless Kafka, Redis and every
    topic are there."""
    own = settings()
    report = gather(own, datetime.now(UTC))
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        raise typer.Exit(0 if report.healthy else 1)
    console = Console()
    console.print(f"kafka  {own.kafka.bootstrap}: {report.kafka}")
    console.print(f"redis  {own.redis.host}:{own.redis.port}: {report.redis}"
                  + (f" (live view {report.view_prefix!r})" if report.view_prefix else ""))
    console.print(f"topics {report.topics_present} present"
                  + (f", missing: {', '.join(report.topics_missing)} (run `referrals topics create`)"
                     if report.topics_missing else ""))
    console.print(f"group  {report.group}: {report.group_state or '?'}, {report.group_members} members")
    lag = Table(title="consumer lag (records not processed yet)")
    lag.add_column("topic")
    lag.add_column("lag", justify="right")
    for topic, n in sorted(report.lag.items()):
        lag.add_row(topic, str(n))
    console.print(lag)
    workers = Table(title="worker heartbeats")
    for column in ("worker", "last seen", "events", "partitions"):
        workers.add_column(column, justify="left" if column == "worker" else "right")
    for w in report.workers:
        workers.add_row(w["worker"], f"{w['seen_s_ago']:.0f} s ago", str(w["events"]), str(w["partitions"]))
    console.print(workers if report.workers else "no worker heartbeats (no worker ran within the last hour)")
    console.print(f"dead letters: {report.deadletter_records if report.deadletter_records is not None else '?'} "
                  "records in the topic"
                  + "".join(f"\n  {k}: {n}" for k, n in sorted(report.deadletters.items())))
    raise typer.Exit(0 if report.healthy else 1)


@rebuild_app.command("rebuild")
def rebuild_views(
    source: str = typer.Option("changelog", "--from", help="changelog (complete, whatever the retention) or log "
                               "(replay the referrer stage's input topics through the pure stage)"),
    switch: bool = typer.Option(True, "--switch/--no-switch", help="make the new view live"),
    keep_old: bool = typer.Option(False, "--keep-old", help="do not delete the old view's keys"),
) -> None:
    """Recompute every Redis view from Kafka into a fresh key prefix, check it against the reward events, and
    switch readers and workers over to it; then write every customer's story again from the logs."""
    if source not in ("changelog", "log"):
        fail("--from must be changelog or log", code=2)
    own = settings()
    book = campaigns(own)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, advance: int, total: int | None) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task("reading Kafka" if phase == "read" else "writing Redis", total=total)
            elif total is not None:
                bar.update(tasks[phase], total=total)
            bar.advance(tasks[phase], advance)

        result = rebuild(own, book, source=source, switch=switch, keep_old=keep_old,  # type: ignore[arg-type]
                         progress=progress)
    typer.echo(f"rebuilt {result.referrers} referrers from {result.records_read} records ({result.source}) into "
               f"{result.new_prefix!r}")
    if result.rewards_differing:
        typer.echo(f"warning: {len(result.rewards_differing)} of {result.rewards_checked} rewards differ from the "
                   "reward events (events still in flight?), e.g. "
                   + ", ".join(f"{k}: rebuilt {v[0]}, events {v[1]}" for k, v in
                               list(result.rewards_differing.items())[:3]))
    else:
        typer.echo(f"all {result.rewards_checked} rewards agree with the reward events (referrals.rewards)")
    if result.switched:
        typer.echo(f"switched: the live view is now {result.new_prefix!r} (was {result.old_prefix!r}); "
                   f"{result.old_keys_deleted} old keys deleted")
    else:
        typer.echo(f"not switched: the live view is still {result.old_prefix!r}")
        return
    deleted, read = rebuild_stories(own, book)
    typer.echo(f"stories: {deleted} keys deleted and written again from {read} records of the referral facts and "
               "the reward log (what they retain)")


@erase_app.command("erase")
def erase_customer(
    customer_id: str = typer.Argument(..., help="the customer's id, as the shop sends it"),
    yes: bool = typer.Option(False, "--yes", help="do not ask"),
    wait: float = typer.Option(120.0, help="how long to wait for the worker to carry it out (seconds)"),
) -> None:
    """GDPR erasure: the customer's personal data leaves the views, tables and codes; their points and
    referrals stay in the books under a pseudonym; an audit record is written."""
    if not yes and not typer.confirm("Erase this customer? This cannot be undone."):
        raise typer.Exit(1)
    result = erase(settings(), customer_id, wait_s=wait)
    typer.echo(f"erasure {result.erasure_id}: {result.status}; pseudonym {result.pseudonym}; "
               f"{result.codes_removed} referral codes removed; audit record {result.audit_id}")
    if result.status != "complete":
        typer.echo("the worker has not carried it out yet (is it running?); it will when it runs")
        raise typer.Exit(3)
