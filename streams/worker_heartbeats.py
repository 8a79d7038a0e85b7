"""Worker heartbeats in Redis: which workers run, since when, how far they got.

    <key_prefix>workers   hash  "<app id>/<host>/<pid>" -> JSON {seen_at, events, partitions}

Each worker writes its entry every ``INTERVAL_S`` seconds; ``referrals status`` shows the
entries with their age (a worker killed keeps its last entry, which ages) and drops
entries older than ``FORGET_AFTER_S``.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis

INTERVAL_S = 5.0
FORGET_AFTER_S = 3600.0


@dataclass(frozen=True, slots=True)
class WorkerId:
    app_id: str
    host: str
    pid: int

    @classmethod
    def of_this_process(cls, app_id: str) -> WorkerId:
        return cls(app_id, socket.gethostname(), os.getpid())

    def field(self) -> str:
        return f"{self.app_id}/{self.host}/{self.pid}"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    worker: WorkerId
    seen_at: datetime
    events: int  # processed by this process since it started
    partitions: int  # input partitions assigned to it


def key(key_prefix: str) -> str:
    return f"{key_prefix}workers"


def beat(client: redis.Redis, key_prefix: str, heartbeat: Heartbeat) -> None:
    client.hset(key(key_prefix), heartbeat.worker.field(), json.dumps({
        "seen_at": heartbeat.seen_at.isoformat(), "events": heartbeat.events, "partitions": heartbeat.partitions}))


def read(client: redis.Redis, key_prefix: str, now: datetime, app_id: str | None = None) -> list[Heartbeat]:
    """The heartbeats, newest first; entries older than ``FORGET_AFTER_S`` are removed."""
    out = []
    for field, value in client.hgetall(key(key_prefix)).items():
        field = field.decode() if isinstance(field, bytes) else field
        app, host, pid = field.rsplit("/", 2)
        data = json.loads(value)
        seen = datetime.fromisoformat(data["seen_at"])
        if now - seen > timedelta(seconds=FORGET_AFTER_S):
            client.hdel(key(key_prefix), field)
            continue
        if app_id is None or app == app_id:
            out.append(Heartbeat(WorkerId(app, host, int(pid)), seen, data["events"], data["partitions"]))
    return sorted(out, key=lambda h: h.seen_at, reverse=True)
