"""Kafka with authentication (SASL/SCRAM-SHA-512) and Redis with an ACL user, on a throw-away stack of its
own (the Kafka user created when its storage is formatted, Redis' default user off): every client of the
project authenticates with the configured credentials (the admin client, the producers, the worker's
Faust/aiokafka and Redis clients, the readers); a wrong password or no credentials at all are refused, and
no password reaches a log."""

from __future__ import annotations

import pytest
import redis

from deploy.local.processes import free_port
from deploy.local.stack import LocalStack
from referrals.kafka_admin import broker_answers
from referrals.redis_client import redis_client
from referrals.settings import Settings, changed
from streams.topology import prepare_topics
from tests.integration.support.worker import WorkerProcess, expected, matches, send, simulated, wait_for

PASSWORD = "scram-password-for-tests-5b1e"
REDIS_PASSWORD = "redis-acl-password-for-tests-93c4"


def test_every_client_authenticates_with_scram_and_a_wrong_password_is_refused(tmp_path):
    secure = Settings(
        state_dir=tmp_path / "state",
        kafka={"port": free_port(), "controller_port": free_port(), "start_timeout_s": 90,
               "security_protocol": "SASL_PLAINTEXT", "sasl_username": "pipeline", "sasl_password": PASSWORD},
        redis={"port": free_port(), "username": "pipeline", "password": REDIS_PASSWORD},
        streams={"app_id": "scram", "tick_interval_s": 1.0, "metrics_port": 0},
    )
    stack = LocalStack(secure)
    worker = WorkerProcess(secure, tmp_path / "worker.log")
    try:
        stack.up(echo=lambda m: None)  # waits until the broker answers an authenticated metadata request
        assert "SASL_PLAINTEXT" in stack.kafka.properties.read_text()
        prepare_topics(secure)  # the admin client
        events = simulated(secure, 30, 800)
        worker.start()
        send(secure, events)  # the producer
        wait_for(matches(secure, expected(secure, events), worker), timeout_s=180)  # the worker, then the readers

        wrong = changed(secure.kafka, sasl_password="wrong-one")
        assert not broker_answers(wrong, client_id="wrong-password", timeout_s=5)
        plain = changed(secure.kafka, security_protocol="PLAINTEXT")
        assert not broker_answers(plain, client_id="no-sasl", timeout_s=5)
        for wrong_redis in ({"password": "wrong-one"}, {"username": None, "password": None}):
            with pytest.raises(redis.AuthenticationError):
                redis_client(changed(secure, redis=wrong_redis)).ping()
        log = worker.log.read_text(errors="replace")
        assert PASSWORD not in log and REDIS_PASSWORD not in log
    finally:
        worker.stop()
        stack.down()
