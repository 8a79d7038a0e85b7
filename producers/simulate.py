"""`referrals simulate`: the simulator's events sent through the gateway (default) or straight to Kafka.

The shell around ``producers.simulator``: paces the stream to ``--rate``, batches, retries
what the gateway answers with 429/503 (after Retry-After; event ids make a retry
harmless), shows a progress bar with the live rate, and sums up what was sent.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from producers.simulator import Simulation, SimulationConfig
from referrals.code_registry import CodeRegistry
from referrals.publisher import EventPublisher
from referrals.settings import Settings
from schemas.parsing import parse_event
from schemas.records import inbound_record

BATCH = 100
NOMINAL_UNPACED_RATE = 1000.0  # virtual events/s when sending as fast as possible


@dataclass
class Summary:
    sent: int = 0
    rejected: int = 0
    retries: int = 0
    elapsed_s: float = 0.0
    by_type: Counter = field(default_factory=Counter)
    by_channel: Counter = field(default_factory=Counter)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, events: Iterable[dict[str, Any]]) -> None:
        for e in events:
            self.sent += 1
            self.by_type[e["type"]] += 1
            if e["type"] in ("share", "click") and e.get("channel"):
                self.by_channel[f"{e['type']}:{e['channel']}"] += 1


class SimulationError(RuntimeError):
    pass


class GatewayTarget:
    """POSTs batches to /v1/events with a secret key allowed to send each event type (the simulator plays the
    app and the shop's server at once; a publishable key would need a customer token per customer)."""

    def __init__(self, settings: Settings, url: str, max_wait_s: float = 120.0):
        self.url = url.rstrip("/") + "/v1/events"
        self.client = httpx.Client(timeout=30)
        self.max_wait_s = max_wait_s
        self.keys: dict[str, str] = {}
        for kind in ("share", "click", "signup", "order", "refund"):
            key = next((k for k in settings.gateway.api_keys if kind in k.types and not k.publishable), None)
            if key is None:
                raise SimulationError(f"no secret API key in REFERRALS_GATEWAY__API_KEYS may send {kind} events")
            self.keys[kind] = key.key.get_secret_value()

    def send(self, events: list[dict[str, Any]], summary: Summary) -> None:
        by_key: dict[str, list[dict[str, Any]]] = {}
        for e in events:
            by_key.setdefault(self.keys[e["type"]], []).append(e)
        for key, group in by_key.items():
            for i in range(0, len(group), BATCH):
                self._post(key, group[i:i + BATCH], summary)

    def _post(self, key: str, batch: list[dict[str, Any]], summary: Summary) -> None:
        waited = 0.0
        while True:
            try:
                response = self.client.post(self.url, json=batch, headers={"Authorization": f"Bearer {key}"})
            except httpx.TransportError as exc:
                status, retry_after = None, 1.0
                problem = str(exc)
            else:
                status = response.status_code
                retry_after = float(response.headers.get("Retry-After", "1"))
                problem = response.text[:500]
            if status == 202:
                summary.add(batch)
                return
            if status == 422:
                summary.rejected += len(batch)
                summary.errors.extend(response.json()["errors"][:20])
                return
            if status in (None, 429, 503) and waited < self.max_wait_s:
                summary.retries += 1
                time.sleep(retry_after)
                waited += retry_after
                continue
            raise SimulationError(f"gateway answered {status}: {problem}")

    def close(self) -> None:
        self.client.close()


class KafkaTarget:
    """Validates each event with the contracts and produces it straight to its topic."""

    def __init__(self, settings: Settings):
        self.publisher = EventPublisher(settings, source="simulator")
        self.prefix = settings.kafka.topic_prefix

    def send(self, events: list[dict[str, Any]], summary: Summary) -> None:
        records = [inbound_record(parse_event(e), "simulator", self.prefix) for e in events]
        self.publisher.send_records(records, timeout_s=60)
        summary.add(events)

    def close(self) -> None:
        self.publisher.close()


def register_codes(settings: Settings, simulation: Simulation) -> int:
    """Issue the simulated referrers' codes in the registry, so /r/<code> and the agents resolve them."""
    registry = CodeRegistry.from_settings(settings)
    created = 0
    customers = simulation.customers
    for i in range(0, len(customers), 1000):
        chunk = customers[i:i + 1000]
        issued = registry.claim_many([(c.customer_id, c.code, simulation.config.campaign_id) for c in chunk])
        for customer, code in zip(chunk, issued, strict=True):
            if code.code != customer.code:
                raise SimulationError(f"{customer.customer_id} already holds another code; use another --seed")
            created += code.new
    return created


def new_simulation(
    config: SimulationConfig, *, seed: int, rate: float, count: int | None, duration_s: float | None,
    now: datetime,
) -> Simulation:
    """A simulation whose virtual clock fits the run: paced runs start now; unpaced runs are back-dated by
    their expected span, so no event lies in the future when it is sent."""
    nominal = rate if rate > 0 else NOMINAL_UNPACED_RATE
    span = (count or nominal * (duration_s or 0)) / nominal
    start = now if rate > 0 else now - timedelta(seconds=span)
    return Simulation(config, seed, start, nominal / config.events_per_share())


def backdated_simulation(config: SimulationConfig, *, seed: int, count: int, days: float, now: datetime) -> Simulation:
    """A simulation whose first ``count`` events spread over about the last ``days`` (in real time, no
    compression), ending well before ``now``: old enough that some hold periods have already ended."""
    span_s = days * 86400.0
    share_rate = count / (0.8 * span_s) / config.events_per_share()
    return Simulation(config, seed, now - timedelta(seconds=span_s), share_rate)


def run(
    simulation_config: SimulationConfig,
    *,
    seed: int,
    target: GatewayTarget | KafkaTarget,
    rate: float,
    count: int | None,
    duration_s: float | None,
    on_progress: Callable[[Summary, float], None] = lambda s, r: None,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    simulation: Simulation | None = None,
) -> Summary:
    """Send ``count`` events (or for ``duration_s``) at ``rate`` events/s (0: as fast as possible)."""
    if count is None and duration_s is None:
        raise SimulationError("give --count or --duration")
    paced = rate > 0
    if simulation is None:
        simulation = new_simulation(simulation_config, seed=seed, rate=rate, count=count, duration_s=duration_s,
                                    now=now())
    summary = Summary()
    began = clock()
    pending: list[dict[str, Any]] = []
    last_report = began
    stream = simulation.events()
    lookahead: tuple[float, dict[str, Any]] | None = None
    limit = 10_000 if paced else BATCH * 5
    done = False
    while not done:
        elapsed = clock() - began
        if duration_s is not None and elapsed >= duration_s:
            break
        horizon = elapsed if paced else float("inf")
        while len(pending) < limit:
            if count is not None and summary.sent + summary.rejected + len(pending) >= count:
                done = True
                break
            if lookahead is None:
                lookahead = next(stream)
            if lookahead[0] > horizon:
                break
            pending.append(lookahead[1])
            lookahead = None
        if pending:
            target.send(pending, summary)
            pending = []
        if clock() - last_report >= 0.2:
            last_report = clock()
            on_progress(summary, summary.sent / max(clock() - began, 1e-9))
        if paced and not done:
            time.sleep(0.02)
    summary.elapsed_s = clock() - began
    on_progress(summary, summary.sent / max(summary.elapsed_s, 1e-9))
    return summary
