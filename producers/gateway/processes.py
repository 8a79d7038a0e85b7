"""The gateway as several processes: uvicorn's supervisor starts ``processes`` workers on one listening
socket; each builds its application from the environment (``app_from_environment``), and the supervisor
serves ``/metrics`` for all of them from prometheus-client's multiprocess files.

- Metrics: every worker writes its counters and histograms to files in ``metrics_dir`` (cleared at each
  start, so a restart does not count the last run again); the supervisor's ``/metrics`` adds them up,
  including those of a worker that died and was restarted.
- A worker whose supervisor is gone (SIGKILLed) stops within ``ORPHAN_CHECK_S`` instead of serving on as an
  orphan: as it would if it had been killed with it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from referrals.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client reads it when it is imported
ORPHAN_CHECK_S = 0.1

log = logging.getLogger("referrals.gateway")


def metrics_dir(settings: Settings, port: int) -> Path:
    return settings.state_dir / "gateway-metrics" / str(port)


def prepare_metrics(settings: Settings, port: int) -> Path:
    """An empty multiprocess directory for a gateway on ``port``, in the environment its workers inherit;
    the supervisor's ``/metrics`` over it, if the settings want one."""
    folder = metrics_dir(settings, port)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    if settings.gateway.metrics_port:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(folder))
        start_http_server(settings.gateway.metrics_port, addr=settings.gateway.metrics_host, registry=registry)
    return folder


def stop_when_orphaned(interval_s: float = ORPHAN_CHECK_S) -> None:
    """In a worker: SIGTERM itself (a graceful stop: requests in flight are answered) once its parent, the
    supervisor, is gone. The parent is the one that spawned the process (multiprocessing records it at the
    start), not the one it has when the application loads: a supervisor killed in between left a worker
    serving on, its new parent taken for the supervisor (seen once in a fresh-clone run)."""
    spawner = multiprocessing.parent_process()
    parent = spawner.pid if spawner is not None else os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        log.warning("the gateway's supervisor is gone: this worker stops")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()
