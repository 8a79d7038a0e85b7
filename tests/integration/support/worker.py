"""Running the real stream worker (`referrals worker`) in tests, and reading what it wrote."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from kafka import KafkaProducer

from deploy.local import worker_process as supervised
from producers.simulate import KafkaTarget, Summary, backdated_simulation, register_codes
from producers.simulator import SimulationConfig
from referrals.code_registry import CodeRegistry
from referrals.redis_client import redis_client
from referrals.settings import Settings, changed
from schemas import parse_event
from schemas.topics import REFERRER_FACTS
from streams.campaigns import load_campaigns
from streams.counters import NO_CHANNEL, referral_cells
from streams.redis_layout import RedisLayout
from streams.redis_views import active_prefix
from streams.referee_ledger import CodeOwner
from streams.topology import tick_record
from tests.integration.support.kafka_reading import read_topic
from tests.oracle.pipeline import ReferencePipeline


def guards_stopped(log_tail: str) -> bool:
    """Whether the worker stopped itself on its guards (a stalled consumer, an offset gap): restarted, as a
    restart policy would. Any other crash fails the test."""
    return "a stalled consumer" in log_tail or "offset gap on" in log_tail


class WorkerProcess(supervised.WorkerProcess):
    """``referrals worker`` as a child process with the test's own topics, Redis keys and group."""

    def __init__(self, settings: Settings, log: Path) -> None:
        super().__init__(settings, log, restart_when=guards_stopped)

    def run_beside(self, args: list[str], timeout_s: float) -> subprocess.CompletedProcess:
        """Run a command (``referrals erase``, which waits for the worker) while keeping the worker alive as
        its restart policy would: its guards may stop it meanwhile (faust-streaming/faust#523, see
        ``streams.app.StallWatch``), and a command waiting for it must then not wait for nothing."""
        with subprocess.Popen(args, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) as proc:
            deadline = time.monotonic() + timeout_s
            try:
                while True:
                    try:  # read as it goes: a command filling its pipe would otherwise wait for the test forever
                        out, err = proc.communicate(timeout=0.5)
                        break
                    except subprocess.TimeoutExpired:
                        self.keep_alive()  # fails if the worker died otherwise: the command goes too (below)
                        if time.monotonic() > deadline:
                            raise AssertionError(f"{' '.join(args[3:5])} did not end within {timeout_s:.0f} s"
                                                 ) from None
            except BaseException:
                proc.kill()
                proc.communicate()
                raise
        return subprocess.CompletedProcess(args, proc.returncode, out, err)


def simulated(settings: Settings, seed: int, n: int, customers: int = 40) -> list[dict[str, Any]]:
    """``n`` simulated events over about the last 40 days (so some hold periods have ended), codes registered."""
    now = datetime.now(UTC)
    sim = backdated_simulation(SimulationConfig(customers=customers), seed=seed, count=n, days=40, now=now)
    register_codes(settings, sim)
    events = []
    for at, event in sim.events():
        if sim.start + timedelta(seconds=at) > now - timedelta(minutes=1) or len(events) >= n:
            break
        events.append(event)
    return events


def send(settings: Settings, events: list[dict[str, Any]]) -> None:
    target = KafkaTarget(settings)
    try:
        for i in range(0, len(events), 500):
            target.send(events[i:i + 500], Summary())
    finally:
        target.close()


@dataclass
class Expected:
    funnel: Counter
    rewards: dict[str, tuple[str, int]]
    referrals: dict[str, str]


def reference(settings: Settings, events: list[dict[str, Any]], now: datetime | None = None,
              incremental: bool = False):
    """The in-memory reference pipeline fed with these events and ticked at ``now``; with its code lookup
    and the parsed events (``incremental``: its referrer stage the incremental core, not the reference model)."""
    registry = CodeRegistry.from_settings(settings)
    cache: dict[str, CodeOwner | None] = {}

    def resolve(code: str) -> CodeOwner | None:
        if code not in cache:
            cache[code] = registry.resolve(code)
        return cache[code]

    ref = ReferencePipeline(load_campaigns(settings.streams.campaigns_file), resolve, incremental=incremental)
    parsed = [parse_event(e) for e in events]
    for e in parsed:
        ref.feed(e)
    ref.tick(now or datetime.now(UTC))
    return ref, resolve, parsed


