"""``referrals demo``: the whole pipeline on the local stack, with simulated traffic, and where to look."""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.table import Table

from consumers.live_counters import funnel, funnel_by_stage, top_referrers
from consumers.webhooks.signing import new_secret
from deploy.local.processes import free_port, port_open
from deploy.local.service_process import (
    DispatcherProcess,
    ExporterProcess,
    GatewayProcess,
    ReceiverProcess,
    ServiceFailed,
)
from deploy.local.stack import LocalStack
from deploy.local.worker_process import WorkerFailed, WorkerProcess
from producers.simulate import backdated_simulation
from producers.simulator import SimulationConfig
from referrals.cli.common import echo, fail, settings
from referrals.cli.simulate import run_simulation
from referrals.cli.stack import up
from referrals.code_registry import CodeRegistry
from referrals.kafka_admin import ensure_topics, group_lag, project_topics
from referrals.redis_client import redis_client
from referrals.settings import ApiKey, Settings, WebhookEndpoint, changed
from schemas.topics import ATTRIBUTIONS, REWARDS
from streams.redis_views import active_layout
from streams.topology import input_topics, worker_topics

app = typer.Typer(add_completion=False)


def start_worker(settings: Settings, worker: WorkerProcess | None = None, *, started: bool = False) -> WorkerProcess:
    """``referrals worker`` in the background, until Faust says it is ready (with ``started``: ``worker`` was
    started again already, only the wait)."""
    worker = worker or WorkerProcess(settings, settings.state_dir / "worker-demo.log", max_restarts=3)
    if not started:
        worker.start()
    try:
        worker.wait_ready(90)
    except WorkerFailed as exc:
        fail(f"the stream worker did not start: {exc}")
    echo(f"stream worker ready (group {settings.streams.app_id}, log: {worker.log})")
    return worker


def wait_for_worker(settings: Settings, worker: WorkerProcess, timeout_s: float = 180.0) -> None:
    """Until the worker has committed everything on its topics, twice, a clock tick apart. A worker that
    stopped itself (its guards: see docs/worker.md) is started again, as a restart policy would, up to 3 times."""
    topics = input_topics(settings)
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while quiet < 2:
        restarts = worker.restarts
        try:
            worker.keep_alive()
        except WorkerFailed as exc:
            fail(f"the stream worker stopped: {exc}")
        if worker.restarts != restarts:
            echo("the stream worker stopped itself (see its log); started it again")
            start_worker(settings, worker, started=True)
            continue
        if time.monotonic() > deadline:
            fail(f"the stream worker did not catch up within {timeout_s:.0f} s")
        lag = group_lag(settings, settings.streams.app_id, topics)
        quiet = quiet + 1 if lag == 0 else 0
        time.sleep(max(settings.streams.tick_interval_s, 1.0) + 1.0 if lag == 0 else 1.0)


def show_read_api_and_metrics(settings: Settings, url: str, read_key: str) -> None:
    """One answer of the read API and a few lines of the exporter's metrics, with where to find the rest."""
    with redis_client(settings) as client:
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
        story_url = f"{url}/v1/customers/{top[0].referrer_id}/story"
        steps: list = []
        for _ in range(20):  # the dispatcher's story keeper may be a moment behind the worker
            steps = [s for s in httpx.get(story_url, params={"limit": 200}, timeout=10,
                                          headers={**auth, "Accept-Language": "de"}).json()["steps"]
                     if s["kind"] in ("referral", "reward")]
            if steps:
                break
            time.sleep(0.5)
        held = [s for s in steps if s["kind"] == "reward" and s.get("status") == "held_for_review"]
        shown = "\n  ".join(f"{s['at'][:10]} {s['text']}" for s in steps[:4] + held[:1])
        typer.echo(f"\nthe story in plain words (German): GET {story_url}, or referrals explain "
                   f"{top[0].referrer_id} --language de\n  {shown}")
    exporter = f"http://{settings.exporter.host}:{settings.exporter.port}/metrics"
    lines = [line for line in httpx.get(exporter, timeout=30).text.splitlines()
             if line.startswith("referral_funnel_events_total{") and 'channel="whatsapp"' in line]
    typer.echo(f"\nmetrics: {exporter} (funnel, rewards, rejections, dead letters, consumer lag), e.g.\n  "
               + "\n  ".join(lines))
    typer.echo(
        f"\nWhere to look:\n"
        f"  read API        {url}/docs (GET /v1/referrers/{{id}}, /v1/customers/{{id}}/story, "
        "/v1/campaigns/{{id}}/funnel, .../leaderboard, .../statement.csv; a key with read: true)\n"
        f"  metrics         exporter {exporter}, gateway http://{settings.gateway.metrics_host}:"
        f"{settings.gateway.metrics_port}/metrics, worker http://{settings.streams.metrics_host}:"
        f"{settings.streams.metrics_port}/metrics\n"
        "  Grafana         docker compose -f deploy/docker-compose.yml up -d, then http://localhost:3000"
        " (dashboards: Referral funnel, Rewards, Fraud and quality, Pipeline health)\n"
        "  health          referrals status; dead letters: referrals deadletter list")


