"""Counter snapshots of the referrer stage (pure): absolute per referrer, contributions for campaign funnels."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import record_codec, stages
from streams.counters import NO_CHANNEL, CounterSnapshot, read_referral_summary, snapshot
from streams.redis_layout import RedisLayout, partition_of
from streams.referrer_rewards import Tick
from tests.unit.streams.story import T0, Story
from tests.unit.streams.test_referrer_incremental import REFERRER, books, facts

LAYOUT = RedisLayout("rp:", 6)


def expanded(snap: CounterSnapshot) -> dict[tuple[str, str], int]:
    """The cells ``_funnel``'s compact form names, as the writer's script reads it (streams.redis_sink)."""
    p = partition_of(snap.referrer_id, LAYOUT.partitions)
    cells: Counter = Counter()
    for campaign, days in json.loads(snap.contribution).items():
        for day, fields in days.items():
            keys = [LAYOUT.ledger(p, campaign)] if day == "" else [LAYOUT.funnel(p, campaign, day),
                                                                   LAYOUT.funnel(p, campaign)]
            for field, n in fields.items():
                for key in keys:
                    cells[(key, field)] += n
    return dict(cells)


class FakeRedis:
    """What the snapshot script does, in a dict: fenced by seq, each funnel and ledger cell by the difference of
    the contribution to it and the one applied last (the cells hash)."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, object]] = {}
        self.applied: dict[str, CounterSnapshot] = {}
        self.cells: dict[str, dict] = {}  # referrer -> its cells hash

    def apply(self, snap: CounterSnapshot) -> bool:
        from tests.oracle.counters import applied, cell_sums

        old = self.applied.get(snap.referrer_id)
        if old is not None and snap.seq <= old.seq:
            return False
        assert expanded(snap) == snap.sums  # the cells the contribution names add up to the sums declared
        before = cell_sums(LAYOUT, snap.referrer_id, self.cells.get(snap.referrer_id, {}))
        self.cells[snap.referrer_id] = applied(self.cells.get(snap.referrer_id, {}), snap.contribution,
                                               snap.complete)
        after = cell_sums(LAYOUT, snap.referrer_id, self.cells[snap.referrer_id])
        for cell in set(before) | set(after):
            key, field = cell
            h = self.hashes.setdefault(key, {})
            h[field] = h.get(field, 0) + after.get(cell, 0) - before.get(cell, 0)
        self.hashes[snap.referrer_key] = dict(snap.fields)
        lst = self.hashes.setdefault(snap.referrals_key, {})
        for rid, summary in snap.referrals.items():
            if summary is None:
                lst.pop(rid, None)
            else:
                lst[rid] = read_referral_summary(summary)
        for key, n in snap.leaderboard.items():
            board = self.hashes.setdefault(key, {})
            if n:
                board[snap.referrer_id] = n
            else:
                board.pop(snap.referrer_id, None)
        self.applied[snap.referrer_id] = snap
        return True

    def funnel(self, campaign: str = "default") -> Counter:
        total: Counter = Counter()
        for key in LAYOUT.all_funnels(campaign):
            total.update(self.hashes.get(key, {}))
        return +total


def feed(record, referrer_id, facts, book):
    snaps = []
    for fact in facts:
        record = stages.referrer_step(record, referrer_id, fact, book).record
        snaps.append(snapshot(LAYOUT, referrer_id, record))
    return record, snaps


def test_shares_and_clicks_count_once_per_event_per_channel_with_daily_buckets():
    book = Story().book
    share = stages.Share("s1", "default", "whatsapp", T0)
    click = stages.Versioned("click:c1", 0, stages.ClickCounted("c1", "default", None, T0))
    record, snaps = feed(stages.ReferrerRecord(), "anna", [share, click, share, click], book)
    redis = FakeRedis()
    for snap in snaps:
        redis.apply(snap)
    assert {k: v for k, v in redis.hashes[LAYOUT.referrer("anna")].items() if v} == {"shares:whatsapp": 1,
                                                                                      "clicks": 1}
    assert redis.funnel() == Counter({"share:whatsapp": 1, f"click:{NO_CHANNEL}": 1})
    p = partition_of("anna", 6)
    assert redis.hashes[LAYOUT.funnel(p, "default", "2026-05-04")] == {"share:whatsapp": 1,
                                                                        f"click:{NO_CHANNEL}": 1}
    assert record.seq == 2  # the repeated share and click changed nothing


