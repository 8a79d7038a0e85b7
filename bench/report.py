"""Figures of repeated runs (median, min, max), the targets they are held against, the JSON file and
the table. Pure apart from ``machine()`` and ``write()``."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

# what a run can measure, in the order it measures it (`python -m bench run --only`)
SECTIONS = ("raw", "pipeline", "gateway", "growth", "history", "influencer", "story", "variants")


@dataclass
class Figure:
    name: str
    unit: str
    values: list[float]
    bound: str = ""  # the raw limit or condition the figure is read against
    target: str = ""  # e.g. ">= 20000"
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def met(self) -> bool | None:
        if not self.target:
            return None
        op, _, number = self.target.partition(" ")
        limit = float(number)
        return self.median >= limit if op == ">=" else self.median <= limit

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "median": self.median, "min": min(self.values),
                "max": max(self.values), "runs": self.values, "bound": self.bound, "target": self.target,
                "met": self.met(), "note": self.note}


@dataclass
class Report:
    started_at: str
    mode: str
    configuration: dict[str, Any]
    machine: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    finished_at: str = ""

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def get(self, name: str) -> Figure:
        return next(f for f in self.figures if f.name == name)

    def as_json(self) -> dict[str, Any]:
        return {"started_at": self.started_at, "finished_at": self.finished_at, "mode": self.mode,
                "machine": self.machine, "configuration": self.configuration,
                "figures": [f.as_json() for f in self.figures]}


def repeat(runs: int, measure: Callable[[], Any]) -> list[Any]:
    return [measure() for _ in range(runs)]


def machine(versions: dict[str, str]) -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        memory = psutil.virtual_memory().total
    except ImportError:  # pragma: no cover
        memory = 0
    packages = {name: version(name) for name in ("faust-streaming", "aiokafka", "kafka-python", "redis", "pydantic",
                                                 "fastapi", "uvicorn")}
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": memory, "kernel": platform.release(),
            "python": platform.python_version(), "packages": packages, **versions}


def table_rows(report: Report) -> list[tuple[str, str, str, str, str, str]]:
    """(figure, median, min .. max, unit, target, met) for each figure."""
    rows = []
    for f in report.figures:
        met = f.met()
        rows.append((f.name, _fmt(f.median), f"{_fmt(min(f.values))} .. {_fmt(max(f.values))}", f.unit,
                     f.target or f.bound, "" if met is None else ("yes" if met else "NO")))
    return rows


def _fmt(x: float) -> str:
    if x != x:  # NaN
        return "n/a"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.1f}"
    return f"{x:.3f}"


def markdown(report: Report) -> str:
    lines = ["| figure | median | min .. max | unit | target / bound | met |", "|---|---:|---:|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in table_rows(report)]
    return "\n".join(lines)


def write(report: Report, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    day = datetime.fromisoformat(report.started_at).astimezone(UTC).strftime("%Y-%m-%d")
    suffix = "" if report.mode == "full" else f"-{report.mode}"
    sections = report.configuration.get("sections")
    if sections and set(sections) != set(SECTIONS):  # a partial run does not overwrite the whole one
        suffix += "-" + "-".join(sections)
    path = folder / f"{day}{suffix}.json"
    path.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    return path
