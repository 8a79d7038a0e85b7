"""The Faust shell around the pure stages: topics in, decisions out, counters into Redis.

Three agents, one per stage, each over co-partitioned topics and one table of its own:

- ``visitors``  on ``referrals.clicks`` + ``referrals.visitor-facts``              (key visitor_id)
- ``customers`` on ``customers.signups``, ``shop.orders``, ``shop.refunds``
  + ``referrals.customer-facts``                                                  (key customer_id)
- ``referrers`` on ``referrals.shares`` + ``referrals.referrer-facts``             (key referrer_id)

Each agent takes its input in batches. For a batch it: runs every event through the
pure stage (``streams.stages``) by way of the stage runner (``streams.stage_runner``: the
glue this shell shares with the crash model and ``rebuild``), which stores the changed
records in its table and collects the outputs; then it sends the outputs, waits until Kafka has acknowledged all of them and the table changes (the
futures of each), and only then (referrer stage) writes the counter snapshots of the
referrers that changed to Redis, in one pipeline. Faust commits an input offset only
after its batch is done, so a crash at any moment leaves state that is at or ahead of the
committed offsets, never behind; ``streams.stages`` explains why that is enough.

Two guards stop the worker (exit 70, to be restarted) where faust-streaming itself would
commit records nobody processed or stop moving: ``OffsetGuard`` (a partition's offsets
must go on one by one from the committed one) and ``StallWatch`` (a partition with
records waiting whose committed offset does not move).

Erasure (``streams.erasure``) is carried out by the stages like any other fact; the runner
deletes a key whose step returns no record (a changelog tombstone; for a referrer, its Redis
counters are retired), drops events of erased customers and forwards late facts for erased
referrers to their pseudonyms. Each process publishes its own metrics
(``streams.worker_metrics``) and writes a heartbeat (``streams.worker_heartbeats``).

A timer (on the leader) sends clock ticks to every partition of
``referrals.referrer-facts``, so the end of each hold period is decided from the log like
any other fact, and a replay confirms exactly what the first run confirmed.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import logging
import os
import random
import shutil
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import mode.loop
import redis
from faust.serializers import codecs
from kafka.errors import KafkaError
from prometheus_client import start_http_server

from referrals.code_registry import CodeRegistry
from referrals.kafka_admin import group_positions
from referrals.privacy import pseudonym
from referrals.redis_client import redis_client
from referrals.settings import KafkaSettings, Settings
from schemas.derived import DeadLetter
from schemas.events import ClickEvent, InboundEventBase, ShareEvent
from schemas.topics import (
    CLICKS,
    CUSTOMER_FACTS,
    DEADLETTER,
    INBOUND,
    INTERNAL,
    ORDERS,
    REFERRER_FACTS,
    REFUNDS,
    SHARES,
    SIGNUPS,
    VISITOR_FACTS,
)
from streams import (
    deadletter_counts,
    erasure_registry,
    gc_policy,
    record_codec,
    record_store,
    redis_views,
    referee_ledger,
    referrer_parts,
    worker_heartbeats,
    worker_metrics,
)
from streams.campaigns import CampaignBook
from streams.deadletter import classify, classify_internal
from streams.exit_codes import CRASH_EXIT_CODE
from streams.inbound import to_fact
from streams.part_store import DiskPartStore, PartStore
from streams.redis_sink import SnapshotWriter
from streams.referee_ledger import CodeOwner
from streams.referrer_rewards import Tick
from streams.stage_runner import Batch, ByName, StageRunner, Tables
from streams.topology import TABLES, prepare_topics, tick_record

log = logging.getLogger("referrals.worker")


class _Records(codecs.Codec):
    """The tables' values: ``streams.record_codec`` (a value it cannot read: ``record_codec.Unread``)."""

    def _loads(self, s: bytes) -> Any:
        return record_codec.decode_or_unread(s)

    def _dumps(self, obj: Any) -> bytes:
        return record_codec.encode(obj)


RECORDS_CODEC = "records"
codecs.register(RECORDS_CODEC, _Records())