def expected(settings: Settings, events: list[dict[str, Any]], now: datetime | None = None,
             incremental: bool = False) -> Expected:
    """What the pure core decides for these events (in time order), ticked at ``now``."""
    ref, resolve, parsed = reference(settings, events, now, incremental)
    funnel: Counter = Counter()
    seen = set()
    for e in parsed:
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        if e.type == "share":
            funnel[f"share:{e.channel.value}"] += 1
        elif e.type == "click" and resolve(e.referral_code):
            funnel[f"click:{e.channel.value if e.channel else NO_CHANNEL}"] += 1
    for state in ref.referrers.values():
        for (stage, _campaign, channel, _day), n in referral_cells(state.referrals.values()).items():
            funnel[f"{stage}:{channel}"] += n
    rewards = drop_ghosts({k: (w.status.value, w.points) for k, w in ref.rewards().items()})
    referrals = {k: r.status for k, r in ref.referrals().items()}
    return Expected(+funnel, rewards, referrals)


# A tick at this time ends no hold period: ``expected(..., now=BEFORE_ANY_HOLD_ENDS)`` is the books before the
# clock has confirmed anything.
BEFORE_ANY_HOLD_ENDS = datetime(2000, 1, 1, tzinfo=UTC)


def held(settings: Settings, events: list[dict[str, Any]], incremental: bool = False) -> Expected:
    """What the pure core decides for these events before any tick: every hold period still running."""
    return expected(settings, events, now=BEFORE_ANY_HOLD_ENDS, incremental=incremental)


def tick(settings: Settings, now: datetime) -> None:
    """The clock's tick, sent by the test: every referrer partition ends the hold periods due at ``now``.

    The fault tests run their workers with the clock off (``tick_interval_s=0``) and tick once every event
    is in. A wall-clock tick during the run would end the (backdated) hold of a referral whose refund,
    weeks late by then, a fault has delayed behind the tick: final, the refund recorded but not revoking
    (the documented rule for refunds later than the lateness). That differs from the uninterrupted run by
    arrival order, not by anything lost or doubled."""
    producer = KafkaProducer(**settings.kafka.client_options(), acks="all")
    key, value = tick_record(now)
    try:
        for p in range(settings.kafka.partitions):
            producer.send(settings.kafka.topic_prefix + REFERRER_FACTS.name, key=key, value=value, partition=p)
        producer.flush()
    finally:
        producer.close()


def drop_ghosts(rewards: dict[str, tuple[str, int]]) -> dict[str, tuple[str, int]]:
    """Leave out rewards revoked with 0 points: announced before a late event voided them, so they
    exist or not depending on arrival order (documented); every other reward must match exactly."""
    return {k: v for k, v in rewards.items() if v != ("revoked", 0)}


def client(settings: Settings) -> redis.Redis:
    """The tests' reading client: answers as ``str``; a patient timeout (the tests read whole views)."""
    return redis_client(settings, timeout_s=30, decode_responses=True)


def view_prefix(settings: Settings) -> str:
    """The live view's key prefix (``referrals rebuild`` may have switched it)."""
    with client(settings) as c:
        return active_prefix(c, settings.redis.key_prefix)


def summed_hashes(settings: Settings, keys: Callable[[RedisLayout], Iterable[str]],
                  fields: tuple[str, ...] = ("",)) -> Counter:
    """The live view's hashes named by ``keys(layout)``, summed field by field (fields starting with one
    of ``fields`` only)."""
    layout = RedisLayout(view_prefix(settings), settings.kafka.partitions)
    total: Counter = Counter()
    with client(settings) as c:
        for key in keys(layout):
            for field_, value in c.hgetall(key).items():
                if field_.startswith(fields):
                    total[field_] += int(value)
    return +total


def redis_funnel(settings: Settings, campaign: str = "default") -> Counter:
    return summed_hashes(settings, lambda layout: layout.all_funnels(campaign))


