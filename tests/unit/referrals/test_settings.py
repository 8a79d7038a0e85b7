"""Configuration: one typed place, environment with REFERRALS_ prefix and __ nesting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from referrals.settings import Settings


def test_defaults_are_the_documented_ones(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("REFERRALS_"):
            monkeypatch.delenv(key)
    s = Settings()
    assert (s.kafka.port, s.kafka.controller_port, s.redis.port, s.kafka.partitions) == (9092, 9093, 6379, 6)
    assert s.kafka.bootstrap == "127.0.0.1:9092"
    assert s.state_dir.name == ".state"


def test_environment_overrides_nested_values(monkeypatch, tmp_path):
    monkeypatch.setenv("REFERRALS_KAFKA__PORT", "19092")
    monkeypatch.setenv("REFERRALS_REDIS__PORT", "16379")
    monkeypatch.setenv("REFERRALS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("REFERRALS_KAFKA__BOOTSTRAP_SERVERS", "kafka:19092")
    s = Settings()
    assert (s.kafka.port, s.redis.port, s.state_dir) == (19092, 16379, tmp_path)
    assert s.kafka.bootstrap == "kafka:19092"


def test_bad_values_are_refused_with_the_key(monkeypatch):
    monkeypatch.setenv("REFERRALS_KAFKA__PORT", "ninety")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "kafka.port" in str(info.value)


def test_redis_password_is_not_in_the_repr():
    s = Settings(redis={"password": "hunter2"})
    assert "hunter2" not in repr(s)


def test_a_mistyped_top_level_variable_is_an_error(monkeypatch):
    monkeypatch.setenv("REFERRALS_KAFKA_PORT", "9094")  # single underscore: not the nested kafka.port
    with pytest.raises(ValidationError, match="unknown setting REFERRALS_KAFKA_PORT"):
        Settings()


def test_a_mistyped_nested_variable_is_an_error(monkeypatch):
    monkeypatch.setenv("REFERRALS_REDIS__PROT", "6390")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "redis.prot" in str(info.value)


def test_a_worker_child_gets_every_stream_setting_its_parent_has(monkeypatch, tmp_path):
    from referrals.settings import worker_environment

    parent = Settings(state_dir=tmp_path, kafka={"topic_prefix": "t1."}, redis={"key_prefix": "k1:"},
                      streams={"app_id": "w1", "tick_interval_s": 0.5, "batch_wait_s": 0.02, "fault_kill_rate": 0.1,
                               "stall_timeout_s": 9, "metrics_port": 0})
    for name, value in worker_environment(parent).items():
        monkeypatch.setenv(name, value)
    child = Settings()
    assert child.streams == parent.streams
    assert (child.kafka.topic_prefix, child.redis.key_prefix, child.state_dir) == ("t1.", "k1:", tmp_path)
