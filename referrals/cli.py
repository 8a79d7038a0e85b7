"""`referrals`: one command for everything the project offers.

Built with Typer, so every sub-command documents itself under ``--help``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer

from referrals.settings import ApiKey, Settings, changed

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
codes_app = typer.Typer(help="Referral codes: issue and resolve (kept in Redis).", no_args_is_help=True)
app.add_typer(codes_app, name="codes")
deadletter_app = typer.Typer(help="Records the worker refused: list them, re-inject fixed ones.",
                             no_args_is_help=True)
app.add_typer(deadletter_app, name="deadletter")


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


@codes_app.command("issue")
def codes_issue(
    customer_id: str = typer.Argument(..., help="the referrer"),
    campaign: str = typer.Option("default", help="campaign id"),
) -> None:
    """Print the customer's referral code and share URL for the campaign, issuing one if needed."""
    import redis

    from producers.code_registry import CodeRegistry

    settings = _settings()
    try:
        issued = CodeRegistry.from_settings(settings).issue(customer_id, campaign)
    except redis.RedisError as exc:
        _fail(f"Redis is not reachable ({exc}); is the stack up?")
    typer.echo(json.dumps({"referral_code": issued.code, "campaign_id": issued.campaign_id,
                           "share_url": f"{settings.gateway.public_url.rstrip('/')}/r/{issued.code}",
                           "newly_issued": issued.new}))


@codes_app.command("resolve")
def codes_resolve(code: str = typer.Argument(..., help="a referral code as typed")) -> None:
    """Print who owns a code (exit 1 for an unknown or malformed code)."""
    from producers.code_registry import CodeRegistry

    owner = CodeRegistry.from_settings(_settings()).resolve(code)
    if owner is None:
        _fail("unknown or malformed referral code")
    typer.echo(json.dumps({"referrer_id": owner.referrer_id, "campaign_id": owner.campaign_id}))


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


def _start_worker(settings: Settings, worker=None):
    """``referrals worker`` in the background, until Faust says it is ready (again, with ``worker``: a
    ``WorkerProcess`` already started once)."""
    from deploy.local.worker_process import WorkerFailed, WorkerProcess

    worker = worker or WorkerProcess(settings, settings.state_dir / "worker-demo.log", max_restarts=3)
    worker.start()
    try:
        worker.wait_ready(90)
    except WorkerFailed as exc:
        _fail(f"the stream worker did not start: {exc}")
    _echo(f"stream worker ready (group {settings.streams.app_id}, log: {worker.log})")
    return worker


def _wait_for_worker(settings: Settings, worker, timeout_s: float = 180.0) -> None:
    """Until the worker has committed everything on its topics, twice, a clock tick apart. A worker that
    stopped itself (its guards: see the README) is started again, as a restart policy would, up to 3 times."""
    import time

    from deploy.local.worker_process import WorkerFailed
    from referrals.kafka_admin import group_lag
    from schemas.topics import INBOUND, INTERNAL

    topics = [settings.kafka.topic_prefix + s.name for s in (*INBOUND, *INTERNAL)]
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while quiet < 2:
        if worker.restartable(worker.current.poll()):
            worker.restarts += 1
            _echo("the stream worker stopped itself (see its log); starting it again")
            _start_worker(settings, worker)
            continue
        try:
            worker.assert_alive()
        except WorkerFailed as exc:
            _fail(f"the stream worker stopped: {exc}")
        if time.monotonic() > deadline:
            _fail(f"the stream worker did not catch up within {timeout_s:.0f} s")
        lag = group_lag(settings, settings.streams.app_id, topics)
        quiet = quiet + 1 if lag == 0 else 0
        time.sleep(max(settings.streams.tick_interval_s, 1.0) + 1.0 if lag == 0 else 1.0)


