"""The gateway (`referrals api`) under load: single events at a fixed rate and at saturation, and
batches of 100 at saturation. Every request must get 202 (Kafka acknowledged its events).

- fixed rate: an open-loop asyncio client (aiohttp) sends one request every 1/rate seconds,
  whatever the answers do; latency counts from the moment a request was due, so a slow answer
  is not hidden by sending less (no coordinated omission);
- saturation: ``wrk`` (Debian's package, a separate process in C) with as many connections as
  keep the gateway busy; every request carries a new event id. Its floor, ``http_floor``: ``GET /healthz``
  at saturation, the HTTP server and framework alone.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import shutil
import statistics
import subprocess
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import httpx

from bench.workload import BenchRun
from deploy.local.service_process import GatewayProcess
from referrals.kafka_admin import ensure_topics
from referrals.settings import Settings, worker_environment
from schemas.topics import INBOUND

BENCH_KEY = "bench-key-0123456789abcdef"
# wrk's connections at saturation: single events (32 left the gateway idle between answers, measured:
# 2,500 req/s against 3,000-3,500 with 64, and 128 no more than 64), batches of 100
SINGLE_CONNECTIONS = 64
BATCH_CONNECTIONS = 8


@dataclass
class FixedRateResult:
    offered_per_s: float
    achieved_per_s: float
    requests: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    failures: Counter[str]  # what the requests not answered 202 got: status or error, by kind


@dataclass
class SaturationResult:
    requests_per_s: float
    events_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    connections: int
    failures: Counter[str]  # non-2xx answers and wrk's socket errors, by kind


class Gateway(GatewayProcess):
    """The gateway the bench loads: its run's topics and keys, one key for every event type, no rate limit."""

    def __init__(self, settings: Settings, port: int, log: Path):
        s = settings
        super().__init__(port, log, env={
            **worker_environment(s, ("kafka", "redis")),  # reaches Kafka and Redis as ``settings`` say (TLS too)
            "REFERRALS_KAFKA__TOPIC_PREFIX": s.kafka.topic_prefix, "REFERRALS_REDIS__KEY_PREFIX": s.redis.key_prefix,
            "REFERRALS_GATEWAY__API_KEYS": json.dumps([{"name": "bench", "key": BENCH_KEY,
                                                       "types": ["share", "click", "signup", "order", "refund"]}]),
            "REFERRALS_GATEWAY__RATE_LIMIT_PER_S": "1000000", "REFERRALS_GATEWAY__RATE_LIMIT_BURST": "1000000",
            "REFERRALS_GATEWAY__METRICS_PORT": "0", "REFERRALS_STATE_DIR": str(s.state_dir)})
        self.settings = settings

    def start(self) -> None:  # type: ignore[override]
        super().start()
        # the producer is made on the first event: one request before any clock starts
        self.post([share_event("warm-up", 0)])

    def post(self, events: list[dict]) -> None:
        response = httpx.post(self.url + "/v1/events", json=events, timeout=30,
                              headers={"Authorization": f"Bearer {BENCH_KEY}"})
        if response.status_code != 202:
            raise RuntimeError(f"the gateway answered {response.status_code}: {response.text[:300]}")


