"""``referrals exporter``: the pipeline's metrics for Prometheus."""

from __future__ import annotations

import logging

import typer

from consumers.exporter import serve
from referrals.cli.common import campaigns, echo, settings

app = typer.Typer(add_completion=False)


@app.command("exporter")
def exporter() -> None:
    """Serve the pipeline's funnel, rewards, rejections, dead letters and consumer lag for Prometheus."""
    own = settings()
    book = campaigns(own)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    echo(f"metrics on http://{own.exporter.host}:{own.exporter.port}/metrics")
    serve(own, book)
