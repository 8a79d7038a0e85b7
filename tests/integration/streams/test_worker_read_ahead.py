"""The worker's Faust app takes its consumer's read-ahead from the typed settings (``streams.app.build_app``; it
reads Redis before it is built, so these run beside the real stack)."""

from __future__ import annotations

import gc

from referrals.settings import Settings, changed
from streams.app import build_app
from streams.campaigns import load_campaigns


def _app_conf(base: Settings, tmp_path, **streams):
    settings = changed(base, state_dir=tmp_path, streams={"records_on_disk": False, **streams})
    callbacks = list(gc.callbacks)
    try:
        return build_app(settings, load_campaigns(settings.streams.campaigns_file)).conf
    finally:
        gc.callbacks[:] = callbacks  # the worker's collection policy is the process's: not this test's


def test_the_read_ahead_is_256_kib_per_partition_and_faust_s_stream_buffer_unless_set(stack, settings, tmp_path):
    conf = _app_conf(settings, tmp_path)
    assert (conf.consumer_max_fetch_size, conf.stream_buffer_maxsize) == (256 * 1024, 4096)


def test_a_smaller_read_ahead_reaches_the_consumer(stack, settings, tmp_path):
    conf = _app_conf(settings, tmp_path, fetch_bytes_per_partition=131_072, stream_buffer=1024)
    assert (conf.consumer_max_fetch_size, conf.stream_buffer_maxsize) == (131_072, 1024)
