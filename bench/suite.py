"""The whole benchmark in one run: raw limits first, then the pipeline, the gateway and growth, each
figure repeated ``runs`` times on the same machine, so that every ratio compares like with like."""

from __future__ import annotations

import statistics
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    freshness_bench,
    gateway_bench,
    influencer_bench,
    pipeline_bench,
    raw_limits,
    referrer_history,
    story_bench,
    workload,
)
from bench.report import SECTIONS, Figure, Report, machine
from consumers import statement
from deploy.local.processes import free_port
from deploy.local.stack import LocalStack
from referrals.kafka_admin import delete_topics, ensure_topics, topic_names
from referrals.settings import Settings, changed


@dataclass(frozen=True)
class Sizes:
    mode: str
    runs: int
    throughput_events: int
    throughput_customers: int
    raw_records: int
    freshness_s: float
    freshness_customers: int
    gateway_fixed_s: float
    gateway_saturation_s: float
    growth_customers: tuple[int, ...]
    growth_tail: int
    fixed_rate: float = 1000.0
    history_referrals: int = 20_000  # one influencer's referrals (``bench.referrer_history``)
    history_reference: int = 1_000  # of them, through the reference core too (it costs O(history) per fact)
    influencer_referrals: int = 20_000  # one influencer's referrals through the real worker
    variant_events: int = 100_000  # the workload the worker's variants (``VARIANTS``) are compared on
    history_lookup_ids: int = 1_000_000  # counted ids put in the part store (``referrer_history.store_lookups``)
    story_referrals: int = 10_000  # the longest story's referrals (``bench.story_bench``)
    story_pages: int = 1_000  # pages of it read at random places
    statement_rows: int = 1_000_000  # reward changes through one statement


FULL = Sizes("full", 3, 1_000_000, 10_000, 1_000_000, 60, 10_000, 30, 20, (10_000, 100_000, 1_000_000), 100_000)
QUICK = Sizes("quick", 3, 100_000, 10_000, 300_000, 60, 10_000, 30, 20, (10_000, 100_000), 50_000)
SMOKE = Sizes("smoke", 1, 3_000, 300, 20_000, 4, 200, 3, 3, (300, 600), 1_000, fixed_rate=200.0,
              history_referrals=2_000, history_reference=200, influencer_referrals=2_000, variant_events=3_000,
              history_lookup_ids=20_000, story_referrals=1_000, story_pages=100, statement_rows=20_000)



# the worker's settings compared in the ``variants`` section (#17: the framework's floor), against the defaults
VARIANTS: dict[str, dict[str, object]] = {
    "defaults": {},
    "cython_optimizations": {"cython_optimizations": True},
    "gc_freeze": {"gc_freeze": True},
    "gc_freeze_survivors off": {"gc_freeze_survivors": False},
    "records_on_disk off": {"records_on_disk": False},
    "batch_size 2000": {"batch_size": 2000},
}
FRESHNESS_VARIANTS = ("defaults", "gc_freeze_survivors off")  # also compared on freshness (the loop's pauses)