def occurred_at() -> str:
    return (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def share_event(tag: str, i: int, at: str | None = None) -> dict:
    return {"type": "share", "event_id": f"{tag}-{i}", "referrer_id": f"bench-referrer-{i % 1000}",
            "channel": "whatsapp", "occurred_at": at or occurred_at()}


def fixed_rate(gateway: Gateway, rate: float, seconds: float) -> FixedRateResult:
    """Single-event requests at ``rate`` per second for ``seconds``, open loop."""
    count = int(rate * seconds)
    tag = f"fixed-{uuid.uuid4().hex[:8]}"
    at = occurred_at()
    bodies = [json.dumps(share_event(tag, i, at)).encode() for i in range(count)]

    async def run() -> tuple[list[float], Counter[str], float]:
        latencies: list[float] = []
        failures: Counter[str] = Counter()
        connector = aiohttp.TCPConnector(limit=256)
        headers = {"Authorization": f"Bearer {BENCH_KEY}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            loop = asyncio.get_running_loop()
            started = loop.time()

            async def one(i: int) -> None:
                due = started + i / rate
                try:
                    async with session.post(gateway.url + "/v1/events", data=bodies[i]) as response:
                        await response.read()
                        if response.status != 202:
                            failures[f"HTTP {response.status}"] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    failures[type(exc).__name__] += 1
                latencies.append(loop.time() - due)

            tasks = []
            for i in range(count):
                pause = started + i / rate - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
            return latencies, failures, loop.time() - started

    # the client's own garbage collections would count as the gateway's latency: its long-lived objects (the
    # bodies, the session) are left out of them
    gc.collect()
    gc.freeze()
    try:
        latencies, failures, elapsed = asyncio.run(run())
    finally:
        gc.unfreeze()
    ordered = sorted(latencies)
    return FixedRateResult(rate, count / elapsed, count, 1000 * statistics.median(ordered),
                           1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1000 * ordered[-1],
                           failures)


_WRK_SCRIPT = """
local n = 0
local tag = "%(tag)s-" .. tostring(math.random(1, 1000000000))
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer %(key)s"
wrk.headers["Content-Type"] = "application/json"
local function event(i)
  return string.format('{"type":"share","event_id":"%%s-%%d","referrer_id":"bench-referrer-%%d",' ..
                       '"channel":"whatsapp","occurred_at":"%(at)s"}', tag, i, i %% 1000)
end
request = function()
  local parts = {}
  for j = 1, %(batch)d do
    n = n + 1
    parts[j] = event(n)
  end
  local body = %(batch)d == 1 and parts[1] or ("[" .. table.concat(parts, ",") .. "]")
  return wrk.format(nil, "/v1/events", nil, body)
end
"""

_WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_TOTAL = re.compile(r"(\d+) requests in")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_PERCENTILE = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def saturation(gateway: Gateway, *, batch: int, seconds: float, connections: int, work_dir: Path) -> SaturationResult:
    """As many requests as the gateway answers with ``connections`` open, each with ``batch`` events."""
    script = work_dir / f"wrk-{uuid.uuid4().hex[:8]}.lua"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(_WRK_SCRIPT % {"tag": f"sat{batch}", "key": BENCH_KEY, "at": occurred_at(), "batch": batch})
    return _wrk(gateway.url, ["-s", str(script)], batch=batch, seconds=seconds, connections=connections)


def http_floor(gateway: Gateway, *, seconds: float, connections: int) -> SaturationResult:
    """``GET /healthz`` at saturation: the HTTP server and the framework answering with no work of their own,
    the most single-event requests the gateway's processes could answer on this machine."""
    return _wrk(gateway.url + "/healthz", [], batch=1, seconds=seconds, connections=connections)


def _wrk(url: str, args: list[str], *, batch: int, seconds: float, connections: int) -> SaturationResult:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is missing: `referrals stack prepare --test-tools` installs it")
    done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency", *args, url],
                          capture_output=True, text=True, timeout=seconds + 120)
    out = done.stdout
    rate, total = _WRK_RATE.search(out), _WRK_TOTAL.search(out)
    if done.returncode != 0 or rate is None or total is None:
        raise RuntimeError(f"wrk failed (exit {done.returncode}):\n{out}\n{done.stderr}")
    failures: Counter[str] = Counter()
    if non2xx := _WRK_NON2XX.search(out):
        failures["non-2xx"] = int(non2xx.group(1))
    if errors := _WRK_ERRORS.search(out):
        failures.update({f"socket {kind}": int(n) for kind, n in zip(("connect", "read", "write", "timeout"),
                                                                     errors.groups(), strict=True)})
    failures = +failures  # without the kinds that did not happen
    percentiles = {p: _ms(v, u) for p, v, u in _WRK_PERCENTILE.findall(out)}
    return SaturationResult(float(rate.group(1)), float(rate.group(1)) * batch, percentiles.get("50", float("nan")),
                            percentiles.get("99", float("nan")), int(total.group(1)), connections, failures)


def gateway_run(base: Settings, port: int, work_dir: Path, warm_up_s: float = 0.0) -> tuple[Gateway, BenchRun]:
    """A started gateway on its run's topics; with ``warm_up_s``, after that long at saturation (its first
    seconds are slower: every worker process's first requests, its first produce requests)."""
    run = BenchRun.new(base, "gateway")
    ensure_topics(run.settings, [run.settings.kafka.topic_prefix + spec.name for spec in INBOUND])
    gateway = Gateway(run.settings, port, work_dir / f"gateway-{run.run_id}.log")
    gateway.start()
    if warm_up_s:
        warm = saturation(gateway, batch=1, seconds=warm_up_s, connections=SINGLE_CONNECTIONS, work_dir=work_dir)
        if warm.failures:
            gateway.stop()
            raise RuntimeError(f"the gateway's warm-up got {dict(warm.failures)}; see {gateway.log}")
    return gateway, run
