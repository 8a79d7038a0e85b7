"""``referrals api``: the HTTP gateway (events in, referral links, the read API)."""

from __future__ import annotations

import logging

import typer
import uvicorn
from prometheus_client import start_http_server

from producers.gateway.app import create_app
from referrals.cli.common import echo, settings

app = typer.Typer(add_completion=False)


@app.command("api")
def api(
    host: str = typer.Option(None, help="bind address (default REFERRALS_GATEWAY__HOST, 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default REFERRALS_GATEWAY__PORT, 8080)"),
) -> None:
    """Run the HTTP gateway: POST /v1/events, referral links /r/{code}, /healthz, /readyz, /docs."""
    own = settings()
    if not own.gateway.api_keys and not own.gateway.webhook_secrets:
        echo("warning: no API keys or webhook secrets configured: every POST /v1/events gets 401 "
             "(set REFERRALS_GATEWAY__API_KEYS)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    if own.gateway.metrics_port:
        start_http_server(own.gateway.metrics_port, addr=own.gateway.metrics_host)
    uvicorn.run(
        create_app(own), host=host or own.gateway.host, port=port or own.gateway.port,
        access_log=False, log_level="info", server_header=False,
    )