class RecordTable(faust.Table):
    """Keys as raw bytes, values as records in their typed, versioned encoding (``streams.record_codec``)."""

    def _serializer_from_type(self, typ: Any) -> str:
        return "raw" if typ is bytes else RECORDS_CODEC

    freeze_gc = False  # ``streams.gc_freeze``: gc.freeze() once the table is recovered

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        unreadable(self, batch)
        super().apply_changelog_batch(batch)

    async def on_recovery_completed(self, active_tps: set, standby_tps: set) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        if self.freeze_gc:  # the recovered records stay: full collections need not walk them again
            gc.freeze()


def unreadable(table: faust.Table, batch: Iterable[Any]) -> None:
    """Stop the worker at a changelog value it cannot read (``record_codec.Unread``): a table is never built
    without one of its records (docs/worker.md: records of an older format)."""
    for event in batch:
        value = event.value if event.message.value is not None else None
        if isinstance(value, record_codec.Unread):
            crash(f"the {table.name} table's changelog holds a value this version cannot read at "
                  f"{event.message.topic}[{event.message.partition}]@{event.message.offset} ({value.reason}: "
                  f"{value.message}); start the worker's state fresh (docs/worker.md: records "
                  "of an older format)")


class ReferrerTable(RecordTable):
    """The referrer records, whose changelog holds each record in parts (``streams.referrer_parts``): recovery
    assembles them, and hands the records a crash left torn (referrer id -> newest part seq) of the partitions
    this worker now owns to ``repair`` before any input is read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._assembler: referrer_parts.Assembler | None = None
        self.repair: Callable[[dict[str, int]], Any] | None = None
        self.parts: PartStore | None = None  # where recovery folds what the records keep out of their objects

    @property
    def assembler(self) -> referrer_parts.Assembler:
        if self._assembler is None:  # the store exists once the app is set up
            self._assembler = referrer_parts.Assembler(ByName(self.data), self.parts)
        return self._assembler

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        unreadable(self, batch)
        positions = self.data._key_partition  # the memory store's, to drop revoked partitions
        for event in batch:
            value = None if event.message.value is None else event.value
            referrer_id = self.assembler.apply(event.key, value)
            positions[referrer_id.encode()] = event.message.partition

    async def on_recovery_completed(self, active_tps: set, standby_tps: set) -> None:
        settled = self.assembler.settled
        torn = self.assembler.finish()
        worker_metrics.SETTLED.inc(self.assembler.settled - settled)
        await super().on_recovery_completed(active_tps, standby_tps)  # the store drops what is not ours
        torn = {r: newest for r, newest in torn.items() if r.encode() in self.data}
        if torn and self.repair is not None:
            await self.repair(torn)


OWNERS_CACHED = 100_000  # referral codes whose owner the worker keeps (a code never changes owner)


def keep_on_disk(tables: Iterable[tuple[faust.Table, int]], root: Path) -> None:
    """The tables' records and key -> partition index on local disk, each table's number of its records as
    objects (``streams.record_store``), in place of the dicts of Faust's memory store, which keeps its behaviour
    otherwise (recovery from the changelog at every start, revoked partitions dropped)."""
    for table, cached in tables:
        store = table.data
        store.data = record_store.spilled_records(root / table.name, cached,
                                                  worker_metrics.RECORDS_LOADED.labels(table.name).inc)
        store._key_partition = record_store.spilled_partitions(root / f"{table.name}-partitions")
        log.info("%s: records on disk in %s, %d cached as objects", table.name, root, cached)
    atexit.register(shutil.rmtree, root, ignore_errors=True)  # scratch (a SIGKILL's: process_dir, next start)


def broker_credentials(kafka: KafkaSettings) -> faust.types.auth.CredentialsT | None:
    """How Faust (aiokafka) authenticates to Kafka: the same settings as every kafka-python client's."""
    context = kafka.ssl_context()
    if kafka.security_protocol.startswith("SASL_"):
        return faust.SASLCredentials(username=kafka.sasl_username, password=kafka.sasl_password.get_secret_value(),
                                     mechanism=kafka.sasl_mechanism, ssl_context=context)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def crash(what: str) -> None:
    """Stop at once, committing nothing: the inputs of the unfinished batch are delivered again."""
    log.critical("%s; the worker stops without committing (exit %d)", what, CRASH_EXIT_CODE, exc_info=True)
    logging.shutdown()
    os._exit(CRASH_EXIT_CODE)


