"""Where a process's time goes, from py-spy's collapsed stacks (``py-spy record --format raw``). Pure.

Each line of the file is ``frame;frame;...;leaf count``, led by ``process <pid>:"<command>"`` frames when
py-spy followed subprocesses (the gateway's worker processes: their samples are summed together). Only the
main threads (the event loops) are summed; threads that wait for Redis or Kafka are left out. A frame is
``function (path:line)``; the package is the first part of the path that names a library or one
of the project's packages.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

_PROCESSES = re.compile(r'^(?:process \d+:"[^"]*";)+')
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<path>[^:()]*)(?::\d+)?\)$")
PACKAGES = ("fastapi", "starlette", "uvicorn", "anyio", "faust", "aiokafka", "mode", "asyncio", "selectors", "redis",
            "kafka", "pydantic", "prometheus_client", "streams", "schemas", "producers", "consumers", "dataclasses",
            "json", "pickle", "copyreg", "collections", "gzip", "threading", "msgspec", "httptools", "uvloop",
            "h11", "multiprocessing")


@dataclass
class Profile:
    samples: int
    by_package: Counter  # package of the leaf frame -> samples (self time)
    inclusive: Counter  # function (file) -> samples with it anywhere on the stack

    def share(self, counter: Counter, top: int) -> list[tuple[str, float]]:
        return [(name, 100.0 * n / max(self.samples, 1)) for name, n in counter.most_common(top)]


def package_of(path: str) -> str:
    parts = re.split(r"[/\\]", path)
    for part in parts:
        name = part.removesuffix(".py")
        if name in PACKAGES:
            return name
    return parts[-1] if parts else path


# a main thread's first frame: ``python -m ...``, or a worker process multiprocessing spawned (``python -c ...``)
MAIN_THREADS = ("_run_module_as_main", "<module> (<string>:1)")


def summarise(lines: list[str], main_threads: tuple[str, ...] = MAIN_THREADS) -> Profile:
    by_package: Counter = Counter()
    inclusive: Counter = Counter()
    samples = 0
    for line in lines:
        line = line.rstrip()
        if not line or " " not in line:
            continue
        stack, count = line.rsplit(" ", 1)
        frames = _PROCESSES.sub("", stack).split(";")  # a command line may hold a ";" itself
        if not frames[0].startswith(main_threads):
            continue
        n = int(count)
        samples += n
        leaf = _FRAME.match(frames[-1])
        by_package[package_of(leaf.group("path")) if leaf else frames[-1]] += n
        seen = set()
        for frame in frames:
            m = _FRAME.match(frame)
            name = f"{m.group('function')} ({m.group('path').rsplit('/', 1)[-1]})" if m else frame
            if name not in seen:
                seen.add(name)
                inclusive[name] += n
    return Profile(samples, by_package, inclusive)
