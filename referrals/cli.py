"""`referrals`: one command for everything the project offers.

Built with Typer, so every sub-command documents itself under ``--help``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer

from referrals.settings import Settings

app = typer.Typer(
    help="referral-pipeline: event-driven referral tracking on Kafka, Faust and Redis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals can hold keys and secrets
)
stack_app = typer.Typer(help="The local stack: a real Kafka 4 broker (KRaft) and Redis.", no_args_is_help=True)
topics_app = typer.Typer(help="The project's Kafka topics.", no_args_is_help=True)
schemas_app = typer.Typer(help="Event contracts as JSON Schema files.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")


def _settings() -> Settings:
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        _fail(f"invalid configuration:\n{exc}", code=2)
        raise  # unreachable: _fail exits


def _echo(message: str) -> None:
    typer.echo(message, err=True)


def _stack(settings: Settings):
    from deploy.local.stack import LocalStack

    return LocalStack(settings)


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _print_status(statuses) -> None:
    typer.echo(f"{'service':<6} {'state':<13} {'address':<16} {'pid':<11} {'version':<8} logs")
    for status in statuses:
        typer.echo(status.line())


@stack_app.command("prepare")
def stack_prepare(
    test_tools: bool = typer.Option(False, "--test-tools", help="also install what the tests need (docker-compose)"),
) -> None:
    """Install what the stack needs (Debian packages, Kafka jars via Maven) without starting it."""
    from deploy.local.processes import StackError

    try:
        _stack(_settings()).prepare(test_tools=test_tools, echo=_echo)
    except StackError as exc:
        _fail(str(exc))


@stack_app.command("up")
def stack_up() -> None:
    """Start Kafka and Redis unless they already run (a second `up` changes nothing)."""
    from deploy.local.processes import StackError

    stack = _stack(_settings())
    try:
        started = stack.up(echo=_echo)
    except StackError as exc:
        _fail(str(exc))
    for name, now in started.items():
        _echo(f"{name}: {'started' if now else 'already running, left as it is'}")
    _print_status(stack.status())


@stack_app.command("down")
def stack_down() -> None:
    """Stop what `stack up` started, and nothing else."""
    stopped = _stack(_settings()).down()
    for name, was in stopped.items():
        _echo(f"{name}: {'stopped' if was else 'was not running'}")


@stack_app.command("status")
def stack_status(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Say what runs where (exit 0 when everything answers, 3 otherwise)."""
    statuses = _stack(_settings()).status()
    if as_json:
        typer.echo(json.dumps([s.as_dict() for s in statuses], indent=2))
    else:
        _print_status(statuses)
    if not all(s.running and s.answers for s in statuses):
        raise typer.Exit(3)


@stack_app.command("reset")
def stack_reset(yes: bool = typer.Option(False, "--yes", help="do not ask")) -> None:
    """Stop the stack and delete its data (topics, offsets, Redis state). Keeps the downloaded jars."""
    if not yes:
        typer.confirm("Delete all local Kafka and Redis data?", abort=True)
    _stack(_settings()).reset()
    _echo("local stack stopped and its data deleted")


@topics_app.command("create")
def topics_create(
    partitions: int = typer.Option(None, help="partitions per topic (default: REFERRALS_KAFKA__PARTITIONS, 6)"),
) -> None:
    """Create every topic of the project (existing ones are checked, not changed)."""
    from referrals.kafka_admin import TopicMismatch, ensure_topics, project_topics

    settings = _settings()
    try:
        states = ensure_topics(settings, project_topics(settings), partitions)
    except TopicMismatch as exc:
        _fail(str(exc))
    for state in states:
        typer.echo(f"{state.name:<24} {state.partitions} partitions  {'created' if state.created else 'exists'}")


@topics_app.command("list")
def topics_list() -> None:
    """Every topic of the project with its partition key and why."""
    from schemas.topics import ALL

    for spec in ALL:
        typer.echo(f"{spec.name:<24} key={spec.key_field:<13} {spec.why}")


