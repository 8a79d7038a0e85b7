"""``referrals stack``: the local stack, a real Kafka 4 broker (KRaft) and Redis."""

from __future__ import annotations

import json

import typer

from deploy.local.processes import StackError
from deploy.local.service_status import ServiceStatus
from deploy.local.stack import LocalStack
from referrals.cli.common import echo, fail, settings
from referrals.settings import changed

app = typer.Typer(help="The local stack: a real Kafka 4 broker (KRaft) and Redis.",
                  no_args_is_help=True, add_completion=False)


def print_status(statuses: list[ServiceStatus]) -> None:
    typer.echo(f"{'service':<7} {'state':<13} {'address':<16} {'pid':<11} {'version':<8} logs")
    for status in statuses:
        typer.echo(status.line())


def up(stack: LocalStack) -> None:
    """Start the stack (or find it running) and say what runs where; a clear failure otherwise."""
    try:
        started = stack.up(echo=echo)
    except StackError as exc:
        fail(str(exc))
    for name, now in started.items():
        echo(f"{name}: {'started' if now else 'already running, left as it is'}")
    print_status(stack.status())


@app.command("prepare")
def prepare(
    test_tools: bool = typer.Option(False, "--test-tools", help="also install what the tests need (docker-compose)"),
) -> None:
    """Install what the stack needs (Debian packages, Kafka jars via Maven) without starting it."""
    try:
        LocalStack(settings()).prepare(test_tools=test_tools, echo=echo)
    except StackError as exc:
        fail(str(exc))


@app.command("up")
def stack_up(
    brokers: int | None = typer.Option(None, "--brokers", min=1, max=5, help="Kafka nodes (default: kafka.brokers, "
                                       "1); clients need REFERRALS_KAFKA__BROKERS set to the same"),
) -> None:
    """Start Kafka and Redis unless they already run (a second `up` changes nothing)."""
    own = settings()
    if brokers is not None and brokers != own.kafka.brokers:
        try:
            own = changed(own, kafka={"brokers": brokers})
        except ValueError as exc:
            fail(str(exc))
        echo(f"{brokers} brokers: export REFERRALS_KAFKA__BROKERS={brokers} for every client and `stack status` "
             f"(bootstrap {own.kafka.bootstrap}; topics replicated {own.kafka.replicas} times, min.insync.replicas "
             f"{own.kafka.min_isr})")
    up(LocalStack(own))


@app.command("down")
def down() -> None:
    """Stop what `stack up` started, and nothing else."""
    for name, was in LocalStack(settings()).down().items():
        echo(f"{name}: {'stopped' if was else 'was not running'}")


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Say what runs where (exit 0 when everything answers, 3 otherwise)."""
    statuses = LocalStack(settings()).status()
    if as_json:
        typer.echo(json.dumps([s.as_dict() for s in statuses], indent=2))
    else:
        print_status(statuses)
    if not all(s.running and s.answers for s in statuses):
        raise typer.Exit(3)


@app.command("reset")
def reset(yes: bool = typer.Option(False, "--yes", help="do not ask")) -> None:
    """Stop the stack and delete its data (topics, offsets, Redis state). Keeps the downloaded jars."""
    if not yes:
        typer.confirm("Delete all local Kafka and Redis data?", abort=True)
    LocalStack(settings()).reset()
    echo("local stack stopped and its data deleted")