def _show_read_api_and_metrics(settings: Settings, url: str, read_key: str) -> None:
    """One answer of the read API and a few lines of the exporter's metrics, with where to find the rest."""
    import httpx

    from consumers.live_counters import top_referrers
    from producers.code_registry import CodeRegistry
    from streams.redis_views import active_layout

    client = CodeRegistry.from_settings(settings).client
    top = top_referrers(client, active_layout(client, settings.redis.key_prefix, settings.kafka.partitions),
                        "default", 1)
    auth = {"Authorization": f"Bearer {read_key}"}
    if top:
        body = httpx.get(f"{url}/v1/referrers/{top[0].referrer_id}", headers=auth, timeout=10).json()
        withheld = sorted({r["reward"]["reason"] for r in body["referrals"] if r["reward"] and r["reward"]["reason"]}
                          | {r["reason"] for r in body["referrals"] if r["reason"]})
        typer.echo(f"\nread API: GET {url}/v1/referrers/{top[0].referrer_id}\n"
                   f"  code {body['referral_code']}, share URL {body['share_url']}\n"
                   f"  counts {body['counts']}\n  points {body['points']}\n"
                   f"  {len(body['referrals'])} referrals; reasons shown where withheld: {', '.join(withheld) or '-'}")
    exporter = f"http://{settings.exporter.host}:{settings.exporter.port}/metrics"
    lines = [line for line in httpx.get(exporter, timeout=30).text.splitlines()
             if line.startswith("referral_funnel_events_total{") and 'channel="whatsapp"' in line]
    typer.echo(f"\nmetrics: {exporter} (funnel, rewards, rejections, dead letters, consumer lag), e.g.\n  "
               + "\n  ".join(lines))
    typer.echo(
        f"\nWhere to look:\n"
        f"  read API        {url}/docs (GET /v1/referrers/{{id}}, /v1/campaigns/{{id}}/funnel, .../leaderboard;"
        " a key with read: true)\n"
        f"  metrics         exporter {exporter}, gateway http://{settings.gateway.metrics_host}:"
        f"{settings.gateway.metrics_port}/metrics, worker http://{settings.streams.metrics_host}:"
        f"{settings.streams.metrics_port}/metrics\n"
        "  Grafana         docker compose -f deploy/docker-compose.yml up -d, then http://localhost:3000"
        " (dashboards: Referral funnel, Rewards, Fraud and quality, Pipeline health)\n"
        "  health          referrals status; dead letters: referrals deadletter list")


def _show_live_counters(settings: Settings, campaign: str = "default") -> None:
    from rich.console import Console
    from rich.table import Table

    from consumers.live_counters import funnel, funnel_by_stage, top_referrers
    from producers.code_registry import CodeRegistry
    from streams.redis_views import active_layout

    client = CodeRegistry.from_settings(settings).client
    layout = active_layout(client, settings.redis.key_prefix, settings.kafka.partitions)
    stages = funnel_by_stage(funnel(client, layout, campaign))
    channels = sorted({c for per in stages.values() for c in per}, key=lambda c: -stages["share"].get(c, 0))
    table = Table(title=f"referral funnel, campaign {campaign!r}, live from Redis")
    table.add_column("channel")
    for stage in stages:
        table.add_column(stage, justify="right")
    for channel in channels:
        table.add_row(channel, *(str(per.get(channel, 0)) for per in stages.values()))
    table.add_row("total", *(str(sum(per.values())) for per in stages.values()), style="bold")
    console = Console(width=max(Console().width, 100))
    console.print(table)
    top = Table(title="top referrers: confirmed referrals, then conversions")
    for column in ("referrer", "confirmed", "signups", "conv.", "points pending/confirmed/revoked", "withheld"):
        top.add_column(column, justify="left" if column in ("referrer", "withheld") else "right")
    for line in top_referrers(client, layout, campaign, 10):
        top.add_row(line.referrer_id, str(line.confirmed_referrals), str(line.signups), str(line.conversions),
                    " / ".join(str(line.points[s]) for s in ("pending", "confirmed", "revoked")),
                    ", ".join(f"{k} x{v}" for k, v in sorted(line.withheld.items())) or "-")
    console.print(top)
    console.print("Channel 'unknown': referrals attributed by a code (signup or checkout), not by a click.")


