"""The stage runner (``streams.stage_runner``): the glue the worker, the crash model and ``rebuild`` share. Its
behaviour under crashes is the crash model's (``test_at_least_once.py``); here, what it does in one batch."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta

from schemas.derived import RewardChange
from streams import record_codec, referrer_parts, stages
from streams.erasure import Erase, Forget
from streams.inbound import to_fact
from streams.referrer_rewards import Tick
from streams.stage_runner import Batch, StageRunner, Tables
from tests.unit.streams.story import T0, Story, resolve

CHANGELOGS = ("v-changelog", "c-changelog", "r-changelog")


def runner(story: Story, **kwargs) -> StageRunner:
    return StageRunner(story.book, Tables({}, {}, {}, CHANGELOGS), 1, **kwargs)


STAGE_OF = {"referrals.visitor-facts": "visitor", "referrals.customer-facts": "customer",
            "referrals.referrer-facts": "referrer"}


def through(run: StageRunner, story: Story, done: Callable[[Batch], object] = lambda _batch: None) -> list[Batch]:
    """Every event and every fact the stages send each other, one batch per record, in order; ``done`` sees each
    batch once it is stepped (records change in place after)."""
    queue = [({"ClickEvent": "visitor", "ShareEvent": "referrer"}.get(type(e).__name__, "customer"),
              *to_fact(e, resolve)) for e in story.events]
    batches = []
    while queue:
        stage, key, fact = queue.pop(0)
        batch = Batch()
        getattr(run, stage)(key, fact, batch)
        done(batch)
        queue += [(STAGE_OF[topic], k.decode(), record_codec.decode(value))
                  for topic, k, value, _ in batch.records if topic in STAGE_OF]
        batches.append(batch)
    return batches


def a_story() -> Story:
    s = Story()
    s.click("v1", "ANNA")
    s.signup("eva", visitor="v1", minutes=5)
    s.order("eva", "49.90", minutes=30)
    s._add({"type": "share", "occurred_at": T0.isoformat(), "referrer_id": "anna", "channel": "whatsapp"})
    return s


def test_a_referral_goes_through_every_stage_to_a_reward_and_the_changed_counters():
    story = a_story()
    run = runner(story)
    batches = through(run, story)
    rewards = [RewardChange.model_validate_json(v) for b in batches for t, _, v, _ in b.records
               if t == "referrals.rewards"]
    assert {(r.role.value, r.status.value) for r in rewards} == {("referrer", "pending"), ("referee", "pending")}
    assert any("anna" in b.dirty for b in batches)
    assert set(run.tables.referrers) == {b"anna", b"eva"}  # eva's profile, as a future referrer
    # the referrer's changelog is in parts, its header last
    for b in batches:
        mine = [c[1] for c in b.table_changes() if c[0] == CHANGELOGS[2] and c[1].split(b"\x1f")[0] == b"anna"]
        if mine:
            assert mine[-1] == referrer_parts.changelog_key("anna")
            assert all(k.startswith(b"anna\x1f") for k in mine[:-1])


def test_a_duplicate_resends_the_keys_outputs_once_per_process():
    story = a_story()
    run = runner(story)
    through(run, story)
    again = [Batch(), Batch()]
    for batch in again:
        run.customer("eva", to_fact(story.events[2], resolve)[1], batch)  # the order, delivered again
    assert again[0].records and not again[1].records
    assert again[0].dirty == {}  # the customer stage writes no counters


def test_a_tick_visits_only_the_referrers_due_and_all_of_a_partition_when_replayed():
    story = a_story()
    run = runner(story)
    through(run, story)
    assert run.tick_targets(0, T0 + timedelta(days=1)) == []  # the hold period runs 14 days
    assert run.tick_targets(0, T0 + timedelta(days=20)) == [b"anna"]
    run.tick(0, T0 + timedelta(days=20), batch := Batch())
    assert batch.dirty == {"anna": {"default:anna:eva"}}  # only the referral the tick confirmed
    assert run.tick_targets(0, T0 + timedelta(days=20)) == [b"anna", b"eva"]  # replayed: all of the partition
    restarted = runner(story)
    restarted.tables = run.tables
    restarted.tick(0, T0 + timedelta(days=20), batch := Batch())  # a duplicate, in a new process
    assert batch.dirty == {"anna": None, "eva": None} and batch.records  # complete counters; outputs sent again


def test_late_facts_of_an_erased_referrer_go_to_its_pseudonym_and_its_customer_events_are_dropped():
    story = a_story()
    run = runner(story, erased={"p:anna", "p:eva"}, pseudonym_of=lambda c: f"p:{c}")
    batch = Batch()
    run.referrer("anna", stages.Share("sh9", "default", "sms", T0), batch)
    assert [(t, k) for t, k, _, _ in batch.records] == [("referrals.referrer-facts", b"p:anna")]
    assert not run.tables.referrers
    run.customer("eva", to_fact(story.events[2], resolve)[1], batch := Batch())
    assert not batch.records and not run.tables.customers


def test_an_erase_adds_the_pseudonym_and_the_marker_goes_first():
    story = a_story()
    run = runner(story)
    through(run, story)
    erase = Erase("anna", "p:anna", "erasure-1", T0 + timedelta(days=30))
    run.referrer("anna", erase, batch := Batch())
    assert "p:anna" in run.erased
    first = batch.table_changes()[0]
    assert isinstance(first[3], stages.ReferrerRecord) and first[3].erasure is not None


def test_the_runner_and_the_topology_import_without_faust():
    code = ("import sys, streams.stage_runner, streams.topology, consumers.rebuild; "
            "assert 'faust' not in sys.modules, sorted(m for m in sys.modules if m.startswith('faust'))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_tick_in_a_batch_is_a_fact_like_any_other():
    story = a_story()
    run = runner(story)
    through(run, story)
    batch = Batch()
    run.referrer("anna", Tick(T0 + timedelta(days=20)), batch)
    assert batch.records  # the rewards confirmed


def test_a_duplicate_re_sends_only_what_changed_since_the_referrers_last_acknowledged_batch():
    story = a_story()
    share = stages.Share("share-again", "default", "sms", T0)
    for acknowledged in (False, True):
        run = runner(story)
        for batch in through(run, story):
            if acknowledged:
                run.done(batch)  # the shell's word: Kafka took all of it
        run.referrer("anna", share, Batch())
        run.referrer("anna", share, batch := Batch())  # delivered again: a duplicate
        rewards = [t for t, _, _, _ in batch.records if t == "referrals.rewards"]
        # unacknowledged, a crash may have lost any reward event: all of anna's are sent again; acknowledged,
        # none changed since (the share changed no referral)
        assert len(rewards) == (0 if acknowledged else 2)


def test_after_a_rebalance_nothing_is_taken_as_acknowledged_or_re_sent_already():
    story = a_story()
    run = runner(story)
    for batch in through(run, story):
        run.done(batch)
    run.reassigned()  # another worker may have stepped anna meanwhile and crashed
    run.referrer("anna", stages.Share("share-again", "default", "sms", T0), Batch())
    run.referrer("anna", stages.Share("share-again", "default", "sms", T0), batch := Batch())
    assert len([t for t, _, _, _ in batch.records if t == "referrals.rewards"]) == 2
    assert batch.dirty == {"anna": None}


def test_a_marker_is_not_deleted_in_the_batch_that_sends_its_facts_again():
    """Found by the crash model: a duplicate Erase re-sends the marker's facts and its Forget deletes the marker
    in the same batch; a crash could keep the tombstone and lose the facts, and nothing would send them again.
    The deletion waits for a later batch."""
    story = a_story()
    run = runner(story)
    through(run, story)
    erase = Erase("eva", "p:eva", "erasure-1", T0 + timedelta(days=30))
    run.customer("eva", erase, Batch())
    assert run.tables.customers[b"eva"].erasure is not None  # the marker
    restarted = runner(story)
    restarted.tables = run.tables
    restarted.customer("eva", erase, batch := Batch())  # delivered again after a crash: re-sends the marker's facts
    restarted.customer("eva", Forget("erasure-1"), batch)
    assert b"eva" in restarted.tables.customers  # not deleted with the facts in flight
    sent = [(t, k, record_codec.decode(v)) for t, k, v, _ in batch.records if t == "referrals.customer-facts"]
    assert ("referrals.customer-facts", b"eva", Forget("erasure-1")) in sent  # to itself, for a later batch
    restarted.customer("eva", Forget("erasure-1"), later := Batch())
    assert b"eva" not in restarted.tables.customers
    assert later.table_changes() == [(CHANGELOGS[1], b"eva", 0, None)]  # the tombstone


def test_an_erasure_goes_on_only_after_the_batch_that_re_sends_its_adoption():
    """Found by the crash model: a crash after an erased referrer's ``Continue`` reached Kafka but before all of
    its adoption did; the ``Erase``, delivered again, re-sends the adoption, and the ``Continue`` right behind it
    in the same batch would send the customers' erasures and, through them, the ``Forget`` with it: a crash
    could then keep those and lose adoption parts, which nothing would send again. It waits for a later batch."""
    story = a_story()
    run = runner(story)
    through(run, story)
    erase = Erase("anna", "p:anna", "erasure-1", T0 + timedelta(days=30))
    run.referrer("anna", erase, first := Batch())
    (cont,) = [record_codec.decode(v) for t, k, v, _ in first.records if t == "referrals.referrer-facts"
               and k == b"anna"]
    restarted = runner(story)  # the crash: a new process, the tables as they were
    restarted.tables = run.tables
    restarted.referrer("anna", erase, batch := Batch())  # delivered again: the adoption re-sent
    restarted.referrer("anna", cont, batch)  # the Continue the crashed batch left, in the same batch
    sent = [(t, k) for t, k, _, _ in batch.records]
    assert ("referrals.referrer-facts", b"p:anna") in sent  # the adoption
    assert not any(t == "referrals.customer-facts" for t, _ in sent)  # no customer erased yet
    assert sent[-1] == ("referrals.referrer-facts", b"anna")  # the Continue, to itself again
    restarted.referrer("anna", cont, later := Batch())  # a later batch: the adoption is on Kafka by now
    assert any(t == "referrals.customer-facts" for t, _, _, _ in later.records)
