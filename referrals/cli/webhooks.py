"""``referrals dispatcher`` and ``referrals webhooks list|replay|test``: outbound webhooks (docs/webhooks.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path

import typer
from prometheus_client import start_http_server

from referrals.cli.common import campaigns, echo, fail, settings
from referrals.redis_client import redis_client
from referrals.settings import Settings, WebhookEndpoint

dispatcher_app = typer.Typer(add_completion=False)
app = typer.Typer(help="Outbound webhooks: dead deliveries listed and sent again, a signed test event.",
                  no_args_is_help=True, add_completion=False)


def _endpoint(own: Settings, name: str) -> WebhookEndpoint:
    try:
        return own.webhooks.endpoint(name)
    except KeyError as exc:
        fail(str(exc.args[0]), code=2)


@dispatcher_app.command("dispatcher")
def dispatcher(loglevel: str = typer.Option("info", help="error, warning, info or debug")) -> None:
    """POST every reward and attribution change to the endpoints that subscribed to it, signed, retried, in
    order per reward; keep the reward book the fulfilment call is checked against, and every customer's story."""
    from consumers.webhooks.dispatcher import dispatch

    own = settings()
    book = campaigns(own)  # the story tells each decision with its campaign's values
    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aiokafka", "kafka"):  # their connection chatter; warnings and errors stay
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if own.webhooks.metrics_port:
        start_http_server(own.webhooks.metrics_port, addr=own.webhooks.metrics_host)
        echo(f"metrics on http://{own.webhooks.metrics_host}:{own.webhooks.metrics_port}/metrics")
    if own.webhooks.endpoints:
        echo("dispatching to " + ", ".join(e.name for e in own.webhooks.endpoints))
    else:  # a compose stack without endpoints yet: the reward book only, not restarted in a loop
        echo("no webhook endpoints configured (REFERRALS_WEBHOOKS__ENDPOINTS, docs/webhooks.md): keeping the reward "
             "book only")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await dispatch(own, stop, book)

    asyncio.run(main())


@app.command("list")
def list_dead(
    endpoint: str | None = typer.Argument(None, help="only this endpoint's"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line, the payload included"),
    limit: int = typer.Option(0, help="show only the last N (0: all)"),
) -> None:
    """The dead deliveries: which change, to which endpoint, why it died, and whether it was replayed."""
    from consumers.webhooks.dead_deliveries import read_dead, replayed_ids

    own = settings()
    if endpoint is not None:
        _endpoint(own, endpoint)
    found = read_dead(own, endpoint)
    found = found[-limit:] if limit else found
    client = redis_client(own)
    replayed = {name: replayed_ids(own, client, name) for name in {d.delivery.endpoint for d in found}}
    for dead in found:
        d = dead.delivery
        done = dead.id in replayed[d.endpoint]
        if as_json:
            typer.echo(json.dumps({"id": dead.id, "replayed": done, **d.model_dump(mode="json")}))
            continue
        answer = f"status {d.last_status}" if d.last_status is not None else (d.last_error or "-")
        typer.echo(f"{dead.id:>8}  {d.dead_at.isoformat()[:19]}  {d.endpoint}  {d.event_type}  {d.webhook_id}  "
                   f"{d.cause} after {d.attempts} attempts (last: {answer}){'  replayed' if done else ''}")
    if not as_json:
        typer.echo(f"{len(found)} dead deliveries, {sum(dead.id in replayed[dead.delivery.endpoint] for dead in found)}"
                   " replayed")


@app.command("replay")
def replay_dead(
    endpoint: str = typer.Argument(..., help="the endpoint whose dead deliveries are sent again"),
    again: bool = typer.Option(False, "--again", help="send those replayed before as well"),
) -> None:
    """Send an endpoint's dead deliveries again, in their order, to the endpoint as configured now."""
    from consumers.webhooks.dead_deliveries import replay

    own = settings()
    outcomes = replay(own, _endpoint(own, endpoint), redis_client(own), again=again)
    for o in outcomes:
        typer.echo(f"{o.id:>8}  {o.result:<9}  {o.detail}")
    counts = {r: sum(o.result == r for o in outcomes) for r in ("delivered", "failed", "waiting", "skipped")}
    typer.echo(", ".join(f"{n} {r}" for r, n in counts.items()))
    raise typer.Exit(1 if counts["failed"] or counts["waiting"] else 0)


@app.command("test")
def test_endpoint(endpoint: str = typer.Argument(..., help="the endpoint to send a signed test event to")) -> None:
    """Send a signed ``webhook.test`` event to an endpoint and show its answer."""
    from consumers.webhooks.dead_deliveries import send_test

    own = settings()
    probe = send_test(own, _endpoint(own, endpoint))
    ok = probe.status is not None and 200 <= probe.status < 300
    typer.echo(f"{endpoint}: {probe.detail} in {probe.seconds * 1000:.0f} ms (webhook-id {probe.webhook_id})")
    raise typer.Exit(0 if ok else 1)


@app.command("receive")
def receive(
    endpoint: str = typer.Argument(..., help="the configured endpoint to play: its URL's port and path, its secrets"),
    out: Path = typer.Option(Path("webhooks-received.jsonl"), help="where each delivery is appended, as a JSON line"),
    host: str = typer.Option("127.0.0.1", help="the address to listen on"),
) -> None:
    """A local endpoint that verifies each delivery's signature and notes it (to try the webhooks; the demo's)."""
    from consumers.webhooks.receiver import serve

    own = settings()
    configured = _endpoint(own, endpoint)
    echo(f"receiving {endpoint} at {configured.url}, deliveries to {out}; GET /healthz")
    serve(configured.keys(), configured.url, out, host, echo=lambda line: typer.echo(line))