# Redis errors that mean "not there now" (down, unreachable, still loading its AOF): waited out, not raised
REDIS_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


def redis_backoff() -> Iterator[float]:
    """The pauses between attempts while Redis is unavailable: 0.2 s, doubling, at most 5 s."""
    delay = 0.2
    while True:
        yield delay
        delay = min(delay * 2, 5.0)


def redis_at_start(call: Callable[[], Any], sleep: Callable[[float], None] = time.sleep) -> Any:
    """What the worker reads from Redis before it starts, Redis unavailable waited out with backoff (a worker
    restarted while Redis is down waits for it instead of crashing again and again)."""
    for delay in redis_backoff():
        try:
            return call()
        except REDIS_UNAVAILABLE as exc:
            log.warning("redis unavailable at start (%s); retrying in %.1f s", exc, delay)
            sleep(delay)


def build_app(settings: Settings, campaigns: CampaignBook) -> faust.App:
    cfg = settings.streams
    prefix = settings.kafka.topic_prefix
    partitions = settings.kafka.partitions
    key_prefix = settings.redis.key_prefix
    connection = redis_client(settings)
    registry = CodeRegistry(connection, key_prefix)
    writer = SnapshotWriter(connection)
    source = f"referrals-worker/{cfg.app_id}"

    app = faust.App(
        cfg.app_id, broker=[f"kafka://{server}" for server in settings.kafka.bootstrap.split(",")],
        store="memory://", processing_guarantee="at_least_once", topic_partitions=partitions,
        topic_replication_factor=settings.kafka.replicas,
        web_enabled=False, producer_acks=-1, datadir=str(settings.state_dir / "faust" / cfg.app_id),
        topic_allow_declare=True, consumer_auto_offset_reset="earliest", broker_commit_every=cfg.batch_size,
        broker_commit_interval=cfg.commit_interval_s, broker_session_timeout=cfg.session_timeout_s,
        broker_heartbeat_interval=cfg.session_timeout_s / 5, producer_request_timeout=cfg.kafka_timeout_s,
        broker_credentials=broker_credentials(settings.kafka), cython_optimizations=cfg.cython_optimizations,
        consumer_max_fetch_size=cfg.fetch_bytes_per_partition, stream_buffer_maxsize=cfg.stream_buffer,
    )

    def name(spec) -> str:
        return prefix + spec.name

    raw = {"key_serializer": "raw", "value_serializer": "raw", "partitions": partitions}
    visitor_in = app.topic(name(CLICKS), name(VISITOR_FACTS), **raw)
    customer_in = app.topic(name(SIGNUPS), name(ORDERS), name(REFUNDS), name(CUSTOMER_FACTS), **raw)
    referrer_in = app.topic(name(SHARES), name(REFERRER_FACTS), **raw)

    def table(table_name: str, kind: type[RecordTable] = RecordTable) -> faust.Table:
        return app.tables.add(kind(app, name=table_name, default=lambda: None, partitions=partitions,
                                   key_type=bytes, beacon=app.tables.beacon))

    visitors_table, customers_table = table(TABLES[0]), table(TABLES[1])
    referrers_table: ReferrerTable = table(TABLES[2], ReferrerTable)
    for t in (visitors_table, customers_table, referrers_table):
        t.freeze_gc = cfg.gc_freeze
    parts: PartStore | None = None  # what the referrer records keep out of their objects (``streams.part_store``)
    if cfg.records_on_disk:
        records_dir = record_store.process_dir(settings.state_dir / "faust" / cfg.app_id / "records")
        keep_on_disk(((visitors_table, cfg.visitor_records_cached), (customers_table, cfg.customer_records_cached),
                      (referrers_table, cfg.records_cached)), records_dir)
        parts = referrers_table.parts = DiskPartStore(records_dir / f"{referrers_table.name}-parts")
    changelog_of = {t.name: t.changelog_topic.get_topic_name() for t in (visitors_table, customers_table, referrers_table)}

    # -- shared plumbing -----------------------------------------------------------------------------

    def parse(event, batch: Batch, inbound: bool) -> Any:
        """The inbound event or a stage's own fact, or None after sending the record to the dead-letter topic."""
        message = event.message
        # Kafka's record time stands for "now" in the schema's not-in-the-future rule, so a replay judges alike.
        received = datetime.fromtimestamp(message.timestamp, UTC) if message.timestamp else datetime.now(UTC)
        parsed = (classify if inbound else classify_internal)(
            topic=message.topic, partition=message.partition, offset=message.offset, key=message.key,
            value=event.value, received_at=received, topic_prefix=prefix)
        if isinstance(parsed, DeadLetter):
            log.warning("dead letter from %s[%d]@%d: %s", message.topic, message.partition, message.offset,
                        parsed.reason)
            batch.add(name(DEADLETTER), message.topic.encode(), parsed.model_dump_json().encode())
            batch.deadletters.append((message.topic, parsed.reason, message.partition, message.offset))
            return None
        return parsed

    owners: dict[str, CodeOwner | None] = {}

    # -- the stages, run by one runner (``streams.stage_runner``: the glue the crash model and rebuild share) ----
    secret = settings.privacy.pseudonym_key.get_secret_value()

    def written(store, key: bytes, partition: int) -> None:
        store._key_partition[key] = partition  # the memory store's: see StageRunner._apply

    runner = StageRunner(
        campaigns, Tables(visitors_table.data, customers_table.data, referrers_table.data,
                          tuple(changelog_of[t] for t in TABLES)),
        partitions, topic_prefix=prefix, source=source,
        # erased customers (streams.erasure): their pseudonyms, from Redis and from the Erase facts seen
        erased=redis_at_start(lambda: erasure_registry.pseudonyms(connection, key_prefix)),
        pseudonym_of=lambda customer_id: pseudonym(secret, customer_id), written=written,
        horizon_days=settings.streams.dedup_horizon_days, visitor_cap=settings.streams.visitor_fact_cap,
        customer_limits=referee_ledger.Limits(orders=settings.streams.customer_orders_kept),
        dropped=lambda table, reason: worker_metrics.DROPPED.labels(table, reason).inc(), parts=parts,
        settled=worker_metrics.SETTLED.inc, recent_days=cfg.recent_activity_days)

    @app.timer(interval=10.0)
    async def refresh_erased() -> None:
        try:
            runner.erased.update(await asyncio.to_thread(erasure_registry.pseudonyms, connection, key_prefix))
        except redis.RedisError as exc:
            log.warning("erased customers not refreshed: %s", exc)

    async def look_up_codes(batch: Batch, parsed: list[Any]) -> None:
        """The owners of the batch's referral codes, in one round trip, before any event is stepped: Redis
        unavailable is waited out here, where nothing has changed yet. Codes never change owner, so a found
        owner is cached; an unknown code is asked again in the next batch (it may be issued meanwhile)."""
        wanted = {code for event in parsed if isinstance(event, InboundEventBase)
                  and (code := getattr(event, "referral_code", None))} - owners.keys()
        if wanted:
            found = await wait_for_redis(lambda: registry.resolve_many(wanted))
            batch.owners = found
            if len(owners) > OWNERS_CACHED:  # bounded: a code forgotten is looked up again
                owners.clear()
            owners.update((code, owner) for code, owner in batch.owners.items() if owner is not None)

    def resolver(batch: Batch) -> Callable[[str | None], CodeOwner | None]:
        def resolve(code: str | None) -> CodeOwner | None:
            if not code:
                return None
            if code in owners:
                return owners[code]
            return batch.owners[code]  # looked up by ``look_up_codes``
        return resolve

    chaos = random.Random()

    async def fault_point() -> None:
        """Fault injection (``streams.fault_kill_rate``, tests only): die here as a SIGKILL would."""
        if cfg.fault_kill_rate and chaos.random() < cfg.fault_kill_rate:
            await asyncio.sleep(chaos.uniform(0, 0.05))  # let some of what is in flight reach Kafka
            log.warning("fault injection: SIGKILL")
            os.kill(os.getpid(), signal.SIGKILL)

    async def finish(batch: Batch, counters_too: bool = False) -> None:
        """Send the batch's records, wait for Kafka to acknowledge them (and the table changes), then Redis."""
        sent = [await app.producer.send(topic, key, value, partition=None, timestamp=None, headers=headers)
                for topic, key, value, headers in batch.records]
        # the table changes, encoded as Faust's table would (its ``records`` codec: ``streams.record_codec``),
        # straight to the producer, in the order that tells torn writes apart (``Batch.table_changes``)
        sent += [await app.producer.send(topic, key, None if record is None else record_codec.encode(record),
                                         partition=partition, timestamp=None, headers=None)
                 for topic, key, partition, record in batch.table_changes()]
        await fault_point()
        # Every output and every table change acknowledged by Kafka, or the worker stops (and the batch
        # comes again): a flush that does not end must not stall it, and a failed send must not pass.
        await asyncio.wait_for(app.producer.flush(), timeout=2 * cfg.kafka_timeout_s)
        await asyncio.wait_for(asyncio.gather(*sent), timeout=2 * cfg.kafka_timeout_s)
        await fault_point()
        if batch.deadletters:
            await wait_for_redis(lambda: deadletter_counts.record(connection, key_prefix, batch.deadletters))
        if counters_too and (batch.dirty or batch.retired):
            # the view live now (``referrals rebuild`` may switch it), read before every batch it writes
            layout = await wait_for_redis(lambda: redis_views.active_layout(connection, key_prefix, partitions))
            if batch.dirty:
                snapshots = runner.snapshots(batch, layout)  # computed in the loop; written in a thread
                await wait_for_redis(lambda: writer.apply(snapshots))
            if batch.retired:
                await wait_for_redis(lambda: writer.retire(layout, list(batch.retired)))
        if batch.caused_at:
            now = datetime.now(UTC)
            for at in batch.caused_at:
                worker_metrics.FRESHNESS.observe(max(0.0, (now - at).total_seconds()))

    redis_waits: set[int] = set()  # the stages waiting for Redis now (the watchdog leaves them be)

    async def wait_for_redis(call: Callable[[], Any]) -> Any:
        """Redis unavailable is waited out with backoff (nothing is acknowledged meanwhile), not skipped."""
        me = id(asyncio.current_task())
        try:
            for delay in redis_backoff():
                try:
                    return await asyncio.to_thread(call)
                except REDIS_UNAVAILABLE as exc:
                    redis_waits.add(me)
                    log.warning("redis unavailable (%s); retrying in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
        finally:
            if me in redis_waits:
                redis_waits.discard(me)
                log.warning("redis available again")

    offsets = OffsetGuard()
    processed = [0]  # events this process finished, for its heartbeat

    inputs = [name(spec) for spec in (*INBOUND, *INTERNAL)]

    async def committed_offsets(partitions: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
        topics = sorted({t for t, _ in partitions})
        positions = await asyncio.to_thread(group_positions, settings, cfg.app_id, topics)
        return {tp: positions[tp][0] for tp in partitions}

    @app.on_partitions_assigned.connect
    async def restart_positions(app, assigned, **kwargs) -> None:
        """On every assignment: the guard forgets where the assigned partitions were (it learns their committed
        offsets before they are resumed: ``seek_before_streams_resume``); the tick index is read again (the
        tables may have changed under another owner)."""
        runner.reassigned()
        offsets.forget({(tp.topic, tp.partition) for tp in assigned if tp.topic in inputs})

    @app.on_rebalance_complete.connect
    async def seek_before_streams_resume(app, **kwargs) -> None:
        """Once the tables are recovered, before Faust resumes the input partitions: the consumer's flow stopped,
        the committed offsets read once, and each input partition sought there and the guard told to go on from
        there (read before anything is fetched, so that a gap Faust commits later cannot move the starting point).

        faust-streaming (0.15) resumes the input partitions while the consumer's flow is still on from the
        tables' recovery, and only then seeks them to their committed offsets (one round trip per partition:
        0.2-0.5 s here). Records fetched in between were processed, then the seek moved the consumer's read
        offset back, Faust took the rest of what it had fetched for a gap in offsets and acknowledged it, and
        dropped the records it fetched again as already read: after a SIGKILL, most restarts of the worker
        stopped on the ``OffsetGuard`` (and without it, records would be committed unprocessed). aiokafka's
        ``seek_to_committed`` besides leaves a partition without a committed offset (or at 0) where it is.
        Faust resumes the flow itself after its seek (docs/worker.md, point 6). Stopping the flow here drops a
        standby changelog record Faust may be delivering: the tables are in memory and every recovery reads the
        changelog from its start, so a standby's content is never used (Faust stops the flow at every rebalance
        in the same way)."""
        consumer = app.consumer
        consumer.stop_flow()
        mine = {tp for tp in consumer.assignment() if tp.topic in inputs}
        if mine:
            committed = await committed_offsets({(tp.topic, tp.partition) for tp in mine})
            offsets.start(committed)
            await consumer.seek_wait({tp: committed[(tp.topic, tp.partition)] for tp in mine})

    after_full_gc = (gc_policy.FullCollections(freeze=cfg.gc_freeze_survivors, trim=cfg.trim_after_gc)
                    if cfg.gc_freeze_survivors or cfg.trim_after_gc else None)

    async def run_stage(stream, agent: str, inbound: set[str],
                        handle: Callable[[Any, Any, Batch], None], counters_too: bool = False) -> None:
        """Batches of events; Faust acknowledges a batch's events only after this loop body returns. A batch's
        inbound events (topics in ``inbound``) and the stage's own facts are parsed first and the codes looked
        up, then every event is stepped: ``handle(event, parsed, batch)``, ``parsed`` None for a dead letter."""
        events_done, batches_done = worker_metrics.EVENTS.labels(agent), worker_metrics.BATCHES.labels(agent)
        batch_seconds = worker_metrics.BATCH_SECONDS.labels(agent)
        deadletters_sent = worker_metrics.DEADLETTERS.labels(agent)
        async for events in stream.take_events(cfg.batch_size, within=cfg.batch_wait_s):
            started = time.perf_counter()
            batch = Batch()
            try:
                new = {(e.message.topic, e.message.partition) for e in events} - offsets.known()
                if new:  # not seen at assignment (should not happen): from the commit as it is now
                    offsets.start(await committed_offsets(new))
                gap = offsets.check([(e.message.topic, e.message.partition, e.message.offset) for e in events])
                if gap:
                    crash(f"offset gap on {gap[0]}[{gap[1]}]: expected {gap[2]}, got {gap[3]} (records skipped "
                          "by the consumer would be committed unprocessed)")
                parsed = [parse(event, batch, event.message.topic in inbound) for event in events]
                await look_up_codes(batch, parsed)
                for event, inbound_event in zip(events, parsed, strict=True):
                    batch.partition = event.message.partition
                    if inbound_event is not None:  # None: dead-lettered
                        handle(event, inbound_event, batch)
                await finish(batch, counters_too)
                runner.done(batch)
                events_done.inc(len(events))
                processed[0] += len(events)
                batches_done.inc()
                deadletters_sent.inc(len(batch.deadletters))
                batch_seconds.observe(time.perf_counter() - started)
                if after_full_gc is not None:
                    after_full_gc.at_rest()
            except Exception:  # anything unexpected: restart from the committed offsets
                crash(f"a batch of {stream} failed")

    # -- the agents: each record to its stage (inbound events as facts, the stages' own facts as they are) --------

    def visitor_event(event, parsed, batch: Batch) -> None:
        message = event.message
        if message.topic == name(CLICKS):
            if isinstance(parsed, ClickEvent):
                runner.visitor(*to_fact(parsed, resolver(batch)), batch)
        else:
            runner.visitor(message.key.decode(), parsed, batch)

    @app.agent(visitor_in, name="visitors")
    async def visitors(stream):
        await run_stage(stream, "visitors", {name(CLICKS)}, visitor_event)

    def customer_event(event, parsed, batch: Batch) -> None:
        message = event.message
        if message.topic == name(CUSTOMER_FACTS):
            runner.customer(message.key.decode(), parsed, batch)
        else:
            runner.customer(*to_fact(parsed, resolver(batch)), batch)

    @app.agent(customer_in, name="customers")
    async def customers(stream):
        await run_stage(stream, "customers", {name(SIGNUPS), name(ORDERS), name(REFUNDS)}, customer_event)

    async def repair_torn(torn: dict[str, int]) -> None:
        """Records a crash left torn (``streams.referrer_parts``), repaired before any input is read: each decided
        again, its outputs sent (and acknowledged) and its counters written first, then all its parts and its
        header (``StageRunner.repair``). Cut short anywhere, it is still torn at the next recovery, and repaired
        again alike."""
        outputs, changelog = runner.repair(torn)
        log.warning("%d referrer records torn by a crash: repaired, %d outputs sent again", len(torn),
                    len(outputs.records))
        await finish(outputs, counters_too=True)
        await finish(changelog)

    referrers_table.repair = repair_torn

    def referrer_event(event, parsed, batch: Batch) -> None:
        message = event.message
        if message.topic == name(SHARES):
            if isinstance(parsed, ShareEvent):
                runner.referrer(*to_fact(parsed, resolver(batch)), batch)
        elif isinstance(parsed, Tick):
            runner.tick(message.partition, parsed.now, batch)
        else:
            runner.referrer(message.key.decode(), parsed, batch)

    @app.agent(referrer_in, name="referrers")
    async def referrers(stream):
        await run_stage(stream, "referrers", {name(SHARES)}, referrer_event, counters_too=True)

    # -- the watchdog --------------------------------------------------------------------------------

    if cfg.stall_timeout_s > 0:
        watch = StallWatch(cfg.stall_timeout_s)

        @app.timer(interval=cfg.stall_timeout_s / 4)
        async def watchdog() -> None:
            # restoring tables commits nothing, nor does a stage waiting for Redis: neither is a stall
            if not app.tables.recovery.completed.is_set() or redis_waits:
                watch.reset()
                return
            stalled = await stalled_partitions(watch, lambda: group_positions(settings, cfg.app_id, inputs))
            if stalled:
                crash(f"no offset committed for {cfg.stall_timeout_s:.0f} s on {len(stalled)} partitions with "
                      f"records waiting, first {stalled[0]} (a stalled consumer)")

    # -- the heartbeat -------------------------------------------------------------------------------

    me = worker_heartbeats.WorkerId.of_this_process(cfg.app_id)

    @app.timer(interval=worker_heartbeats.INTERVAL_S)
    async def heartbeat() -> None:
        """Where ``referrals status`` sees this worker: alive when, how many events, which partitions."""
        assigned = sorted(f"{tp.topic}[{tp.partition}]" for tp in app.consumer.assignment()
                          if tp.topic in inputs)
        beat = worker_heartbeats.Heartbeat(me, datetime.now(UTC), processed[0], len(assigned))
        try:
            await asyncio.to_thread(worker_heartbeats.beat, connection, key_prefix, beat)
        except redis.RedisError as exc:  # the batches wait out Redis; a missed heartbeat is only late
            log.warning("heartbeat not written: %s", exc)

    # -- the clock -----------------------------------------------------------------------------------

    if cfg.tick_interval_s > 0:
        @app.timer(interval=cfg.tick_interval_s, on_leader=True)
        async def tick() -> None:
            await send_ticks(app.producer, name(REFERRER_FACTS), partitions, datetime.now(UTC))

    return app


async def send_ticks(producer, topic: str, partitions: int, now: datetime) -> None:
    """A tick to every partition: each referrer partition ends its due hold periods at ``now``."""
    key, value = tick_record(now)
    for p in range(partitions):
        await producer.send(topic, key, value, partition=p, timestamp=None, headers=None)
    await producer.flush()


class OffsetGuard:
    """Every record of a partition processed, none skipped: offsets go on one by one from the commit.

    faust-streaming counts a jump in offsets as acknowledged (compacted topics have such gaps), and
    after a restart it could jump ahead (faust-streaming/faust#216, #221; seen here under repeated
    SIGKILLs as committed events without effect): it resumed the input partitions before it sought
    them, which ``seek_before_streams_resume`` now prevents (#23). The worker's input topics are
    written without transactions, so their offsets have no gaps: a jump means records would be
    committed unprocessed, and the worker stops (exit 70) instead: the safety net.
    """

    def __init__(self) -> None:
        self.next: dict[tuple[str, int], int] = {}

    def known(self) -> set[tuple[str, int]]:
        return set(self.next)

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        for tp in partitions:
            self.next.pop(tp, None)

    def start(self, committed: dict[tuple[str, int], int]) -> None:
        for tp, offset in committed.items():
            self.next.setdefault(tp, offset)

    def check(self, seen: list[tuple[str, int, int]]) -> tuple[str, int, int, int] | None:
        """The first gap in ``seen`` (topic, partition, offset) as (topic, partition, expected, got)."""
        for topic, partition, offset in seen:
            expected = self.next[(topic, partition)]
            if offset > expected:
                return topic, partition, expected, offset
            self.next[(topic, partition)] = max(expected, offset + 1)  # an earlier offset: a replay
        return None


class StallWatch:
    """Stalled: a partition with records waiting whose committed offset has not moved for ``timeout_s``.

    faust-streaming can, rarely, come back from a restart with a partition assigned that it never
    fetches (faust-streaming/faust#523; seen here after SIGKILLs): the other partitions move on, that
    one does not. Nothing is lost, but nothing moves either; the worker then stops (exit 70) and its
    restart policy starts it again.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.since: dict[Any, tuple[int, float]] = {}  # partition -> (committed offset, first seen at)

    def reset(self) -> None:
        self.since.clear()

    def stalled(self, now: float, positions: dict[Any, tuple[int, int]]) -> list[Any]:
        """The partitions stalled, given each one's (committed offset, end offset)."""
        out = []
        for tp, (committed, end) in sorted(positions.items()):
            seen = self.since.get(tp)
            if end <= committed:
                self.since.pop(tp, None)
            elif seen is None or seen[0] != committed:
                self.since[tp] = (committed, now)
            elif now - seen[1] >= self.timeout_s:
                out.append(tp)
        return out


async def stalled_partitions(watch: StallWatch, read_positions: Callable[[], dict[Any, tuple[int, int]]]) -> list[Any]:
    """The partitions ``watch`` finds stalled, reading the group's positions in a thread. Kafka not answering them
    (a broker restarting, its group coordinator still loading: ``CoordinatorLoadInProgressError``) is no stall of
    this worker's: its consumer waits for Kafka too. The watch starts over and looks again at its next round
    (before, the error ended the worker after a broker restart)."""
    try:
        positions = await asyncio.to_thread(read_positions)
    except KafkaError as exc:
        log.warning("stall watch: the committed offsets could not be read (%s); looking again next round", exc)
        watch.reset()
        return []
    return watch.stalled(time.monotonic(), positions)


def run_worker(settings: Settings, campaigns: CampaignBook, loglevel: str = "warn") -> None:
    mode.loop.use("uvloop")  # Faust's event loop on uvloop: its per-message tasks and futures cost less
    prepare_topics(settings)
    (settings.state_dir / "faust" / settings.streams.app_id).mkdir(parents=True, exist_ok=True)
    app = build_app(settings, campaigns)
    if settings.streams.metrics_port:
        worker_metrics.watch_gc()
        start_http_server(settings.streams.metrics_port, addr=settings.streams.metrics_host)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    started = time.monotonic()
    log.info("worker %s starting", settings.streams.app_id)
    worker.execute_from_commandline()
    log.info("worker stopped after %.0f s", time.monotonic() - started)
