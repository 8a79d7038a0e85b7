"""The raw limit of a Faust agent: the worker's own Faust set-up (same broker settings, raw
serializers, batches taken with ``take_events``) around an agent that does nothing with its
events. Whatever the pipeline does per event comes on top of this.

Run as ``python -m bench.faust_floor TOPIC RECORDS OUT``: consumes RECORDS records of TOPIC
(as a group of its own), writes ``{"records_per_s": ...}`` to OUT and exits. On uvloop, as the
worker runs (``BENCH_LOOP`` names another loop); ``BENCH_CYTHON=1`` turns on faust-streaming's
opt-in Cython fast paths (``cython_optimizations``).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

import faust


def main(topic: str, records: int, out: str) -> None:
    import mode.loop

    mode.loop.use(os.environ.get("BENCH_LOOP") or "uvloop")
    from referrals.settings import Settings
    from streams.app import broker_credentials

    settings = Settings()
    cfg = settings.streams
    name = f"bench-floor-{uuid.uuid4().hex[:8]}"
    app = faust.App(
        name, broker=[f"kafka://{server}" for server in settings.kafka.bootstrap.split(",")], store="memory://",
        broker_credentials=broker_credentials(settings.kafka),
        datadir=os.path.join(os.path.dirname(os.path.abspath(out)), f"{name}-data"),  # not the working directory
        processing_guarantee="at_least_once", web_enabled=False, consumer_auto_offset_reset="earliest",
        broker_commit_every=cfg.batch_size, broker_commit_interval=cfg.commit_interval_s,
        topic_allow_declare=False, cython_optimizations=os.environ.get("BENCH_CYTHON") == "1",
    )
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
    seen = [0]
    began: list[float] = []

    @app.agent(source)
    async def empty(stream):
        async for events in stream.take_events(cfg.batch_size, within=cfg.batch_wait_s):
            if not began:
                began.append(time.perf_counter())
            for event in events:
                json.loads(event.value)
            seen[0] += len(events)
            if seen[0] >= records:
                with open(out, "w") as f:
                    json.dump({"records_per_s": seen[0] / (time.perf_counter() - began[0])}, f)
                os._exit(0)

    worker = faust.Worker(app, loglevel="warn", quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