@app.command("worker")
def worker(loglevel: str = typer.Option("warn", help="crit, error, warn, info or debug")) -> None:
    """Run the stream worker: attribution, rewards, fraud checks and live counters (Faust)."""
    import logging

    from streams.app import run_worker
    from streams.campaigns import CampaignError, load_campaigns

    settings = _settings()
    try:
        campaigns = load_campaigns(settings.streams.campaigns_file)
    except CampaignError as exc:
        _fail(f"the campaign file is not usable:\n{exc}", code=2)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    run_worker(settings, campaigns, loglevel=loglevel)


@app.command("exporter")
def exporter() -> None:
    """Serve the pipeline's funnel, rewards, rejections, dead letters and consumer lag for Prometheus."""
    import logging

    from consumers.exporter import serve
    from streams.campaigns import CampaignError, load_campaigns

    settings = _settings()
    try:
        campaigns = load_campaigns(settings.streams.campaigns_file)
    except CampaignError as exc:
        _fail(f"the campaign file is not usable:\n{exc}", code=2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    _echo(f"metrics on http://{settings.exporter.host}:{settings.exporter.port}/metrics")
    serve(settings, campaigns)


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Stack, topics, consumer lag, worker heartbeats and dead letters; exit 1 unless Kafka, Redis and every
    topic are there."""
    import json as json_lib

    from rich.console import Console
    from rich.table import Table

    from consumers.ops_status import gather

    settings = _settings()
    report = gather(settings, datetime.now(UTC))
    if as_json:
        typer.echo(json_lib.dumps(report.as_dict(), indent=2))
        raise typer.Exit(0 if report.healthy else 1)
    console = Console()
    console.print(f"kafka  {settings.kafka.bootstrap}: {report.kafka}")
    console.print(f"redis  {settings.redis.host}:{settings.redis.port}: {report.redis}"
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


@app.command("rebuild")
def rebuild_views(
    source: str = typer.Option("changelog", "--from", help="changelog (complete, whatever the retention) or log "
                               "(replay the referrer stage's input topics through the pure stage)"),
    switch: bool = typer.Option(True, "--switch/--no-switch", help="make the new view live"),
    keep_old: bool = typer.Option(False, "--keep-old", help="do not delete the old view's keys"),
) -> None:
    """Recompute every Redis view from Kafka into a fresh key prefix, check it against the reward events, and
    switch readers and workers over to it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from consumers.rebuild import rebuild
    from streams.campaigns import CampaignError, load_campaigns

    if source not in ("changelog", "log"):
        _fail("--from must be changelog or log", code=2)
    settings = _settings()
    try:
        campaigns = load_campaigns(settings.streams.campaigns_file)
    except CampaignError as exc:
        _fail(f"the campaign file is not usable:\n{exc}", code=2)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, advance: int, total: int | None) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task("reading Kafka" if phase == "read" else "writing Redis", total=total)
            elif total is not None:
                bar.update(tasks[phase], total=total)
            bar.advance(tasks[phase], advance)

        result = rebuild(settings, campaigns, source=source, switch=switch, keep_old=keep_old,  # type: ignore[arg-type]
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


@deadletter_app.command("list")
def deadletter_list(
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line, with the original value "
                                 "(the form `deadletter replay` takes back)"),
    limit: int = typer.Option(0, help="show only the last N (0: all)"),
) -> None:
    """The dead-letter topic: where each refused record came from, and why."""
    import json as json_lib

    from consumers.deadletters import read_letters

    settings = _settings()
    letters = read_letters(settings)
    letters = letters[-limit:] if limit else letters
    for letter in letters:
        data = letter.as_json(settings.kafka.topic_prefix)
        if as_json:
            typer.echo(json_lib.dumps(data))
        else:
            typer.echo(f"{data['id']:>8}  {data['received_at'][:19]}  {data['source_topic']}[{data['source_partition']}]"
                       f"@{data['source_offset']}  {data['reason']}: "
                       + "; ".join(p.get("message", "") for p in data["problems"])[:160])
    if not as_json:
        typer.echo(f"{len(letters)} dead letters")