def redis_dump(settings: Settings, prefix: str | None = None, bookkeeping: bool = False) -> dict[str, Any]:
    """Every key of the live view (or of ``prefix``), prefix removed; the writer's bookkeeping (fields ``_seq``,
    ``_funnel``, the cells keys) left out unless asked for. A welcome reward's own fence (``_seq:<reward id>``) is
    left out either way: the live worker's partial snapshots set it to the seq at which the reward last
    changed, a rebuild's complete ones to the record's seq, and either fences alike."""
    prefix = prefix or view_prefix(settings)
    out: dict[str, Any] = {}
    with client(settings) as c:
        for key in sorted(c.scan_iter(match=f"{prefix}{{ref:*")):
            if not bookkeeping and "}:cells:" in key:
                continue  # the writer's: what it applied per cell (streams.redis_sink)
            kind = c.type(key)
            if kind == "hash":
                value: Any = {k: v.replace(prefix, "<view>") if k == "_funnel" else v  # _funnel names keys
                              for k, v in c.hgetall(key).items()
                              if (bookkeeping and not k.startswith("_seq:")) or not k.startswith("_")}
            elif kind == "set":
                value = sorted(c.smembers(key))
            else:
                value = dict(c.zrange(key, 0, -1, withscores=True))
            out[key[len(prefix):]] = value
    return out


def redis_referrals(settings: Settings) -> dict[str, str]:
    prefix = view_prefix(settings)
    out: dict[str, str] = {}
    with client(settings) as c:
        for key in c.scan_iter(match=f"{prefix}{{ref:*}}:referrals:*"):
            out.update({k: json.loads(v)["status"] for k, v in c.hgetall(key).items()})
    return out


def reward_changes(settings: Settings, timeout_s: float = 60) -> list[dict[str, Any]]:
    """Every change on the reward log, each reward's in log order (read to its end: a restarted worker re-sends
    a busy referrer's every reward once, so the log can be long)."""
    return [json.loads(record.value) for record in read_topic(
        settings, settings.kafka.topic_prefix + "referrals.rewards", expected=0, timeout_s=timeout_s)]


def latest_rewards(settings: Settings) -> dict[str, tuple[str, int]]:
    """The reward log rebuilt: the last change of each reward id wins."""
    return drop_ghosts({change["reward_id"]: (change["status"], change["points"])
                        for change in reward_changes(settings)})


def redis_ledger(settings: Settings, campaign: str = "default") -> Counter:
    """The campaign's reward ledger in Redis, summed over its partitions (rewards and points by role and status)."""
    return summed_hashes(settings, lambda layout: (layout.ledger(p, campaign) for p in range(layout.partitions)),
                         fields=("rewards:", "points:"))


def ledger_from_reward_log(settings: Settings, campaign: str = "default") -> Counter:
    """The ledger as the reward log says it should be: every (reward, status) reached, once, with its points."""
    reached: dict[tuple[str, str], tuple[str, int]] = {}
    for change in reward_changes(settings):
        if (change.get("campaign_id") or "default") == campaign:
            reached.setdefault((change["reward_id"], change["status"]), (change["role"], change["points"]))
    total: Counter = Counter()
    for (_reward, status), (role, points) in reached.items():
        total[f"rewards:{role}:{status}"] += 1
        total[f"points:{role}:{status}"] += points
    return +total


def dict_diff(got: Any, want: Any) -> Any:
    """What differs between two dumped values: for hashes, (got, wanted) by field; else the two."""
    if isinstance(got, dict) and isinstance(want, dict):
        return {k: (got.get(k), want.get(k)) for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)}
    return got, want


def assert_same_books(run: Settings, calm: Settings) -> None:
    """``run``'s Redis view equals the uninterrupted ``calm`` run's, key by key, but the ledgers: they count
    every status a reward reached, so a reward a late event voided (a ghost, which exists or not depending on
    arrival order, see ``drop_ghosts``) counts there; each must equal what its own reward log says was
    reached, each (reward, status) once: nothing lost, nothing doubled."""
    def without_ledgers(dump: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in dump.items() if ":ledger:" not in k}

    got, want = without_ledgers(redis_dump(run)), without_ledgers(redis_dump(calm))
    assert got == want, {"only in the run": sorted(set(got) - set(want))[:5],
                         "only in the uninterrupted run": sorted(set(want) - set(got))[:5],
                         "differing": {k: dict_diff(got[k], want[k]) for k in sorted(set(got) & set(want))
                                       if got[k] != want[k]}}
    for settings in (run, calm):
        assert redis_ledger(settings) == ledger_from_reward_log(settings)


