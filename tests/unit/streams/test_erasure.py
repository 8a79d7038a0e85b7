"""Erasure's renaming (pure): whole id parts only, at any depth, personal fields of the erased customer dropped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from streams import stages
from streams.erasure import Erase, mentions, rename
from streams.referee_ledger import Profile, Referral
from tests.unit.streams.story import T0, Story

ERASE = Erase("eva", "c_p", "erasure-1", datetime(2027, 1, 1, tzinfo=UTC))


def test_only_whole_id_parts_are_renamed():
    assert rename("default:anna:eva", "eva", "c_p") == "default:anna:c_p"
    assert rename("eva", "eva", "c_p") == "c_p"
    assert rename("default:anna:evan", "eva", "c_p") == "default:anna:evan"  # another customer
    assert rename("referral:default:eva:eva:e7", "eva", "c_p") == "referral:default:c_p:c_p:e7"
    assert not mentions("default:anna:evan", "eva") and mentions("x:eva", "eva")


@given(st.text(alphabet="ab:", min_size=1, max_size=6), st.lists(st.text(alphabet="ab:", max_size=8), max_size=5))
def test_after_renaming_nothing_mentions_the_old_id(old, values):
    assert not mentions(rename(values, old, "c_new"), old) or mentions("c_new", old)


@dataclass(frozen=True)
class Holder:
    items: dict
    pair: tuple
    tags: frozenset


def test_renaming_reaches_every_depth_and_drops_the_erased_customers_personal_fields():
    referral = Referral("default:anna:eva", "eva", "anna", "ANNA", "default", "signup_code", T0, "e1", "attributed",
                        referee_email_hash="h-eva", referee_device_id="d-eva")
    other = Referral("default:anna:finn", "finn", "anna", "ANNA", "default", "signup_code", T0, "e2", "attributed",
                     referee_email_hash="h-finn")
    value = Holder({"default:anna:eva": referral, "k": [other]}, ("eva", Profile("eva", "h-eva", "d-eva")),
                   frozenset({"eva"}))
    renamed = rename(value, "eva", "c_p")
    assert not mentions(renamed, "eva")
    assert renamed.items["default:anna:c_p"].referee_id == "c_p"
    assert renamed.items["default:anna:c_p"].referee_email_hash is None  # the erased customer's
    assert renamed.items["k"][0].referee_email_hash == "h-finn"  # another customer's stays
    assert renamed.pair[1] == Profile("c_p", None, None)
    assert renamed.tags == frozenset({"c_p"})


def test_an_erased_customers_record_becomes_a_marker_that_sends_the_erasure_on_and_then_forgets_itself():
    s = Story()
    s.click("v1", "ANNA")
    s.signup("eva", visitor="v1", minutes=5, email="h-eva")
    s.order("eva", "30.00", minutes=60, order_id="o")
    pipeline = s.run()
    record = stages.CustomerRecord(pipeline.customers["eva"], seq=3,
                                   sent={"referral:x": pipeline.referrers["anna"].referrals["default:anna:eva"]})
    step = stages.customer_step(record, "eva", ERASE, s.book)
    assert step.changed and step.record.erasure is not None and step.record.core == stages.CustomerState()
    assert [(o.topic, o.key, type(o.value).__name__) for o in step.outbound] == [
        ("referrals.visitor-facts", "v1", "Erase"), ("referrals.referrer-facts", "anna", "Erase"),
        ("referrals.customer-facts", "eva", "Forget")]
    again = stages.customer_step(step.record, "eva", ERASE, s.book)
    assert again.duplicate and stages.customer_resend(again.record, "eva") == step.outbound
    assert stages.customer_step(step.record, "eva", step.outbound[-1].value, s.book).record is None
    assert stages.customer_step(step.record, "eva", pipeline.customers["eva"].signups["e2"], s.book).record \
        is step.record  # an event of an erased customer: dropped


def test_an_erased_referrer_is_adopted_first_and_tells_the_others_only_once_the_adoption_is_on_kafka():
    s = Story()
    s.click("v1", "ANNA")
    s.signup("eva", visitor="v1", minutes=5)
    pipeline = s.run()
    referral = pipeline.referrers["anna"].referrals["default:anna:eva"]
    record = stages.referrer_step(stages.ReferrerRecord(), "anna",
                                  stages.Versioned("referral:default:anna:eva", 1, referral), s.book).record
    erase = Erase("anna", "c_a", "erasure-2", datetime(2027, 1, 1, tzinfo=UTC))
    step = stages.referrer_step(record, "anna", erase, s.book)
    assert [(o.key, type(o.value).__name__) for o in step.outbound] == [("c_a", "Adopt"), ("anna", "Continue")]
    adopted = step.outbound[0].value.record
    assert not mentions(adopted, "anna") and "default:c_a:eva" in adopted.core.referrals
    continued = stages.referrer_step(step.record, "anna", step.outbound[1].value, s.book)
    # the customer stage's own erasure comes only now: what it renames reaches the pseudonym after the adoption
    assert [(o.topic, o.key, type(o.value).__name__) for o in continued.outbound] == [
        ("referrals.customer-facts", "anna", "Erase"), ("referrals.customer-facts", "eva", "Erase"),
        ("referrals.referrer-facts", "anna", "Forget")]
    at_pseudonym = stages.referrer_step(stages.ReferrerRecord(), "c_a", step.outbound[0].value, s.book)
    assert at_pseudonym.record.core == adopted.core and at_pseudonym.record.seq == adopted.seq + 1
    # a customer who never referred anyone: nothing to adopt, the erasure goes on to the customer stage at once
    nobody = stages.referrer_step(stages.ReferrerRecord(), "eva", ERASE, s.book)
    assert [(o.topic, o.key, o.value) for o in nobody.outbound] == [("referrals.customer-facts", "eva", ERASE)]