@deadletter_app.command("replay")
def deadletter_replay(
    path: str = typer.Argument(..., help="JSON lines as `deadletter list --json` prints them, values fixed; - for "
                               "standard input"),
    again: bool = typer.Option(False, "--again", help="replay letters that were replayed before"),
) -> None:
    """Re-inject fixed dead letters into their source topics; each checked against the contract first."""
    import json as json_lib
    import sys

    from consumers.deadletters import replay
    from producers.code_registry import CodeRegistry

    settings = _settings()
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    try:
        lines = [json_lib.loads(line) for line in text.splitlines() if line.strip()]
    except json_lib.JSONDecodeError as exc:
        _fail(f"not JSON lines: {exc}", code=2)
    outcomes = replay(settings, lines, CodeRegistry.from_settings(settings).client, again=again)
    for o in outcomes:
        typer.echo(f"{o.id:>8}  {o.result:<8}  {o.detail}")
    counts = {r: sum(o.result == r for o in outcomes) for r in ("replayed", "skipped", "invalid")}
    typer.echo(", ".join(f"{n} {r}" for r, n in counts.items()))
    raise typer.Exit(1 if counts["invalid"] else 0)


@app.command("erase")
def erase_customer(
    customer_id: str = typer.Argument(..., help="the customer's id, as the shop sends it"),
    yes: bool = typer.Option(False, "--yes", help="do not ask"),
    wait: float = typer.Option(120.0, help="how long to wait for the worker to carry it out (seconds)"),
) -> None:
    """GDPR erasure: the customer's personal data leaves the views, tables and codes; their points and
    referrals stay in the books under a pseudonym; an audit record is written."""
    from consumers.erasure_command import erase

    if not yes and not typer.confirm("Erase this customer? This cannot be undone."):
        raise typer.Exit(1)
    settings = _settings()
    result = erase(settings, customer_id, wait_s=wait)
    typer.echo(f"erasure {result.erasure_id}: {result.status}; pseudonym {result.pseudonym}; "
               f"{result.codes_removed} referral codes removed; audit record {result.audit_id}")
    if result.status != "complete":
        typer.echo("the worker has not carried it out yet (is it running?); it will when it runs")
        raise typer.Exit(3)


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
    if settings.gateway.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.gateway.metrics_port, addr=settings.gateway.metrics_host)
    uvicorn.run(
        create_app(settings), host=host or settings.gateway.host, port=port or settings.gateway.port,
        access_log=False, log_level="info", server_header=False,
    )


def _simulate(settings: Settings, *, to: str, gateway_url: str | None, rate: float, count: int | None,
              duration: float | None, seed: int, customers: int, time_compression: float, campaign: str,
              simulation=None):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from producers.simulate import GatewayTarget, KafkaTarget, SimulationError, new_simulation, register_codes, run
    from producers.simulator import SimulationConfig

    config = SimulationConfig(customers=customers, time_compression=time_compression, campaign_id=campaign)
    try:
        target = (GatewayTarget(settings, gateway_url or f"http://{settings.gateway.host}:{settings.gateway.port}")
                  if to == "gateway" else KafkaTarget(settings))
    except SimulationError as exc:
        _fail(str(exc))
    console = Console(stderr=True)
    total = count
    columns = [TextColumn("[bold]simulating[/] → " + to), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]:>7.0f} events/s"), TimeElapsedColumn()]
    try:
        simulation = simulation or new_simulation(config, seed=seed, rate=rate, count=count, duration_s=duration,
                                                  now=datetime.now(UTC))
        new_codes = register_codes(settings, simulation)
        console.print(f"{len(simulation.customers)} referrers with codes ({new_codes} newly issued), seed {seed}")
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("sim", total=total or duration, rate=0.0)

            def report(summary, live_rate):
                progress.update(task, completed=summary.sent + summary.rejected if total else None, rate=live_rate)

            summary = run(config, seed=seed, target=target, rate=rate, count=count, duration_s=duration,
                          on_progress=report, simulation=simulation)
            if total:
                progress.update(task, completed=summary.sent + summary.rejected)
    except SimulationError as exc:
        _fail(str(exc))
    finally:
        target.close()
    typer.echo(f"sent {summary.sent} events in {summary.elapsed_s:.1f} s "
               f"({summary.sent / max(summary.elapsed_s, 1e-9):.0f}/s), "
               f"{summary.rejected} rejected, {summary.retries} retries")
    table = Table()
    table.add_column("type")
    table.add_column("events", justify="right")
    for kind in ("share", "click", "signup", "order", "refund"):
        table.add_row(kind, str(summary.by_type.get(kind, 0)))
    Console().print(table)
    channels = Table()
    for col in ("channel", "shares", "clicks"):
        channels.add_column(col, justify="right" if col != "channel" else "left")
    names = sorted({k.split(":", 1)[1] for k in summary.by_channel}, key=lambda c: -summary.by_channel[f"share:{c}"])
    for name in names:
        channels.add_row(name, str(summary.by_channel.get(f"share:{name}", 0)),
                         str(summary.by_channel.get(f"click:{name}", 0)))
    Console().print(channels)
    return summary