def referral_facts(story: Story):
    pipeline = story.run(tick_days=20)
    return {referrer: sorted(state.referrals.values(), key=lambda r: r.attributed_at)
            for referrer, state in pipeline.referrers.items()}


def test_snapshots_in_any_order_and_repeated_leave_redis_as_the_last_one_says():
    s = Story()
    s.click("v1", "ANNA")
    s.signup("eva", visitor="v1", minutes=5)
    s.order("eva", "30.00", minutes=60, order_id="o")
    s.signup("finn", code="ANNA", minutes=70)
    s.signup("finn", code="BEN", minutes=80)  # a duplicate claim, listed under ben
    redis = FakeRedis()
    for referrer, referrals in referral_facts(s).items():
        facts = [stages.Versioned(f"referral:{r.referral_id}", 1, r) for r in referrals]
        facts.append(Tick(T0.replace(year=2027)))
        _, snaps = feed(stages.ReferrerRecord(), referrer, facts, s.book)
        for snap in [*snaps[::-1], *snaps, snaps[0]]:  # late, repeated, stale: only newer seqs apply
            redis.apply(snap)
    anna = redis.hashes[LAYOUT.referrer("anna")]
    assert (anna["signups"], anna["conversions"], anna["points:confirmed"]) == (2, 1, 500)
    assert redis.funnel() == Counter({"signup:unknown": 2, "conversion:unknown": 1})  # story clicks: no channel
    assert redis.hashes[LAYOUT.referrals("anna")]["default:anna:eva"]["reward_status"] == "confirmed"
    assert redis.hashes[LAYOUT.referrals("anna")]["default:anna:finn"]["status"] == "attributed"
    ben = redis.hashes[LAYOUT.referrals("ben")]
    assert [r["reason"] for r in ben.values()] == ["duplicate_attribution"]
    assert redis.hashes[LAYOUT.leaderboard(partition_of("anna", 6), "default")] == {"anna": 1}


def test_a_withdrawn_referral_leaves_the_list_and_the_funnel_and_its_cell_at_0_is_taken_back():
    s = Story()
    s.signup("eva", code="ANNA")
    referral = referral_facts(s)["anna"][0]
    redis = FakeRedis()
    withdrawn = replace(referral, status="withdrawn", reason=None)
    record, snaps = feed(stages.ReferrerRecord(), "anna", [
        stages.Versioned("referral:x", 1, referral), stages.Versioned("referral:x", 2, withdrawn)], s.book)
    redis.apply(snaps[0])
    assert redis.funnel() == Counter({"signup:unknown": 1})
    redis.apply(snaps[1])
    assert redis.funnel() == Counter()
    assert redis.hashes[LAYOUT.referrals("anna")] == {}
    assert redis.hashes[LAYOUT.referrer("anna")]["signups"] == 0
    # the record keeps no cell at 0: the complete snapshot does not name it, and takes back what Redis holds of it
    assert snaps[1].complete and not snaps[1].sums and not any(redis.cells["anna"].values())


def ledger(redis: FakeRedis, campaign: str = "default") -> Counter:
    total: Counter = Counter()
    for key in LAYOUT.all_ledgers(campaign):
        total.update(redis.hashes.get(key, {}))
    return +total


