"""``referrals simulate``: realistic referral traffic, to the gateway or straight to Kafka."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from producers.simulate import (
    GatewayTarget,
    KafkaTarget,
    SimulationError,
    Summary,
    new_simulation,
    register_codes,
    run,
)
from producers.simulator import Simulation, SimulationConfig
from referrals.cli.common import fail, settings
from referrals.settings import Settings

app = typer.Typer(add_completion=False)


def run_simulation(settings: Settings, *, to: str, gateway_url: str | None, rate: float, count: int | None,
                   duration: float | None, seed: int, customers: int, time_compression: float, campaign: str,
                   simulation: Simulation | None = None) -> Summary:
    """Send the simulated events with a progress bar, then print what was sent by type and channel."""
    config = SimulationConfig(customers=customers, time_compression=time_compression, campaign_id=campaign)
    try:
        target = (GatewayTarget(settings, gateway_url or f"http://{settings.gateway.host}:{settings.gateway.port}")
                  if to == "gateway" else KafkaTarget(settings))
    except SimulationError as exc:
        fail(str(exc))
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

            def report(summary: Summary, live_rate: float) -> None:
                progress.update(task, completed=summary.sent + summary.rejected if total else None, rate=live_rate)

            summary = run(config, seed=seed, target=target, rate=rate, count=count, duration_s=duration,
                          on_progress=report, simulation=simulation)
            if total:
                progress.update(task, completed=summary.sent + summary.rejected)
    except SimulationError as exc:
        fail(str(exc))
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
        fail("--to is gateway or kafka", code=2)
    if count is None and duration is None:
        fail("give --count or --duration", code=2)
    run_simulation(settings(), to=to, gateway_url=gateway_url, rate=rate, count=count, duration=duration, seed=seed,
                   customers=customers, time_compression=time_compression, campaign=campaign)
