import pickle
import pickletools
from datetime import UTC, datetime

from streams import erasure, pickling, referee_ledger, referrer_rewards, stages, visitor_attribution
from streams.referrer_rewards import Tick


def test_registered_records_pickle_as_constructor_calls_and_round_trip():
    registered = pickling.register(stages, referee_ledger, referrer_rewards, visitor_attribution, erasure)
    assert stages.ReferrerRecord in registered and Tick in registered
    record = stages.referrer_step(stages.ReferrerRecord(), "r1",
                                  stages.Share("e1", "default", "whatsapp", datetime(2026, 1, 2, tzinfo=UTC)),
                                  {}).record
    data = pickle.dumps(record)
    assert "BUILD" not in {op.name for op, _, _ in pickletools.genops(data)}  # no __setstate__: constructor calls
    assert pickle.loads(data) == record
    assert pickle.loads(pickle.dumps(Tick(datetime(2026, 1, 2, tzinfo=UTC)))) == Tick(datetime(2026, 1, 2, tzinfo=UTC))


def test_a_pickle_written_the_old_way_still_loads():
    import copyreg

    tick = Tick(datetime(2026, 1, 2, tzinfo=UTC))
    copyreg.dispatch_table.pop(Tick, None)
    old = pickle.dumps(tick)
    assert "BUILD" in {op.name for op, _, _ in pickletools.genops(old)}  # dataclasses' own __setstate__ path
    pickling.register(referrer_rewards)
    assert pickle.loads(old) == tick


def test_the_clocks_tick_record_is_the_tick_under_its_key():
    from streams.app import TICK_KEY, tick_record

    now = datetime(2026, 1, 2, tzinfo=UTC)
    key, value = tick_record(now)
    assert key == TICK_KEY and pickle.loads(value) == Tick(now)


def test_records_load_back_through_the_restricted_reader_and_the_tables_codec():
    from faust.serializers import codecs

    record = stages.referrer_step(stages.ReferrerRecord(), "r1",
                                  stages.Share("e1", "default", "whatsapp", datetime(2026, 1, 2, tzinfo=UTC)),
                                  {}).record
    assert pickling.loads(pickle.dumps(record)) == record
    assert codecs.loads(pickling.RECORDS_CODEC, codecs.dumps(pickling.RECORDS_CODEC, record)) == record
    # Faust's own "pickle" codec wrote the tables before: the same bytes
    assert codecs.loads(pickling.RECORDS_CODEC, codecs.dumps("pickle", record)) == record


def test_the_restricted_reader_builds_no_function_and_no_class_it_was_not_given():
    import os

    for forbidden in (os.system, stages.referrer_step, pickling.register, dict.fromkeys, stages.Outbound.__init__):
        try:
            data = pickle.dumps(forbidden)
        except (pickle.PicklingError, TypeError, AttributeError):
            continue
        try:
            pickling.loads(data)
        except pickling.RefusedClass as exc:
            assert "not a record type" in str(exc)
        else:
            raise AssertionError(f"{forbidden} was built")
    assert "referrer_step" not in pickling.ALLOWED["streams.stages"]
    assert all(isinstance(cls, type) for names in pickling.ALLOWED.values() for cls in names.values())