def matches(settings: Settings, want: Expected, worker: WorkerProcess | None) -> Callable[[], tuple[bool, Any]]:
    def check() -> tuple[bool, Any]:
        if worker is not None:
            worker.assert_alive()
        funnel, referrals, rewards = redis_funnel(settings), redis_referrals(settings), latest_rewards(settings)
        done = funnel == want.funnel and referrals == want.referrals and rewards == want.rewards
        return done, {
            "funnel missing": want.funnel - funnel, "funnel extra": funnel - want.funnel,
            "referrals differing": {k: (v, referrals.get(k)) for k, v in want.referrals.items()
                                    if referrals.get(k) != v} | {k: (None, v) for k, v in referrals.items()
                                                                 if k not in want.referrals},
            "rewards differing": {k: (v, rewards.get(k)) for k, v in want.rewards.items() if rewards.get(k) != v}
            | {k: (None, v) for k, v in rewards.items() if k not in want.rewards},
        }
    return check


def held_then_ticked(events: list[dict[str, Any]], runs: list[tuple[Settings, WorkerProcess | None]],
                     timeout_s: float, wait: Callable[[Callable[[], tuple[bool, Any]], float], Any] | None = None,
                     incremental: bool = False) -> Expected:
    """Each run (clock off) reaches the pure core's books before any hold ends, then gets one tick at the same
    moment and reaches the books ticked there (see ``tick``); ``wait(check, timeout_s)`` waits for each. The
    codes are looked up in the first run's registry (``wait``: ``wait_for`` unless given). Returns the ticked
    books."""
    wait = wait or wait_for
    want = held(runs[0][0], events, incremental)
    for settings, worker in runs:
        wait(matches(settings, want, worker), timeout_s)
    now = datetime.now(UTC)
    for settings, _ in runs:
        tick(settings, now)
    want = expected(runs[0][0], events, now, incremental)
    for settings, worker in runs:
        wait(matches(settings, want, worker), timeout_s)
    return want


def supervise(worker: WorkerProcess, check: Callable[[], tuple[bool, Any]], *, faults: int,
              timeout_s: float) -> int:
    """Restart the worker whenever it dies, until ``check`` passes; after ``faults`` SIGKILLs, without faults.

    A death must be a SIGKILL (the fault injection) or the worker's own guards stopping it (exit 70:
    a stalled consumer, an offset gap), never a crash of another kind. Returns the SIGKILLs.
    """
    kills = 0
    deadline = time.monotonic() + timeout_s
    while True:
        code = worker.current.poll()
        if code is not None:
            guarded = worker.restartable(code)
            assert code == -signal.SIGKILL or guarded, f"the worker exited with {code}:\n{worker.tail()}"
            kills += int(code == -signal.SIGKILL)
            worker.restarts += int(guarded)
            if kills >= faults:
                worker.settings = changed(worker.settings, streams={"fault_kill_rate": 0.0})
            worker.start()
        done, detail = check()
        if done and worker.current.poll() is None:
            return kills
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s:.0f} s ({kills} SIGKILLs): {detail}")
        time.sleep(0.5)


def self_stops(worker: WorkerProcess) -> int:
    """How often the worker stopped itself (its guards, or an error: exit 70) over its log; each stop is one
    restart more than the faults a test injected."""
    return worker.log.read_text(errors="replace").count("the worker stops without committing")


def wait_for(check: Callable[[], tuple[bool, Any]], timeout_s: float, interval_s: float = 1.0) -> Any:
    """Poll ``check`` (returns (done, detail)) until done; fail with the last detail on time-out."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, detail = check()
        if done:
            return detail
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s:.0f} s: {detail}")
        time.sleep(interval_s)


def run_through(settings: Settings, worker: WorkerProcess, events: list[dict[str, Any]],
                timeout_s: float = 180) -> Expected:
    """Start the worker, send the events, and wait until Redis and the reward log say what the pure core
    decides for them; returns that."""
    worker.start()
    send(settings, events)
    want = expected(settings, events)
    wait_for(matches(settings, want, worker), timeout_s=timeout_s)
    return want