@schemas_app.command("export")
def schemas_export() -> None:
    """Write schemas/jsonschema/*.json from the pydantic models."""
    from schemas.jsonschema_export import export

    for path in export():
        typer.echo(str(path))


@schemas_app.command("check")
def schemas_check() -> None:
    """Fail when the committed JSON Schema files differ from the models."""
    from schemas.jsonschema_export import stale

    out = stale()
    if out:
        _fail(f"out of date: {', '.join(out)}; run `referrals schemas export`")
    typer.echo("JSON Schema files are up to date")


@app.command("validate")
def validate(path: str = typer.Argument(..., help="a file with one JSON event, or - for standard input")) -> None:
    """Validate one event against the contracts and print every problem as JSON."""
    import sys

    from schemas.parsing import EventRejected, parse_event_json

    raw = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    try:
        event = parse_event_json(raw)
    except EventRejected as exc:
        typer.echo(json.dumps({"errors": exc.as_json()}, indent=2))
        raise typer.Exit(1) from None
    typer.echo(event.model_dump_json(indent=2, exclude_none=True))


@app.command("api")
def api(
    host: str = typer.Option(None, help="bind address (default REFERRALS_GATEWAY__HOST, 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default REFERRALS_GATEWAY__PORT, 8080)"),
) -> None:
    """Run the HTTP gateway: POST /v1/events, referral links /r/{code}, /healthz, /readyz, /docs."""
    import logging

    import uvicorn

    from producers.gateway.app import create_app

    settings = _settings()
    if not settings.gateway.api_keys and not settings.gateway.webhook_secrets:
        _echo("warning: no API keys or webhook secrets configured: every POST /v1/events gets 401 "
              "(set REFERRALS_GATEWAY__API_KEYS)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    uvicorn.run(
        create_app(settings), host=host or settings.gateway.host, port=port or settings.gateway.port,
        access_log=False, log_level="info", server_header=False,
    )


@app.command("demo")
def demo() -> None:
    """Start the stack, create the topics, send one referral story through Kafka and read it back."""
    from kafka import KafkaConsumer, TopicPartition

    from deploy.local.processes import StackError
    from producers.publisher import EventPublisher
    from producers.samples import referral_story
    from referrals.kafka_admin import ensure_topics, project_topics
    from schemas.parsing import parse_event_json

    settings = _settings()
    stack = _stack(settings)
    try:
        stack.up(echo=_echo)
    except StackError as exc:
        _fail(str(exc))
    _print_status(stack.status())
    ensure_topics(settings, project_topics(settings))
    _echo("topics ready: " + ", ".join(project_topics(settings)))

    run = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    events = referral_story(datetime.now(UTC), prefix=f"demo-{run}")
    with EventPublisher(settings, source="referrals-demo") as publisher:
        acks = publisher.publish(events)
    typer.echo("\nproduced (acknowledged by Kafka):")
    for event, meta in zip(events, acks, strict=True):
        typer.echo(f"  {event.type:<7} -> {meta.topic}[{meta.partition}]@{meta.offset}")  # type: ignore[attr-defined]

    typer.echo("\nread back:")
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, enable_auto_commit=False)
    try:
        for event, meta in zip(events, acks, strict=True):
            tp = TopicPartition(meta.topic, meta.partition)
            consumer.assign([tp])
            consumer.seek(tp, meta.offset)
            record = next(iter(consumer.poll(timeout_ms=10000, max_records=1).get(tp, [])), None)
            if record is None:
                _fail(f"could not read back {meta.topic}[{meta.partition}]@{meta.offset}")
            back = parse_event_json(record.value)
            headers = dict(record.headers)
            typer.echo(
                f"  {meta.topic:<20} ce_type={headers['ce_type'].decode():<33} "
                f"ce_id={headers['ce_id'].decode()} valid={back == event}"
            )
    finally:
        consumer.close()
    typer.echo(
        "\nThe stack keeps running: `referrals stack status`, `referrals stack down` to stop it."
        "\n(Attribution, rewards, counters and metrics arrive with the stream, consumer and API issues.)"
    )


if __name__ == "__main__":
    app()