@app.command("simulate")
def simulate(
    to: str = typer.Option("gateway", help="gateway (HTTP, default) or kafka (straight to the topics)"),
    gateway_url: str = typer.Option(None, help="default http://<REFERRALS_GATEWAY__HOST>:<PORT>"),
    rate: float = typer.Option(200.0, help="events per second; 0 sends as fast as possible"),
    count: int = typer.Option(None, help="how many events"),
    duration: float = typer.Option(None, help="for how many seconds"),
    seed: int = typer.Option(1, help="the same seed gives the same events"),
    customers: int = typer.Option(1000, help="size of the customer base (the referrers)"),
    time_compression: float = typer.Option(60.0, help="divide funnel delays by this (60: minutes become seconds)"),
    campaign: str = typer.Option("default", help="campaign id on shares, clicks and codes"),
) -> None:
    """Generate realistic referral traffic (share → click → signup → order, refunds, some fraud)."""
    if to not in ("gateway", "kafka"):
        _fail("--to is gateway or kafka", code=2)
    if count is None and duration is None:
        _fail("give --count or --duration", code=2)
    _simulate(_settings(), to=to, gateway_url=gateway_url, rate=rate, count=count, duration=duration, seed=seed,
              customers=customers, time_compression=time_compression, campaign=campaign)