@dataclass
class Suite:
    base: Settings
    sizes: Sizes
    work_dir: Path
    echo: Callable[[str], None] = print
    sections: tuple[str, ...] = SECTIONS
    report: Report = field(init=False)

    def __post_init__(self) -> None:
        s = self.sizes
        self.report = Report(
            started_at=datetime.now(UTC).isoformat(timespec="seconds"), mode=s.mode,
            configuration={"sizes": s.__dict__, "sections": list(self.sections), "partitions": self.base.kafka.partitions,
                           "batch_size": self.base.streams.batch_size, "batch_wait_s": self.base.streams.batch_wait_s,
                           "record_bytes_raw": raw_limits.RECORD_BYTES})

    def run(self) -> Report:
        stack = LocalStack(self.base)
        stack.up(echo=self.echo)
        libs = raw_limits.resolve_tools(self.base, echo=self.echo)
        self.report.machine = machine({"kafka_broker": stack.kafka.running_version() or "?",
                                       "kafka_tools": raw_limits.tools_version(libs),
                                       "redis_server": stack.redis.version() or "?"})
        before = topic_names(self.base)
        try:
            for section in SECTIONS:
                if section in self.sections:
                    getattr(self, section)()
        finally:  # the runs' topics (all named bench-...), failed runs' too: the broker keeps none of them
            delete_topics(self.base, sorted(t for t in topic_names(self.base) - before if t.startswith("bench-")))
        self.report.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
        return self.report

    # -- raw limits --------------------------------------------------------------------------------

    def raw(self) -> None:
        s, runs = self.base, self.sizes.runs
        n = self.sizes.raw_records
        tool, kp, ap, consume, floor, floor_cython, incr = [], [], [], [], [], [], []
        for i in range(runs):
            self.echo(f"raw limits, run {i + 1} of {runs}")
            topics = [f"bench-raw-{uuid.uuid4().hex[:8]}-{kind}" for kind in ("tool", "kp", "ap")]
            ensure_topics(s, topics)
            tool.append(raw_limits.kafka_tool_produce(s, topics[0], n))
            kp.append(raw_limits.kafka_python_produce(s, topics[1], n // 3))
            ap.append(raw_limits.aiokafka_produce(s, topics[2], n))
            consume.append(raw_limits.aiokafka_consume(s, topics[2], n))
            floor.append(raw_limits.faust_empty_agent(s, topics[2], min(n, 200_000), self.work_dir))
            floor_cython.append(raw_limits.faust_empty_agent(s, topics[2], min(n, 200_000), self.work_dir,
                                                             cython=True))
            incr.append(raw_limits.redis_pipelined_incr(s, f"bench:raw-{uuid.uuid4().hex[:8]}:", n))
        add = self.report.add
        add(Figure("raw: Kafka ProducerPerformance (Java)", "records/s", tool, note="200-byte records, acks=all"))
        add(Figure("raw: kafka-python producer", "records/s", kp, note="200-byte records, acks=all, linger 5 ms"))
        add(Figure("raw: aiokafka producer", "records/s", ap, note="200-byte records, acks=all, linger 5 ms"))
        add(Figure("raw: aiokafka consume + JSON decode", "records/s", consume))
        add(Figure("raw: Faust agent that only takes and decodes (take_events)", "records/s", floor,
                   note="the worker's Faust set-up (uvloop), an empty agent body: the framework's own cost"))
        add(Figure("raw: Faust agent that only takes and decodes, with cython_optimizations", "records/s",
                   floor_cython, note="faust-streaming's opt-in repaired Cython fast paths"))
        add(Figure("raw: Redis HINCRBY, pipelined 1,000", "ops/s", incr))

    # -- the pipeline --------------------------------------------------------------------------------

    def pipeline(self) -> None:
        s = self.sizes
        self.echo(f"building a workload of {s.throughput_events:,} simulated events")
        load = workload.build(s.throughput_events, s.throughput_customers)
        results = []
        for i in range(s.runs):
            self.echo(f"pipeline throughput, run {i + 1} of {s.runs}: {load.events:,} events, one worker")
            results.append(pipeline_bench.throughput(self.base, load, metrics_port=free_port(), label="tp",
                                                     work_dir=self.work_dir, restart=i == 0))
        rates = [r.events_per_s for r in results]
        add = self.report.add
        add(Figure("pipeline throughput (1 worker)", "events/s", rates, target=">= 20000",
                   note=f"{load.events:,} events, a tenth at a time, {s.throughput_customers:,} customers"))
        if "raw" in self.sections:  # ratios to the raw limits of the same run
            consume = self.report.get("raw: aiokafka consume + JSON decode").values
            add(Figure("pipeline throughput / raw aiokafka consume", "%",
                       [100 * r / c for r, c in zip(rates, consume, strict=False)], target=">= 40"))
            floor = self.report.get("raw: Faust agent that only takes and decodes (take_events)").values
            add(Figure("pipeline inputs/s / raw Faust agent", "%",
                       [100 * r.inputs / r.seconds / f for r, f in zip(results, floor, strict=False)],
                       note="inputs: events and the internal facts they cause"))
        add(Figure("pipeline time per event (1 worker)", "µs/event", [r.us_per_event for r in results]))
        add(Figure("pipeline inputs per event (events + internal facts)", "inputs",
                   [r.inputs / r.events for r in results]))
        add(Figure("worker peak RSS (throughput run)", "MiB", [r.rss_peak_bytes / 2**20 for r in results]))
        add(Figure("referrals the worker settled (throughput run)", "referrals", [r.settled for r in results],
                   note="decided for good (the clock ended their holds), out of the records' objects"))
        # the history through the worker (#17): does an input cost more, and the worker hold more, as it goes on?
        # (only where a tenth took long enough for the samples, four a second, to time it)
        if min(min(r.first_tenth_s, r.last_tenth_s) * r.inputs / 10 for r in results) >= 2.0:
            self._history_through_worker(load, results)
        self._restarts(load, results)
        self._freshness(rates)

    def _history_through_worker(self, load: workload.Workload, results: list[pipeline_bench.ThroughputResult]
                                ) -> None:
        add = self.report.add
        events = f"{load.events // 10:,} events"
        add(Figure(f"history through the worker: time per input, first tenth ({events})", "µs/input",
                   [1e6 * r.first_tenth_s for r in results]))
        add(Figure(f"history through the worker: time per input, last tenth (the last {events})", "µs/input",
                   [1e6 * r.last_tenth_s for r in results]))
        add(Figure("history through the worker: last / first tenth", "ratio", [r.last_over_first for r in results],
                   target="<= 1.2", note="per input (events and the internal facts they cause); every tenth, µs per "
                   "input: " + "; ".join(" ".join(f"{t:.0f}" for t in r.tenths_us_per_input) for r in results)))
        add(Figure("history through the worker: RSS after the first tenth", "MiB",
                   [r.rss_first_tenth_bytes / 2**20 for r in results]))
        add(Figure("history through the worker: RSS at the end / after the first tenth", "ratio",
                   [r.rss_end_over_first for r in results], target="<= 1.5", note="after every tenth, MiB: "
                   + "; ".join(" ".join(f"{m:.0f}" for m in r.tenths_rss_mib) for r in results)))

    def _restarts(self, load: workload.Workload, results: list[pipeline_bench.ThroughputResult]) -> None:
        """How long a worker takes to recover the state of the whole workload from its changelogs, with the
        default read-ahead and with Faust's (``pipeline_bench.RESTART_READ_AHEAD``)."""
        add = self.report.add
        add(Figure("worker start with empty tables: seconds to Ready", "s", [r.ready_s for r in results]))
        for i, read_ahead in enumerate(pipeline_bench.RESTART_READ_AHEAD):
            times = [r.restarts[i][1] for r in results if len(r.restarts) > i]
            if not times:
                return
            order = ("first", "second")[i] if i < 2 else f"#{i + 1}"
            which = "the default" if read_ahead == self.base.streams.fetch_bytes_per_partition else "Faust's"
            add(Figure(f"worker restart after {load.events:,} events, {order}: seconds to Ready (tables recovered), "
                       f"reading {read_ahead // 1024:,} KiB ahead ({which})", "s", times,
                       note="after the first throughput run; from the process's start; RSS when Ready, MiB: "
                       + "; ".join(f"{r.restarts[i][2] / 2**20:.0f}" for r in results if len(r.restarts) > i)))

    def _freshness(self, rates: list[float]) -> None:
        s, add = self.sizes, self.report.add
        maximum = statistics.median(rates)
        for label, rate in (("fixed", s.fixed_rate), ("80 % of max", 0.8 * maximum)):
            fresh = []
            for i in range(s.runs):
                self.echo(f"freshness at {rate:,.0f} events/s for {s.freshness_s:.0f} s, run {i + 1} of {s.runs}")
                fresh.append(freshness_bench.freshness(self.base, rate=rate, seconds=s.freshness_s,
                                                       customers=s.freshness_customers, metrics_port=free_port(),
                                                       label="fresh", work_dir=self.work_dir))
            name = f"freshness at {label}" if label.startswith("80") else f"freshness at {rate:,.0f} events/s"
            add(Figure(f"{name}: offered", "events/s", [f.achieved_per_s for f in fresh]))
            add(Figure(f"{name}: p50", "ms", [1000 * f.p50_s for f in fresh]))
            add(Figure(f"{name}: p99", "ms", [1000 * f.p99_s for f in fresh],
                       target="<= 100" if label == "fixed" else ""))
            add(Figure(f"{name}: max (at most)", "ms", [1000 * f.max_le_s for f in fresh],
                       note="upper bound of the highest histogram bucket reached"))
            add(Figure(f"{name}: the worker's full garbage collections", "collections",
                       [f.gc_full for f in fresh]))
            add(Figure(f"{name}: time of a full garbage collection", "ms", [1000 * f.gc_full_mean_s for f in fresh],
                       note="mean within the window; the event loop waits that long"))

    # -- the gateway ---------------------------------------------------------------------------------

    def gateway(self) -> None:
        s = self.sizes
        gw, _run = gateway_bench.gateway_run(self.base, free_port(), self.work_dir,
                                             warm_up_s=min(5.0, s.gateway_saturation_s))
        single_c, batch_c = gateway_bench.SINGLE_CONNECTIONS, gateway_bench.BATCH_CONNECTIONS
        try:
            fixed, single, batched, raw_producer, floor = [], [], [], [], []
            for i in range(s.runs):
                self.echo(f"gateway, run {i + 1} of {s.runs}")
                topic = f"bench-raw-{uuid.uuid4().hex[:8]}-gateway-ap"
                ensure_topics(self.base, [topic])
                raw_producer.append(raw_limits.aiokafka_produce(self.base, topic, s.raw_records))
                fixed.append(gateway_bench.fixed_rate(gw, s.fixed_rate, s.gateway_fixed_s))
                floor.append(gateway_bench.http_floor(gw, seconds=s.gateway_saturation_s, connections=single_c))
                single.append(gateway_bench.saturation(gw, batch=1, seconds=s.gateway_saturation_s,
                                                       connections=single_c, work_dir=self.work_dir))
                batched.append(gateway_bench.saturation(gw, batch=100, seconds=s.gateway_saturation_s,
                                                        connections=batch_c, work_dir=self.work_dir))
        finally:
            gw.stop()
        failures = {name: sum((r.failures for r in results), Counter())
                    for name, results in (("fixed rate", fixed), ("/healthz", floor), ("single events", single),
                                          ("batches of 100", batched))}
        failures = {name: counts for name, counts in failures.items() if counts}
        if failures:
            told = "; ".join(f"{name}: {dict(counts)}" for name, counts in failures.items())
            raise pipeline_bench.BenchFailed(f"gateway requests not answered 202 ({told}); see {gw.log}")
        add = self.report.add
        rate = f"{s.fixed_rate:,.0f} req/s"
        served = f"uvicorn, {self.base.gateway.processes} processes"
        add(Figure(f"gateway single events at {rate}: achieved", "req/s", [r.achieved_per_s for r in fixed],
                   note=served))
        add(Figure(f"gateway single events at {rate}: p50", "ms", [r.p50_ms for r in fixed]))
        add(Figure(f"gateway single events at {rate}: p99", "ms", [r.p99_ms for r in fixed], target="<= 25"))
        add(Figure("gateway single events at saturation", "req/s", [r.requests_per_s for r in single],
                   target=">= 3000", note=f"wrk, {single_c} connections; {served}"))
        add(Figure("gateway single events at saturation: p99", "ms", [r.p99_ms for r in single]))
        add(Figure("gateway: GET /healthz alone at saturation", "req/s", [r.requests_per_s for r in floor],
                   note=f"the HTTP server and framework with no work, wrk, {single_c} connections; same processes, "
                        "just before the single events"))
        add(Figure("gateway batches of 100 at saturation", "events/s", [r.events_per_s for r in batched],
                   note=f"wrk, {batch_c} connections; {served}"))
        add(Figure("gateway: raw aiokafka producer alone", "records/s", raw_producer,
                   note="200-byte records, acks=all, linger 5 ms; measured in each gateway run, just before it"))
        add(Figure("gateway batches of 100 / raw aiokafka producer", "%",
                   [100 * r.events_per_s / p for r, p in zip(batched, raw_producer, strict=True)], target=">= 50"))

    # -- growth --------------------------------------------------------------------------------------

    def growth(self) -> None:
        s = self.sizes
        costs: dict[int, list[float]] = {}
        for customers in s.growth_customers:
            self.echo(f"building a workload of {customers:,} customers and {s.growth_tail:,} events on top")
            load = workload.build(customers + s.growth_tail, customers)
            results = []
            for i in range(s.runs):
                self.echo(f"growth at {customers:,} customers, run {i + 1} of {s.runs}")
                results.append(pipeline_bench.growth(self.base, load, metrics_port=free_port(), label="growth",
                                                     work_dir=self.work_dir))
            add = self.report.add
            c = f"{customers:,} customers"
            add(Figure(f"growth {c}: building the state", "events/s", [r.base_events_per_s for r in results]))
            add(Figure(f"growth {c}: traffic on top", "events/s", [r.tail_events_per_s for r in results]))
            costs[customers] = [r.tail_us_per_event for r in results]
            add(Figure(f"growth {c}: cost per event", "µs/event", costs[customers]))
            add(Figure(f"growth {c}: referrers with counters", "referrers", [r.footprint.referrers for r in results]))
            add(Figure(f"growth {c}: Redis per referrer", "bytes", [r.footprint.per_referrer() for r in results],
                       target="<= 300" if customers == max(s.growth_customers) and customers >= 1_000_000 else "",
                       note="MEMORY USAGE of every key of the live view / referrers"))
            for part, kinds in (("referrer hashes", ("referrer",)), ("referral lists", ("referrals",)),
                                ("welcome rewards", ("welcome",)),
                                ("campaign totals", ("funnel", "ledger", "leaderboard", "campaigns"))):
                add(Figure(f"growth {c}: Redis per referrer: {part}", "bytes",
                           [r.footprint.per_referrer(*kinds) for r in results]))
            add(Figure(f"growth {c}: worker peak RSS", "MiB", [r.rss_peak_bytes / 2**20 for r in results]))
        small, large = min(costs), max(costs)
        if small == large:
            return
        self.report.add(Figure(f"growth: cost per event at {large:,} / at {small:,} customers", "ratio",
                               [b / a for a, b in zip(costs[small], costs[large], strict=True)], target="<= 1.25",
                               note="flat: the cost per event does not grow with the state"))

    # -- one referrer's history (in process) -------------------------------------------------------

    def history(self) -> None:
        s = self.sizes
        n = s.history_referrals
        self.echo(f"one referrer gaining {n:,} referrals through the referrer stage, in process")
        results = [referrer_history.run(n, s.history_reference) for _ in range(s.runs)]
        add = self.report.add
        last = f"last {referrer_history.SLICE:,} of {n:,}"
        add(Figure(f"history: referrer stage and changelog encoding per event, first {referrer_history.SLICE:,} "
                   "referrals", "µs/event", [r.step_us[0] for r in results]))
        add(Figure(f"history: referrer stage and changelog encoding per event, {last} referrals", "µs/event",
                   [r.step_us[-1] for r in results]))
        add(Figure("history: referrer stage per event, last / first slice", "ratio", [r.growth for r in results],
                   target="<= 1.5", note="decisions, bookkeeping and changelog parts: independent of the history"))
        add(Figure(f"history: reference core (recomputed from the history), first {s.history_reference:,} "
                   "referrals", "µs/fact", [r.reference_step_us for r in results],
                   bound="what the worker ran before #17; raw figure of the same run"))
        add(Figure(f"history: largest changelog value written over {n:,} referrals", "bytes",
                   [float(r.largest_value) for r in results], target="<= 102400",
                   bound="Kafka's default max.message.bytes: 1,048,588"))
        add(Figure(f"history: the whole record as one value at {n:,} referrals", "bytes",
                   [float(r.record_bytes[-1]) for r in results],
                   note="what one changelog value was before #17 (the poison pill)"))
        for what, unit in (("encode", "µs/value"), ("decode", "µs/value"), ("bytes", "bytes/value")):
            add(Figure(f"history: changelog values of the last slice, msgspec {what}", unit,
                       [r.codec_us[f"msgspec {what}"] for r in results], note="the records' codec"))
            add(Figure(f"history: changelog values of the last slice, pickle {what}", unit,
                       [r.codec_us[f"pickle {what}"] for r in results],
                       bound="what it replaced; raw figure of the same run"))
        add(Figure(f"history: counter snapshot at {n:,} referrals", "ms", [r.snapshot_ms[-1] for r in results],
                   note="once per batch for a changed referrer (partial: one referral's summary, the totals "
                        "brought up to date with it)"))
        add(Figure(f"history: complete counter snapshot at {n:,} referrals", "ms",
                   [r.complete_snapshot_ms[-1] for r in results], note="once per referrer after a restart"))
        held = [referrer_history.memory(n) for _ in range(s.runs)]
        add(Figure(f"history: the record's Python objects per referral at {n:,} referrals, all in the record",
                   "bytes", [m.held for m in held], bound="every referral ever decided as objects (before)"))
        add(Figure(f"history: the same, with the part store (referrals decided for good settled, counted ids) "
                   f"at {n:,} referrals", "bytes", [m.settled for m in held],
                   note=f"{held[0].settled_referrals:,} settled, their entries in the store too"))
        add(Figure("history: the part store's work (put back before a step, fold out after)", "µs/fact",
                   [m.store_us for m in held]))
        lookups = [referrer_history.store_lookups(s.history_lookup_ids) for _ in range(s.runs)]
        first, last = lookups[0].keys[0], lookups[0].keys[-1]
        add(Figure(f"history: part store, an id not in it looked up at {first:,} ids", "µs/lookup",
                   [r.missing_us[0] for r in lookups], note="what every new share or click asks first"))
        add(Figure(f"history: the same at {last:,} ids", "µs/lookup", [r.missing_us[-1] for r in lookups]))
        add(Figure(f"history: part store, lookup at {last:,} / at {first:,} ids", "ratio",
                   [r.missing_us[-1] / r.missing_us[0] for r in lookups], target="<= 1.5",
                   note="flat: its index and filters stay in the cache"))
        add(Figure(f"history: part store, keeping an id (get, two puts), the last {first:,} ids / the first {first:,}",
                   "ratio", [r.stored_us[-1] / r.stored_us[0] for r in lookups]))
        for i, how in enumerate(("all in the record", "with the part store")):
            add(Figure(f"history: the record encoded whole at {n:,} referrals, {how}", "bytes",
                       [float(m.record_bytes[i]) for m in held], note="what leaving the worker's cache writes"))
            add(Figure(f"history: decoding it, {how}", "ms", [m.decode_ms[i] for m in held],
                       note="what reading it back into the cache costs"))

    # -- one influencer through the real worker --------------------------------------------------------

    def influencer(self) -> None:
        s = self.sizes
        n = s.influencer_referrals
        results = []
        for i in range(s.runs):
            self.echo(f"one influencer gaining {n:,} referrals through the real worker, run {i + 1} of {s.runs}")
            results.append(influencer_bench.run(self.base, n, metrics_port=free_port(), work_dir=self.work_dir))
        add = self.report.add
        size = influencer_bench.SLICE
        add(Figure(f"influencer: first {size:,} referrals through the worker", "s", [r.slice_s[0] for r in results],
                   note="a share, a signup with the code and a qualifying order each; from sent to processed"))
        add(Figure(f"influencer: last {size:,} of {n:,} referrals through the worker", "s",
                   [r.slice_s[-1] for r in results]))
        add(Figure("influencer: last / first slice", "ratio", [r.growth for r in results], target="<= 1.5",
                   note="the worker's cost per referral does not grow with the referrer's history"))
        add(Figure(f"influencer: largest value the worker wrote over {n:,} referrals", "bytes",
                   [float(r.largest_value) for r in results], target="<= 102400",
                   bound="Kafka's default max.message.bytes: 1,048,588",
                   note="every topic it writes: changelogs, its own topics, attributions, rewards, dead letters"))
        add(Figure(f"influencer: worker peak RSS after {n:,} referrals", "MiB",
                   [r.rss_peak_bytes / 2**20 for r in results]))

    # -- the story (#21) ---------------------------------------------------------------------------------

    def story(self) -> None:
        s = self.sizes
        results = []
        for i in range(s.runs):
            self.echo(f"the story of a referrer with {s.story_referrals:,} referrals: {s.story_pages:,} pages, run "
                      f"{i + 1} of {s.runs}")
            results.append(story_bench.run(self.base, s.story_referrals, s.story_pages))
        add = self.report.add
        n = f"{s.story_referrals:,} referrals"
        add(Figure(f"story: a page of {story_bench.PAGE} steps, {n}: p99", "ms", [r.p99_ms for r in results],
                   target="<= 50", bound="raw: the same pages as a bare sorted-set range and hash read (below)",
                   note="as the read API makes it: steps, their rewards in the reward book, a year of funnel cells, "
                   "told in German; in process, real Redis"))
        add(Figure(f"story: a page of {story_bench.PAGE} steps, {n}: p50", "ms",
                   [statistics.median(r.page_ms) for r in results]))
        add(Figure("raw: the same pages, sorted-set range and hash read only: p99", "ms",
                   [r.raw_p99_ms for r in results]))
        add(Figure(f"story: what the longest story holds in Redis ({n})", "bytes",
                   [float(r.story_bytes) for r in results],
                   bound=f"the newest {self.base.story.max_steps:,} steps (story.max_steps), the rest folded"))
        add(Figure("story: steps written by the keeper's writer", "steps/s",
                   [r.steps_written / r.write_s for r in results], note="one script call each, sequential"))
        statements = []
        for i in range(s.runs):
            self.echo(f"a statement of {s.statement_rows:,} reward changes, run {i + 1} of {s.runs}")
            statements.append(story_bench.statement_run(s.statement_rows))
        rows, rewards = statements[0].rows, statements[0].rewards
        add(Figure(f"statement: {rows:,} reward changes to CSV", "rows/s", [r.rows_per_s for r in statements],
                   bound="raw: json.loads of the same records (below)", note="in process, no Kafka"))
        add(Figure(f"raw: json.loads of {rows:,} reward changes", "rows/s", [r.raw_rows_per_s for r in statements]))
        add(Figure(f"statement: peak memory for {rows:,} rows over {rewards:,} rewards", "MiB",
                   [r.peak_bytes / 2**20 for r in statements],
                   bound=f"SQLite's page cache besides: at most {statement.CACHE_KIB:,} KiB",
                   note="tracemalloc: Python's allocations while it streams; the digests of what it wrote go to a "
                   "temporary SQLite file"))

    # -- the worker's variants ---------------------------------------------------------------------------

    def variants(self) -> None:
        """Pipeline throughput with each of ``VARIANTS``' settings, the runs interleaved (A B C D, A B C D, ...)
        so that a drift of the machine falls on all of them alike."""
        s = self.sizes
        load = workload.build(s.variant_events, s.throughput_customers)
        rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for i in range(s.runs):
            for name, changes in VARIANTS.items():
                self.echo(f"variant {name!r}, run {i + 1} of {s.runs}: {load.events:,} events, one worker")
                base = changed(self.base, streams=changes)
                result = pipeline_bench.throughput(base, load, metrics_port=free_port(), label="var",
                                                   work_dir=self.work_dir, restart=False)
                rates[name].append(result.events_per_s)
        for name, values in rates.items():
            self.report.add(Figure(f"variants: pipeline throughput, {name}", "events/s", values,
                                   note=f"{load.events:,} events; settings {VARIANTS[name] or 'as shipped'}"))
        # the variants meant for the event loop's pauses: freshness at the fixed rate too, interleaved alike
        fresh: dict[str, list[freshness_bench.FreshnessResult]] = {name: [] for name in FRESHNESS_VARIANTS}
        for i in range(s.runs):
            for name in FRESHNESS_VARIANTS:
                self.echo(f"variant {name!r}: freshness at {s.fixed_rate:,.0f} events/s for {s.freshness_s:.0f} s, "
                          f"run {i + 1} of {s.runs}")
                base = changed(self.base, streams=VARIANTS[name])
                fresh[name].append(freshness_bench.freshness(
                    base, rate=s.fixed_rate, seconds=s.freshness_s, customers=s.freshness_customers,
                    metrics_port=free_port(), label="fresh", work_dir=self.work_dir))
        for name, results in fresh.items():
            add = self.report.add
            add(Figure(f"variants: freshness at {s.fixed_rate:,.0f} events/s: p99, {name}", "ms",
                       [1000 * f.p99_s for f in results], target="<= 100"))
            add(Figure(f"variants: freshness at {s.fixed_rate:,.0f} events/s: full garbage collections, {name}",
                       "collections", [f.gc_full for f in results]))
            add(Figure(f"variants: freshness at {s.fixed_rate:,.0f} events/s: time of a full garbage collection, "
                       f"{name}", "ms", [1000 * f.gc_full_mean_s for f in results]))
