"""`python -m bench` (what `make bench` runs): the benchmark suite on the real local stack.

Writes ``bench/results/<date>[-quick|-smoke].json`` and prints the table. ``--quick`` runs
100,000 events instead of 1,000,000 and leaves out the 1M-customer growth step; ``--smoke``
runs a few thousand events once (what the test suite runs so that the benchmark cannot rot).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from bench.report import markdown, table_rows, write
from bench.suite import FULL, QUICK, SECTIONS, SMOKE, Suite
from deploy.local.stack import LocalStack
from referrals.settings import PROJECT_ROOT, Settings

app = typer.Typer(add_completion=False, help=__doc__)
console = Console(width=160)


@app.command()
def run(
    quick: bool = typer.Option(False, "--quick", help="100,000 events; growth up to 100,000 customers"),
    smoke: bool = typer.Option(False, "--smoke", help="a few thousand events, one run: does it all still work"),
    runs: int = typer.Option(None, min=1, help="runs per figure (default 3; 1 with --smoke)"),
    out: Path = typer.Option(PROJECT_ROOT / "bench" / "results", help="folder of the JSON results"),
    work_dir: Path = typer.Option(None, help="worker and gateway logs (default <state>/bench)"),
    only: list[str] = typer.Option(None, help=f"run only these sections ({', '.join(SECTIONS)}); repeatable"),
    growth: list[int] = typer.Option(None, help="customers in state for the growth section; repeatable"),
) -> None:
    sizes = SMOKE if smoke else QUICK if quick else FULL
    if runs is not None:
        sizes = replace(sizes, runs=runs)
    if growth:
        sizes = replace(sizes, growth_customers=tuple(growth))
    unknown = set(only or ()) - set(SECTIONS)
    if unknown:
        raise typer.BadParameter(f"no section {', '.join(sorted(unknown))}; sections: {', '.join(SECTIONS)}")
    settings = Settings()
    suite = Suite(settings, sizes, work_dir or settings.state_dir / "bench", echo=lambda m: console.print(f"· {m}"),
                  sections=tuple(only) if only else SECTIONS)
    report = suite.run()
    path = write(report, out)
    table = Table(title=f"referral-pipeline benchmark ({report.mode}, {sizes.runs} runs each), {report.started_at}")
    for column in ("figure", "median", "min .. max", "unit", "target / bound", "met"):
        table.add_column(column, justify="left" if column in ("figure", "unit", "target / bound") else "right")
    for row in table_rows(report):
        table.add_row(*row)
    console.print(table)
    console.print(f"machine: {report.machine['cpu']}, {report.machine['cores']} cores; written to {path}")
    (path.with_suffix(".md")).write_text(markdown(report) + "\n")


def package_table(process: str, summary) -> Table:
    table = Table(title=f"{process} main thread, {summary.samples} samples: self time by package")
    table.add_column("package")
    table.add_column("share", justify="right")
    for name, pct in summary.share(summary.by_package, 15):
        table.add_row(name, f"{pct:.1f} %")
    return table


@app.command()
def profile(
    events: int = typer.Option(30_000, help="simulated events preloaded for the profiled run"),
    customers: int = typer.Option(3_000),
    out: Path = typer.Option(None, help="py-spy's collapsed stacks (default <state>/bench/profile-<time>.txt)"),
) -> None:
    """One throughput run of the worker under py-spy (50 samples/s): where the event loop's time goes."""
    from datetime import UTC, datetime

    from bench import pipeline_bench, workload
    from bench.profile_summary import summarise
    from deploy.local.processes import free_port

    settings = Settings()
    LocalStack(settings).up(echo=lambda m: console.print(f"· {m}"))
    work_dir = settings.state_dir / "bench"
    out = out or work_dir / f"profile-{datetime.now(UTC):%Y%m%dT%H%M%S}.txt"
    load = workload.build(events, customers)
    result = pipeline_bench.throughput(settings, load, metrics_port=free_port(), label="profile", work_dir=work_dir,
                                       profile=out, restart=False)
    console.print(f"{result.events_per_s:,.0f} events/s under the profiler ({result.us_per_event:,.0f} µs/event)")
    summary = summarise(out.read_text().splitlines())
    console.print(package_table("worker", summary))
    table = Table(title="inclusive time of the pipeline's own functions and Faust's heaviest parts")
    table.add_column("function")
    table.add_column("share", justify="right")
    shown = 0
    for name, pct in summary.share(summary.inclusive, 400):
        if shown < 30 and any(k in name for k in ("app.py", "stages.py", "counters.py", "parsing.py", "base.py",
                                                  "producer.py", "consumer.py", "streams.py", "codecs.py")):
            table.add_row(name, f"{pct:.1f} %")
            shown += 1
    console.print(table)
    console.print(f"collapsed stacks: {out} (flamegraph.pl or speedscope.app read them)")


@app.command("profile-gateway")
def profile_gateway(
    seconds: int = typer.Option(15, help="how long wrk keeps the gateway saturated"),
    batch: int = typer.Option(1, help="events per request"),
) -> None:
    """The gateway at saturation (wrk) under py-spy: where its event loop's time goes."""
    import subprocess
    import sys
    from datetime import UTC, datetime

    from bench import gateway_bench
    from bench.profile_summary import summarise
    from deploy.local.processes import free_port

    settings = Settings()
    LocalStack(settings).up(echo=lambda m: console.print(f"· {m}"))
    work_dir = settings.state_dir / "bench"
    out = work_dir / f"profile-gateway-{datetime.now(UTC):%Y%m%dT%H%M%S}.txt"
    gateway, _run = gateway_bench.gateway_run(settings, free_port(), work_dir)
    try:
        assert gateway.proc is not None
        spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw", "-o",
                                str(out), "--rate", "100", "--subprocesses", "--pid", str(gateway.proc.pid),
                                "--duration", str(seconds)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        connections = gateway_bench.SINGLE_CONNECTIONS if batch == 1 else gateway_bench.BATCH_CONNECTIONS
        result = gateway_bench.saturation(gateway, batch=batch, seconds=seconds, connections=connections,
                                          work_dir=work_dir)
        spy.wait(timeout=seconds + 60)
    finally:
        gateway.stop()
    console.print(f"{result.requests_per_s:,.0f} requests/s, {result.events_per_s:,.0f} events/s under the profiler")
    console.print(package_table("gateway", summarise(out.read_text().splitlines())))
    console.print(f"collapsed stacks: {out}")


@app.command()
def census(
    events: int = typer.Option(1_000_000, help="events of the pipeline section's workload"),
    customers: int = typer.Option(10_000, help="the base's signups, the workload's first events (the bench's)"),
    at: list[int] = typer.Option(None, help="a census after this many events; repeatable (default: after the "
                                 "first tenth, four tenths and all)"),
    out: Path = typer.Option(None, help="also write the censuses to this text file"),
) -> None:
    """What the referrer records hold in memory, field by field, in process (no Kafka, no Redis): an instrument
    for #17, not a figure of `make bench` (bench/record_census.py says what it counts)."""
    from bench import record_census

    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        console.print(line, highlight=False)

    record_census.run(events, at or (events // 10, 4 * events // 10, events), customers=customers, echo=echo)
    if out is not None:
        out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    app()