@app.command("demo")
def demo(
    count: int = typer.Option(3000, help="how many simulated events to send through the gateway"),
    days: float = typer.Option(40.0, help="the simulated events spread over this many past days"),
    seed: int = typer.Option(1, help="simulator seed (the same seed again: the same events, counted once)"),
    keep_running: bool = typer.Option(False, "--keep-running", help="leave gateway, worker and exporter running "
                                      "afterwards, to open their metrics and the read API yourself"),
) -> None:
    """The whole pipeline: stack, gateway, stream worker, exporter, simulated traffic, the live counters from
    Redis, the read API and the metrics."""
    import json as json_lib
    import os
    import secrets
    import signal
    import subprocess
    import sys
    import time

    import httpx

    from deploy.local.processes import StackError, port_open, tail
    from producers.code_registry import CodeRegistry
    from referrals.kafka_admin import ensure_topics, project_topics

    settings = _settings()
    stack = _stack(settings)
    try:
        stack.up(echo=_echo)
    except StackError as exc:
        _fail(str(exc))
    _print_status(stack.status())
    from streams.topology import worker_topics

    ensure_topics(settings, project_topics(settings) + worker_topics(settings))
    _echo("topics ready: " + ", ".join(worker_topics(settings)))

    # Keys of this demo run only: the gateway gets them from its environment, like in production.
    keys = [{"name": "demo-app", "key": secrets.token_urlsafe(24), "types": ["share", "click", "signup"]},
            {"name": "demo-shop", "key": secrets.token_urlsafe(24), "types": ["signup", "order", "refund"]},
            {"name": "demo-support", "key": secrets.token_urlsafe(24), "read": True}]
    settings = changed(settings, gateway={"api_keys": [ApiKey(**k) for k in keys]})
    gw = settings.gateway
    url = f"http://{gw.host}:{gw.port}"
    for what, host, port, variable in (
            ("gateway", gw.host, gw.port, "REFERRALS_GATEWAY__PORT"),
            ("gateway metrics", gw.metrics_host, gw.metrics_port, "REFERRALS_GATEWAY__METRICS_PORT"),
            ("worker metrics", settings.streams.metrics_host, settings.streams.metrics_port,
             "REFERRALS_STREAMS__METRICS_PORT"),
            ("exporter", settings.exporter.host, settings.exporter.port, "REFERRALS_EXPORTER__PORT")):
        if port and port_open(host, port):
            _fail(f"port {port} ({what}) is taken: stop what runs there (an earlier `demo --keep-running`?) "
                  f"or set {variable}")
    log_path = settings.state_dir / "gateway-demo.log"
    env = {**os.environ, "REFERRALS_GATEWAY__API_KEYS": json_lib.dumps(keys)}
    with log_path.open("ab") as log_file:
        gateway = subprocess.Popen([sys.executable, "-m", "referrals.cli", "api"], env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    processes = [gateway]
    worker = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if gateway.poll() is not None or time.monotonic() > deadline:
                _fail(f"the gateway did not become ready:\n{tail(log_path, 20)}")
            time.sleep(0.2)
        _echo(f"gateway ready at {url} (OpenAPI: {url}/docs, log: {log_path})")

        issued = CodeRegistry.from_settings(settings).issue("demo-anna", "default")
        share_url = f"{gw.public_url.rstrip('/')}/r/{issued.code}?c=whatsapp"
        hop = httpx.get(share_url, follow_redirects=False, timeout=10)
        typer.echo(f"\ncustomer demo-anna shares {share_url}")
        typer.echo(f"  a friend opens it: {hop.status_code} -> {hop.headers.get('location')}, "
                   f"visitor cookie {'set' if 'set-cookie' in hop.headers else 'missing'}, click on referrals.clicks\n")

        exporter_log = settings.state_dir / "exporter-demo.log"
        with exporter_log.open("ab") as log_file:
            processes.insert(0, subprocess.Popen([sys.executable, "-m", "referrals.cli", "exporter"], stdout=log_file,
                                                 stderr=subprocess.STDOUT, start_new_session=True))
        worker = _start_worker(settings)
        from producers.simulate import backdated_simulation
        from producers.simulator import SimulationConfig

        simulation = backdated_simulation(SimulationConfig(customers=300), seed=seed, count=count, days=days,
                                          now=datetime.now(UTC))
        summary = _simulate(settings, to="gateway", gateway_url=url, rate=0, count=count, duration=None,
                            seed=seed, customers=300, time_compression=1.0, campaign="default",
                            simulation=simulation)
        if summary.rejected:
            _fail(f"{summary.rejected} simulated events were rejected by the gateway: {summary.errors[:3]}")
        _wait_for_worker(settings, worker)
        _show_live_counters(settings)
        _show_read_api_and_metrics(settings, url, keys[2]["key"])
    finally:
        if not keep_running:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            if worker is not None:
                worker.stop()
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
    if keep_running:
        running = [p for p in processes if p.poll() is None] + ([worker.current] if worker is not None else [])
        typer.echo(f"\nStill running (pids {' '.join(str(p.pid) for p in running if p.poll() is None)}): open the "
                   "URLs above; stop them with `kill <pids>`.\nThe read key of this run: " + keys[2]["key"])
    typer.echo(
        "\nEvery event above was acknowledged by Kafka before the gateway answered 202; the worker decided"
        "\nattributions, rewards and counters from them (run `make demo` again: nothing is counted twice)."
        "\nThe stack keeps running: `referrals stack status`; stop it with `referrals stack down`."
    )


if __name__ == "__main__":
    app()