def wait_for_webhooks(settings: Settings, dispatcher: DispatcherProcess, endpoint: str,
                      timeout_s: float = 120.0) -> None:
    """Until the dispatcher has settled (delivered, or dead) every reward and attribution change for ``endpoint``."""
    from consumers.webhooks.dispatcher import group_id

    topics = [settings.kafka.topic_prefix + t.name for t in (REWARDS, ATTRIBUTIONS)]
    deadline = time.monotonic() + timeout_s
    while group_lag(settings, group_id(settings, endpoint), topics):
        if not dispatcher.running:
            fail(f"the webhook dispatcher stopped:\n{dispatcher.tail()}")
        if time.monotonic() > deadline:
            fail(f"the webhook dispatcher did not deliver everything within {timeout_s:.0f} s (log: {dispatcher.log})")
        time.sleep(1.0)


def show_webhooks(endpoint: WebhookEndpoint, received: Path) -> None:
    """What the demo's shop endpoint received in this run, by type, and one delivery."""
    lines = [json.loads(line) for line in received.read_text().splitlines()] if received.exists() else []
    kinds = Counter(line["type"] for line in lines)
    typer.echo(f"\nwebhooks: {len(lines)} signed deliveries to {endpoint.name} at {endpoint.url} in this run "
               f"(each signature verified by the receiver): "
               + (", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())) or "none new (delivered in earlier runs)"))
    confirmed = next((line for line in lines if line["type"] == "reward.confirmed"), None)
    if confirmed:
        typer.echo(f"  e.g. {json.dumps(confirmed)}")
    typer.echo(f"  all of them: {received}; dead deliveries: referrals webhooks list")


def show_live_counters(settings: Settings, campaign: str = "default") -> None:
    with redis_client(settings) as client:
        layout = active_layout(client, settings.redis.key_prefix, settings.kafka.partitions)
        stages = funnel_by_stage(funnel(client, layout, campaign))
        leaders = top_referrers(client, layout, campaign, 10)
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
    for line in leaders:
        top.add_row(line.referrer_id, str(line.confirmed_referrals), str(line.signups), str(line.conversions),
                    " / ".join(str(line.points[s]) for s in ("pending", "confirmed", "revoked")),
                    ", ".join(f"{k} x{v}" for k, v in sorted(line.withheld.items())) or "-")
    console.print(top)
    console.print("Channel 'unknown': referrals attributed by a code (signup or checkout), not by a click.")


@app.command("demo")
def demo(
    count: int = typer.Option(3000, help="how many simulated events to send through the gateway"),
    days: float = typer.Option(40.0, help="the simulated events spread over this many past days"),
    seed: int = typer.Option(1, help="simulator seed (the same seed again: the same events, counted once)"),
    keep_running: bool = typer.Option(False, "--keep-running", help="leave gateway, worker and exporter running "
                                      "afterwards, to open their metrics and the read API yourself"),
) -> None:
    """The whole pipeline: stack, gateway, stream worker, exporter, webhook dispatcher and a local receiver,
    simulated traffic, the live counters from Redis, the read API, the metrics and the webhooks received."""
    own = settings()
    up(LocalStack(own))
    ensure_topics(own, project_topics(own) + worker_topics(own))
    echo("topics ready: " + ", ".join(worker_topics(own)))

    # Keys of this demo run only: the gateway gets them from its environment, like in production.
    keys = [{"name": "demo-app", "key": secrets.token_urlsafe(24), "types": ["share", "click", "signup"]},
            {"name": "demo-shop", "key": secrets.token_urlsafe(24), "types": ["signup", "order", "refund"]},
            {"name": "demo-support", "key": secrets.token_urlsafe(24), "read": True}]
    own = changed(own, gateway={"api_keys": [ApiKey(**k) for k in keys]})
    gw = own.gateway
    url = f"http://{gw.host}:{gw.port}"
    # A shop's webhook endpoint for this run: the dispatcher signs with its secret, the receiver verifies
    hook_port = free_port()
    hook = WebhookEndpoint(name="demo-shop", url=f"http://127.0.0.1:{hook_port}/hooks/referrals",
                           secret=new_secret(),
                           types=frozenset({"reward.pending", "reward.confirmed", "reward.revoked", "reward.capped",
                                            "reward.held_for_review", "referral.attributed"}))
    own = changed(own, webhooks={"endpoints": [hook]})
    hooks_env = {"REFERRALS_WEBHOOKS__ENDPOINTS": json.dumps([hook.revealed()])}
    for what, host, port, variable in (
            ("gateway", gw.host, gw.port, "REFERRALS_GATEWAY__PORT"),
            ("gateway metrics", gw.metrics_host, gw.metrics_port, "REFERRALS_GATEWAY__METRICS_PORT"),
            ("worker metrics", own.streams.metrics_host, own.streams.metrics_port,
             "REFERRALS_STREAMS__METRICS_PORT"),
            ("exporter", own.exporter.host, own.exporter.port, "REFERRALS_EXPORTER__PORT"),
            ("webhook dispatcher metrics", own.webhooks.metrics_host, own.webhooks.metrics_port,
             "REFERRALS_WEBHOOKS__METRICS_PORT")):
        if port and port_open(host, port):
            fail(f"port {port} ({what}) is taken: stop what runs there (an earlier `demo --keep-running`?) "
                 f"or set {variable}")
    gateway = GatewayProcess(gw.port, own.state_dir / "gateway-demo.log", host=gw.host,
                             env={"REFERRALS_GATEWAY__API_KEYS": json.dumps(keys)})
    exporter = ExporterProcess(own.exporter.host, own.exporter.port, own.state_dir / "exporter-demo.log")
    received = own.state_dir / "webhooks-demo.jsonl"
    received.unlink(missing_ok=True)
    receiver = ReceiverProcess(hook.name, hook_port, received,
                               own.state_dir / "receiver-demo.log", env=hooks_env)
    dispatcher = DispatcherProcess(own.webhooks.metrics_host, own.webhooks.metrics_port,
                                   own.state_dir / "dispatcher-demo.log", env=hooks_env)
    worker = None
    try:
        try:
            gateway.start(ready_within_s=30)
            receiver.start(ready_within_s=30)
            dispatcher.start(ready_within_s=60)
        except ServiceFailed as exc:
            fail(str(exc))
        echo(f"gateway ready at {url} (OpenAPI: {url}/docs, log: {gateway.log})")
        echo(f"webhook dispatcher ready, delivering to {hook.url} (logs: {dispatcher.log}, {receiver.log})")

        issued = CodeRegistry.from_settings(own).issue("demo-anna", "default")
        share_url = f"{gw.public_url.rstrip('/')}/r/{issued.code}?c=whatsapp"
        hop = httpx.get(share_url, follow_redirects=False, timeout=10)
        typer.echo(f"\ncustomer demo-anna shares {share_url}")
        typer.echo(f"  a friend opens it: {hop.status_code} -> {hop.headers.get('location')}, "
                   f"visitor cookie {'set' if 'set-cookie' in hop.headers else 'missing'}, click on referrals.clicks\n")

        worker = start_worker(own)
        simulation = backdated_simulation(SimulationConfig(customers=300), seed=seed, count=count, days=days,
                                          now=datetime.now(UTC))
        summary = run_simulation(own, to="gateway", gateway_url=url, rate=0, count=count, duration=None,
                                 seed=seed, customers=300, time_compression=1.0, campaign="default",
                                 simulation=simulation)
        if summary.rejected:
            fail(f"{summary.rejected} simulated events were rejected by the gateway: {summary.errors[:3]}")
        wait_for_worker(own, worker)
        wait_for_webhooks(own, dispatcher, hook.name)
        try:
            exporter.start()
        except ServiceFailed as exc:
            fail(str(exc))
        echo(f"exporter ready at {exporter.ready_url} (log: {exporter.log})")
        show_live_counters(own)
        show_read_api_and_metrics(own, url, keys[2]["key"])
        show_webhooks(hook, received)
    finally:
        if not keep_running:
            exporter.stop()
            dispatcher.stop()
            receiver.stop()
            gateway.stop()
            if worker is not None:
                worker.stop()
    if keep_running:
        running = [s.proc for s in (exporter, gateway, dispatcher, receiver) if s.running] + ([worker.current] if worker else [])
        typer.echo(f"\nStill running (pids {' '.join(str(p.pid) for p in running if p.poll() is None)}): open the "
                   "URLs above; stop them with `kill <pids>`.\nThe read key of this run: " + keys[2]["key"])
    typer.echo(
        "\nEvery event above was acknowledged by Kafka before the gateway answered 202; the worker decided"
        "\nattributions, rewards and counters from them (run `make demo` again: nothing is counted twice)."
        "\nThe stack keeps running: `referrals stack status`; stop it with `referrals stack down`."
    )
