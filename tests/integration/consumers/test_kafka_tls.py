"""Every client of the project over TLS, on the three-node cluster with the stack's own CA (``fixtures/cluster.py``),
with nothing but the documented settings (``security_protocol=SSL``, ``ssl_cafile``): the Python client and the
simulator's producer, the gateway, the worker, the dispatcher, the exporter, the ops commands, the simulator
command and the bench's bare clients. A client trusting another CA, and one speaking plaintext, are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime

import httpx

from bench import raw_limits
from deploy.local.processes import free_port
from deploy.local.service_process import ExporterProcess
from producers.client import ReferralEvents
from referrals.kafka_admin import broker_answers, ensure_topics
from referrals.settings import changed, worker_environment
from tests.integration.fixtures.gateway import APP_KEY, SHOP_KEY
from tests.integration.support.worker import expected, matches, send, simulated, wait_for


def other_ca(folder) -> str:
    """A CA the cluster's certificates do not come from."""
    key, cert = folder / "other-ca.key", folder / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=another CA"], check=True, capture_output=True)
    return str(cert)


def test_every_client_speaks_tls_with_the_documented_settings_and_another_ca_is_refused(
        cluster, pipeline_factory, app_factory, dispatcher_factory, receiver_factory, tmp_path):
    own, worker = pipeline_factory("tls", base=cluster.settings)
    assert own.kafka.security_protocol == "SSL" and own.kafka.ssl_cafile is not None
    events = simulated(own, 33, 500)  # the codes in Redis; the events sent three ways below
    third = len(events) // 3
    shop = [e for e in events[third:2 * third] if e["type"] in ("signup", "order", "refund")]
    send(own, events[:third] + [e for e in events[third:2 * third] if e not in shop])  # the simulator's producer
    with ReferralEvents(settings=own, source="shop/tls") as client:  # the Python client for shop backends
        for e in shop:
            at = datetime.fromisoformat(e["occurred_at"])
            if e["type"] == "signup":
                client.signup(e["customer_id"], occurred_at=at, event_id=e["event_id"],
                              referral_code=e.get("referral_code"), visitor_id=e.get("visitor_id"),
                              email_hash=e.get("email_hash"), device_id=e.get("device_id"))
            elif e["type"] == "order":
                client.order(e["order_id"], e["customer_id"], e["amount"], e["currency"], occurred_at=at,
                             event_id=e["event_id"], referral_code=e.get("referral_code"))
            else:
                client.refund(e["order_id"], e["customer_id"], e["amount"], e["currency"], occurred_at=at,
                              event_id=e["event_id"])
    gateway = app_factory(data_of=own, base=cluster.settings)  # the gateway's aiokafka producer
    http = httpx.Client(base_url=gateway.url, timeout=30)
    for event in events[2 * third:]:
        key = APP_KEY if event["type"] in ("share", "click") else SHOP_KEY
        answer = http.post("/v1/events", json=event, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 202, answer.text
    assert http.get("/readyz").status_code == 200

    receiver = receiver_factory("tls-shop")
    dispatcher_factory(own, endpoints=[receiver.endpoint(["reward.pending", "reward.confirmed"])])
    worker.start()  # Faust over aiokafka, with the settings' TLS context
    wait_for(matches(own, expected(own, events), worker), timeout_s=300)
    wait_for(lambda: (len(receiver.delivered()) > 0, "a reward delivered by the dispatcher"), timeout_s=120)

    exporter_port = free_port()
    exporter = ExporterProcess("127.0.0.1", exporter_port, tmp_path / "exporter.log", env={
        **worker_environment(own, ("kafka", "redis", "streams")), "REFERRALS_EXPORTER__PORT": str(exporter_port)})
    exporter.start()
    try:
        scraped = httpx.get(f"http://127.0.0.1:{exporter_port}/metrics").text
        assert 'referral_exporter_source_up{source="kafka"} 1.0' in scraped, scraped[-2000:]
        assert "referral_consumer_lag_records{" in scraped
    finally:
        exporter.stop()

    env = {**os.environ, **worker_environment(own, ("kafka", "redis", "streams"))}
    for command in (["status"], ["topics", "list"], ["simulate", "--to", "kafka", "--count", "20", "--rate", "0"]):
        done = subprocess.run([sys.executable, "-m", "referrals.cli", *command], env=env, capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])

    tool_topic, bench_topic = own.kafka.topic_prefix + "bench.tool", own.kafka.topic_prefix + "bench.tls"
    ensure_topics(own, [tool_topic, bench_topic])
    raw_limits.resolve_tools(own, echo=lambda message: None)
    assert raw_limits.kafka_tool_produce(own, tool_topic, 2000) > 0  # Kafka's ProducerPerformance (Java)
    assert raw_limits.kafka_python_produce(own, bench_topic, 2000) > 0
    assert raw_limits.aiokafka_produce(own, bench_topic, 2000) > 0
    assert raw_limits.aiokafka_consume(own, bench_topic, 4000) > 0
    assert raw_limits.faust_empty_agent(own, bench_topic, 4000, tmp_path / "floor") > 0

    assert not broker_answers(changed(own.kafka, ssl_cafile=other_ca(tmp_path)), client_id="other-ca", timeout_s=5)
    assert not broker_answers(changed(own.kafka, security_protocol="PLAINTEXT"), client_id="plain", timeout_s=5)
    refused = app_factory(base=changed(cluster.settings, kafka={"ssl_cafile": other_ca(tmp_path)}),
                          create_topics=False)
    assert httpx.get(f"{refused.url}/readyz", timeout=30).status_code == 503