def test_the_ledger_counts_every_status_a_reward_reached_and_every_reason_once():
    s = Story()
    s.signup("eva", code="ANNA")
    s.order("eva", "30.00", minutes=60, order_id="o1")
    s.signup("finn", code="ANNA", minutes=70)
    s.order("finn", "30.00", minutes=80, order_id="o2")
    s.refund("finn", "o2", "30.00", days=2)  # within the hold: both of finn's rewards revoked
    s.signup("gus", code="ANNA", minutes=90)
    s.signup("gus", code="BEN", minutes=95)  # a duplicate claim: ben's referral rejected
    redis = FakeRedis()
    for referrer, referrals in referral_facts(s).items():
        facts = [stages.Versioned(f"referral:{r.referral_id}", 1, r) for r in referrals]
        facts.append(Tick(T0.replace(year=2027)))
        _, snaps = feed(stages.ReferrerRecord(), referrer, facts, s.book)
        for snap in [*snaps, *snaps[::-1]]:
            redis.apply(snap)
    assert ledger(redis) == Counter({
        # eva: pending, then confirmed at the tick: counted under both
        "rewards:referrer:pending": 1, "points:referrer:pending": 500,
        "rewards:referee:pending": 1, "points:referee:pending": 500,
        "rewards:referrer:confirmed": 1, "points:referrer:confirmed": 500,
        "rewards:referee:confirmed": 1, "points:referee:confirmed": 500,
        # finn: refunded within the hold before any tick: revoked, the points shown are the ones taken back
        "rewards:referrer:revoked": 1, "points:referrer:revoked": 500,
        "rewards:referee:revoked": 1, "points:referee:revoked": 500,
        "rejections:refunded_in_hold": 1, "rejections:duplicate_attribution": 1,
    })


# -- the totals, kept up to date with what changed, against the reference (recomputed from the history) -------

def _inputs(stream):  # the referrer stage's inputs for the incremental core's facts
    from streams.referee_ledger import Profile, Referral

    versions: Counter = Counter()
    for i, fact in enumerate(stream):
        if isinstance(fact, Referral | Profile):
            fid = f"referral:{fact.referral_id}" if isinstance(fact, Referral) else f"profile:{fact.customer_id}"
            versions[fid] += 1
            yield stages.Versioned(fid, versions[fid], fact)
        elif isinstance(fact, Tick):
            yield fact
        elif fact == "reload":
            yield fact
        yield stages.Share(f"sh{i}", "default", ["sms", "whatsapp"][i % 2], T0)


def _totals(snap) -> tuple:  # a snapshot, or the reference's totals
    return snap.fields, snap.sums, snap.leaderboard, snap.campaigns, snap.contribution, snap.seq


def _nonzero(values: dict) -> dict:
    return {k: n for k, n in values.items() if n}


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(books, st.lists(facts, min_size=1, max_size=50), st.randoms(use_true_random=False))
def test_partial_snapshots_leave_redis_with_the_references_totals_at_every_batch(book, stream, rnd):
    """Steps in batches of one to four; after each batch a snapshot with the referrals and the cells of shares and
    clicks the batch changed (as the worker's ``Batch.dirty`` and ``Batch.cells``), applied as the writer's script
    applies it over the ones before: the referrer's fields, the funnel and ledger cells, the leaderboard and the
    campaigns in Redis equal the reference's, summed over the whole history. A partial snapshot names only what
    the batch touched; the first of a process is complete."""
    from tests.oracle import counters as reference

    record = stages.ReferrerRecord()
    inputs = list(_inputs(stream))
    cells: dict = {}
    board: dict[str, int] = {}
    campaigns: set[str] = set()
    i, first = 0, True
    while i < len(inputs):
        changed: set[str] | None = None if first else set()
        touched: set = set()
        for fact in inputs[i:i + rnd.randint(1, 4)]:
            i += 1
            if fact == "reload":  # a new process: the totals are summed again (a complete snapshot)
                record, changed = record_codec.decode(record_codec.encode(record)), None
                continue
            step = stages.referrer_step(record, REFERRER, fact, book)
            record = step.record
            if step.changed and changed is not None:
                changed = None if step.parts is None else changed | stages.referrals_in(step.parts)
                touched |= stages.touched_cells(record, step.parts or ())
        got = snapshot(LAYOUT, REFERRER, record, changed, touched)
        first = False
        want = reference.totals(LAYOUT, REFERRER, record)
        cells = reference.applied(cells, got.contribution, got.complete)
        board = got.leaderboard if got.complete else {**board, **got.leaderboard}
        campaigns |= set(got.campaigns)
        assert got.fields == want.fields and got.seq == want.seq
        assert cells == reference.applied({}, want.contribution, True)
        assert _nonzero(board) == _nonzero(want.leaderboard)
        assert campaigns == set(want.campaigns)
        if got.complete:
            assert _totals(got) == _totals(want)
