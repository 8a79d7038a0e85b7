"""Configuration: one typed place, environment with REFERRALS_ prefix and __ nesting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from referrals.redis_client import redis_client
from referrals.settings import Settings, changed


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


def test_redis_password_is_a_secret_the_client_gets_in_plain():
    s = Settings(redis={"password": "hunter2"})
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    assert redis_client(s).connection_pool.connection_kwargs["password"] == "hunter2"


def test_every_section_refuses_unknown_settings():
    for section in ("kafka", "redis", "gateway", "streams", "exporter", "privacy", "webhooks"):
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            Settings(**{section: {"no_such_setting": 1}})


def test_changed_validates_and_keeps_the_other_values_of_a_section(tmp_path):
    base = Settings(kafka={"topic_prefix": "a."}, redis={"port": 6390})
    copy = changed(base, kafka={"port": 19092}, state_dir=tmp_path)
    assert (copy.kafka.port, copy.kafka.topic_prefix, copy.redis.port, copy.state_dir) == (19092, "a.", 6390, tmp_path)
    assert (base.kafka.port, base.state_dir) != (19092, tmp_path)  # the original is untouched
    assert changed(base.streams, batch_size=7).batch_size == 7
    with pytest.raises(ValidationError, match="kafka.port"):
        changed(base, kafka={"port": "ninety"})
    with pytest.raises(ValidationError):
        changed(base, streams={"no_such_setting": 1})
    with pytest.raises(ValidationError, match="kafak"):
        changed(base, kafak={"port": 1})
    secret = changed(base, redis={"password": "s3cret-password"})
    assert secret.redis.password.get_secret_value() == "s3cret-password"


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


def test_a_worker_child_reaches_kafka_and_redis_as_its_parent_does_credentials_included(monkeypatch, tmp_path):
    from referrals.settings import worker_environment

    parent = Settings(state_dir=tmp_path, kafka={"port": 19092, "bootstrap_servers": "kafka-1:9096,kafka-2:9096",
                                                 "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256",
                                                 "sasl_username": "worker", "sasl_password": "s3cret-s3cret",
                                                 "ssl_cafile": tmp_path / "ca.pem",
                                                 "extra_properties": {"a.b": "1"}},
                      redis={"host": "redis.internal", "port": 6390, "username": "pipeline", "password": "r-pass"})
    for name, value in worker_environment(parent).items():
        monkeypatch.setenv(name, value)
    child = Settings()
    assert child.kafka == parent.kafka and child.redis == parent.redis
    assert child.kafka.client_options()["sasl_plain_password"] == "s3cret-s3cret"


def test_sasl_without_credentials_is_refused_and_options_follow_the_protocol():
    with pytest.raises(ValidationError, match="needs sasl_username and sasl_password"):
        Settings(kafka={"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u"})
    plain = Settings().kafka.client_options()
    assert plain == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    scram = Settings(kafka={"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u",
                            "sasl_password": "pass-7f3a"}).kafka
    assert scram.client_options() == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "SASL_PLAINTEXT",
                                      "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "u",
                                      "sasl_plain_password": "pass-7f3a"}
    assert "pass-7f3a" not in repr(scram) and "pass-7f3a" not in str(scram.model_dump())


PUBLISHABLE = {"name": "web", "key": "pk_live_a1b2c3d4e5f6g7h8", "publishable": True,
               "types": ["share", "click", "signup"], "token_secret": "ts_9f8e7d6c5b4a39281706f5e4d3c2b1a0",
               "origins": ["https://shop.example.com", "http://127.0.0.1:8000"]}


def test_a_publishable_key_and_its_origins_are_the_browser_origins():
    s = Settings(gateway={"api_keys": [PUBLISHABLE, {"name": "shop", "key": "sk_live_0123456789abcdef",
                                                     "types": ["order"]}]})
    assert s.gateway.browser_origins == {"https://shop.example.com", "http://127.0.0.1:8000"}


@pytest.mark.parametrize(("change", "words"), [
    ({"types": ["share", "order"]}, "share, click and signup events only"),
    ({"read": True}, "share, click and signup events only"),
    ({"fulfil": True}, "share, click and signup events only"),
    ({"token_secret": None}, "needs a token_secret"),
    ({"token_secret": "short"}, "token_secret\n  Value should have at least 32"),
    ({"origins": ["https://shop.example.com/"]}, "is not an origin"),
    ({"origins": ["shop.example.com"]}, "is not an origin"),
    ({"origins": ["*"]}, "is not an origin"),
    ({"publishable": False}, "for publishable keys only"),
])
def test_a_publishable_key_that_could_do_more_than_an_app_should_is_refused(change, words):
    with pytest.raises(ValidationError) as info:
        Settings(gateway={"api_keys": [{**PUBLISHABLE, **change}]})
    assert words in str(info.value)


def test_javas_client_properties_say_what_the_python_clients_are_told(tmp_path):
    plain = Settings().kafka
    assert plain.java_client_properties() == ["security.protocol=PLAINTEXT"]
    tls = Settings(kafka={"security_protocol": "SSL", "ssl_cafile": str(tmp_path / "ca.pem")}).kafka
    assert tls.java_client_properties() == ["security.protocol=SSL", "ssl.truststore.type=PEM",
                                            f"ssl.truststore.location={tmp_path / 'ca.pem'}"]
    scram = Settings(kafka={"security_protocol": "SASL_SSL", "sasl_username": "pipeline",
                            "sasl_password": "pw-0123"}).kafka.java_client_properties()
    assert scram[:2] == ["security.protocol=SASL_SSL", "sasl.mechanism=SCRAM-SHA-512"]
    assert scram[2] == ('sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required '
                        'username="pipeline" password="pw-0123";')
