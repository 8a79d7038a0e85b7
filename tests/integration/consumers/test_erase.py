"""`referrals erase` on the real stack: the customer is gone from Redis, the worker's tables and their
changelogs; the books (funnel, ledger, points) are the same, under the pseudonym; an audit record says so."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter

import httpx

from consumers import kafka_log
from referrals.code_registry import CodeRegistry
from referrals.privacy import pseudonym
from schemas.derived import RewardRole
from streams import erasure_registry, record_codec
from streams.erasure import mentions, rename
from streams.redis_layout import RedisLayout
from streams.topology import changelog_topics
from tests.integration.fixtures.gateway import READ_KEY
from tests.integration.support.worker import (
    client,
    redis_dump,
    redis_funnel,
    reference,
    run_through,
    simulated,
    view_prefix,
)


def books(settings) -> tuple[Counter, Counter]:
    """(every campaign ledger summed, points by status over every customer's referrer hash and welcome hash)."""
    layout = RedisLayout(view_prefix(settings), settings.kafka.partitions)
    ledger, points = Counter(), Counter()
    with client(settings) as c:
        for key in layout.all_ledgers("default"):
            ledger.update({k: int(v) for k, v in c.hgetall(key).items()})
        for key in c.scan_iter(match=f"{layout.prefix}{{ref:*}}:referrer:*"):
            h = c.hgetall(key)
            points.update({s: int(h.get(f"points:{s}", 0)) for s in ("pending", "confirmed", "revoked")})
        for key in c.scan_iter(match=f"{layout.prefix}{{ref:*}}:welcome:*"):
            for field, value in c.hgetall(key).items():
                if not field.startswith("_"):
                    w = json.loads(value)
                    points[w["status"]] += w["points"]
    return +ledger, +points


def parsed(view: dict) -> dict:
    """A Redis dump with its JSON values (referral summaries, welcome rewards) as what they say, not as text."""
    def value(v):
        return json.loads(v) if isinstance(v, str) and v.startswith("{") else v

    return {k: ({f: value(x) for f, x in v.items()} if isinstance(v, dict) else value(v)) for k, v in view.items()}


def renamed_view(view: dict, old: str, new: str) -> dict:
    """``rename`` over a parsed Redis dump, JSON values included."""
    return {rename(k, old, new): ({rename(f, old, new): rename(x, old, new) for f, x in v.items()}
                                  if isinstance(v, dict) else rename(v, old, new)) for k, v in view.items()}


def unsharded(view: dict) -> dict:
    """The view with the shards' hash tags taken off: campaign sums added up, per-customer keys as they are."""
    out: dict = {}
    for k, value in view.items():
        name = re.sub(r"^\{ref:\d+\}:", "", k)
        if name.startswith(("funnel:", "ledger:")):
            total = out.setdefault(name, Counter())
            total.update({f: int(v) for f, v in value.items()})
        elif name.startswith("leaderboard:"):
            out.setdefault(name, {}).update(value)
        elif name == "campaigns":
            out[name] = sorted(set(out.get(name, [])) | set(value))
        else:
            assert name not in out, name
            out[name] = value
    return {k: (+v if isinstance(v, Counter) else v) for k, v in out.items()}


def test_erase_removes_the_customer_everywhere_and_keeps_the_books_under_the_pseudonym(
        pipeline_factory, app_factory):
    own, worker = pipeline_factory("erase")
    events = simulated(own, 91, 1500)
    run_through(own, worker, events)
    ref, _resolve, _parsed = reference(own, events)
    rewarded = Counter(w.customer_id for w in ref.rewards().values() if w.points and w.status.value != "revoked")
    referrer = max((r for r, state in ref.referrers.items() if state.referrals), key=lambda r: (rewarded[r], r))
    referee = sorted(w.customer_id for w in ref.rewards().values()
                     if w.role is RewardRole.REFEREE and w.points and w.status.value != "revoked")[0]
    gateway = app_factory(data_of=own)
    http = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {READ_KEY}"}, timeout=30)
    key = own.privacy.pseudonym_key.get_secret_value()
    before = {v: http.get(f"/v1/referrers/{v}", params={"issue": "false"}).json() for v in (referrer, referee)}
    funnel, (ledger, points) = redis_funnel(own), books(own)
    view = redis_dump(own)
    assert rewarded[referrer] and before[referee]["rewards_as_referee"]

    for victim in (referrer, referee):
        done = worker.run_beside([sys.executable, "-m", "referrals.cli", "erase", victim, "--yes"], timeout_s=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "complete" in done.stdout and pseudonym(key, victim) in done.stdout and victim not in done.stdout

    for victim in (referrer, referee):
        part = re.compile(r"(?<![^:\t\"/])" + re.escape(victim) + r"(?![^:\t\"/])")
        with client(own) as c:  # every key the pipeline has in Redis, views, codes and all
            for k in c.scan_iter(match=f"{own.redis.key_prefix}*"):
                assert not part.search(k), k
                kind = c.type(k)
                values = (c.hgetall(k) if kind == "hash" else c.smembers(k) if kind == "set"
                          else c.zrange(k, 0, -1) if kind == "zset" else [])
                assert not part.search(json.dumps(values, default=str)), (k, victim)
        assert CodeRegistry.from_settings(own).code_of(victim) is None
        for topic in changelog_topics(own):  # the worker's tables: the last value of every key
            last: dict[bytes, bytes | None] = {}
            for record in kafka_log.read(own, kafka_log.end_offsets(own, [topic])):
                last[record.key] = record.value
            assert last.get(victim.encode()) is None, f"{topic}: the erased key still has a value"
            for k, value in last.items():
                if value is not None:
                    assert not mentions(record_codec.decode(value), victim), f"{topic}[{k!r}]"
        gone = http.get(f"/v1/referrers/{victim}")  # no code issued again for an erased customer
        assert gone.status_code == 410 and gone.json()["errors"][0]["rule"] == "erased"
        after = http.get(f"/v1/referrers/{pseudonym(key, victim)}", params={"issue": "false"}).json()
        assert (after["points"], after["counts"]) == (before[victim]["points"], before[victim]["counts"])

    assert redis_funnel(own) == funnel  # the books are the same
    assert books(own) == (ledger, points)
    # ... and nothing else changed: the view is the one before, with the two ids renamed
    # (a pseudonym hashes to another shard than the id: campaign sums are compared over the shards)
    view = parsed(view)
    for victim in (referrer, referee):
        view = renamed_view(view, victim, pseudonym(key, victim))
    assert unsharded(parsed(redis_dump(own))) == unsharded(view)
    with client(own) as c:
        entries = c.xrange(erasure_registry.audit_key(own.redis.key_prefix))
    assert [(e["pseudonym"], e["status"]) for _, e in entries] == [(pseudonym(key, v), "complete")
                                                                    for v in (referrer, referee)]
    assert referrer not in json.dumps(entries) and referee not in json.dumps(entries)
