"""``referrals api``: the HTTP gateway (events in, referral links, the read API)."""

from __future__ import annotations

import logging
import os

import typer
import uvicorn
from fastapi import FastAPI
from prometheus_client import start_http_server

from consumers.read_api import read_router
from consumers.webhooks.fulfilment_api import fulfilment_router
from producers.gateway.app import create_app
from producers.gateway.kafka_sink import KafkaSink, SinkUnavailable
from producers.gateway.processes import prepare_metrics, stop_when_orphaned
from referrals.cli.common import echo, settings
from referrals.http_auth import KeyRing
from referrals.redis_client import redis_client
from referrals.settings import Settings

app = typer.Typer(add_completion=False)


def http_app(settings: Settings) -> FastAPI:
    """What ``referrals api`` serves: the gateway's routes (events in, links, health), the read API's and the
    fulfilment call's, one application over one Redis connection pool and one Kafka producer."""
    connection = redis_client(settings)
    keys = KeyRing(settings.gateway.api_keys)
    sink = KafkaSink(settings)
    return create_app(settings, sink=sink, redis_connection=connection, routers=[
        read_router(settings, keys, connection),
        fulfilment_router(settings, keys, connection, sink.send, SinkUnavailable)])


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def app_from_environment() -> FastAPI:
    """One worker process's application (uvicorn's factory): settings from the environment, as its
    supervisor's."""
    _logging()
    stop_when_orphaned()
    return http_app(Settings())


@app.command("api")
def api(
    host: str = typer.Option(None, help="bind address (default REFERRALS_GATEWAY__HOST, 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default REFERRALS_GATEWAY__PORT, 8080)"),
    processes: int = typer.Option(None, min=1, help="worker processes (default REFERRALS_GATEWAY__PROCESSES, "
                                  "the number of cores)"),
) -> None:
    """Run the HTTP gateway: POST /v1/events, referral links /r/{code}, /healthz, /readyz, /docs."""
    own = settings()
    if processes is not None:
        os.environ["REFERRALS_GATEWAY__PROCESSES"] = str(processes)  # the workers build their settings alike
        own = settings()
    if not own.gateway.api_keys and not own.gateway.webhook_secrets:
        echo("warning: no API keys or webhook secrets configured: every POST /v1/events gets 401 "
             "(set REFERRALS_GATEWAY__API_KEYS)")
    _logging()
    host, port = host or own.gateway.host, port or own.gateway.port
    served = {"host": host, "port": port, "access_log": False, "log_level": "info", "server_header": False}
    if own.gateway.processes == 1:
        if own.gateway.metrics_port:
            start_http_server(own.gateway.metrics_port, addr=own.gateway.metrics_host)
        uvicorn.run(http_app(own), **served)
        return
    prepare_metrics(own, port)
    echo(f"gateway: {own.gateway.processes} processes on {host}:{port}")
    uvicorn.run("referrals.cli.api:app_from_environment", factory=True, workers=own.gateway.processes, **served)
