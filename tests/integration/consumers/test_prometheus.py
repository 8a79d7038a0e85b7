"""The metrics through a real Prometheus: scraped after a simulated run, every dashboard panel's and
every alert rule's PromQL evaluated through Prometheus' HTTP API, the funnel equal to Redis; no personal
data in any label value or in the logs at info level."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest
import yaml
from kafka import KafkaProducer
from prometheus_client import start_http_server
from prometheus_client.parser import text_string_to_metric_families

from consumers import kafka_log
from consumers.exporter import serve
from deploy.grafana.build_dashboards import DASHBOARDS
from deploy.local.processes import free_port
from producers.simulate import GatewayTarget, Summary
from referrals.settings import changed
from schemas.topics import ATTRIBUTIONS, REWARDS
from schemas.webhooks import ATTRIBUTED, REWARD_TYPES
from streams.campaigns import load_campaigns
from streams.redis_layout import RedisLayout
from tests.integration.consumers.conftest import PROMETHEUS_DIR
from tests.integration.support.worker import client, expected, matches, redis_funnel, simulated, wait_for

# what identifies a customer in the simulated events (event and order ids are the shop's, not personal)
PERSONAL_FIELDS = ("customer_id", "referrer_id", "visitor_id", "device_id", "email_hash", "referral_code")

# Panels that may rightly show nothing after the test's run, and why.
MAY_BE_EMPTY: dict[str, str] = {}


def exprs_of_dashboards() -> list[tuple[str, str, str]]:
    """(dashboard, panel, expr) of every panel target, with the dashboard variables filled in."""
    out = []
    for name, build in DASHBOARDS.items():
        for panel in build()["panels"]:
            for target in panel["targets"]:
                expr = (target["expr"].replace("$__rate_interval", "1m").replace('"$campaign"', '"default"')
                        .replace('"$channel"', '".*"'))
                assert "$" not in expr, f"{name}/{panel['title']}: a variable the test does not fill: {expr}"
                out.append((name, panel["title"], expr))
    return out


def variable_queries() -> list[tuple[str, str, str]]:
    """(dashboard, variable, label_values query) of every dashboard variable."""
    return [(name, v["name"], v["query"]["query"]) for name, build in DASHBOARDS.items()
            for v in build()["templating"]["list"]]


def alert_exprs() -> dict[str, str]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return {r["alert"]: r["expr"] for group in rules["groups"] for r in group["rules"]}


def bad_record(settings) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap)
    producer.send(settings.kafka.topic_prefix + "shop.orders", key=b"k", value=b"{not json").get(timeout=30)
    producer.close()


def redis_ledger(settings) -> Counter:
    layout = RedisLayout(settings.redis.key_prefix, settings.kafka.partitions)
    total: Counter = Counter()
    with client(settings) as c:
        for key in layout.all_ledgers("default"):
            total.update({k: int(v) for k, v in c.hgetall(key).items()})
    return total


@pytest.fixture
def exporter_thread():
    stops = []

    def start(settings, campaigns) -> None:
        stop = threading.Event()
        thread = threading.Thread(target=serve, args=(settings, campaigns, stop), daemon=True)
        thread.start()
        stops.append((stop, thread))

    yield start
    for stop, thread in stops:
        stop.set()
        thread.join(timeout=10)


def test_prometheus_scrapes_the_pipeline_and_every_dashboard_and_alert_expression_evaluates(
        pipeline_factory, app_factory, prometheus_factory, exporter_thread, dispatcher_factory, receiver_factory,
        caplog):
    caplog.set_level(logging.INFO)  # the gateway's and the exporter's logs, in this process, at info
    own, worker = pipeline_factory("prom", metrics_port=free_port())
    own = changed(own, exporter={"port": free_port()})
    gateway = app_factory(data_of=own)
    gateway_metrics, _ = start_http_server(free_port(), addr="127.0.0.1")
    exporter_thread(own, load_campaigns(own.streams.campaigns_file))
    # the way out: every reward change to a shop's endpoint; one more that fails at first, one that refuses
    shop, flaky, refusing = (receiver_factory("shop"), receiver_factory("flaky", "fail-first:1"),
                             receiver_factory("refusing", "status:400"))
    every_type = [*REWARD_TYPES.values(), ATTRIBUTED]
    dispatcher = dispatcher_factory(own, backoff_first_s=0.2, backoff_max_s=1.0, endpoints=[
        shop.endpoint(every_type), flaky.endpoint(every_type), refusing.endpoint(["reward.pending"])])
    try:
        prom = prometheus_factory({
            "referral-exporter": f"127.0.0.1:{own.exporter.port}",
            "referral-worker": f"127.0.0.1:{own.streams.metrics_port}",
            "referral-gateway": f"127.0.0.1:{gateway_metrics.server_port}",
            "referral-dispatcher": f"127.0.0.1:{dispatcher.metrics_port}",
        })
        events = simulated(own, 51, 1200)
        bad_record(own)
        worker.start()
        target = GatewayTarget(gateway.settings, gateway.url)
        try:
            target.send(events, Summary())
        finally:
            target.close()
        want = expected(own, events)
        wait_for(matches(own, want, worker), timeout_s=180)

        deadline = time.monotonic() + 60
        while not all(prom.targets_up().values()) or len(prom.targets_up()) < 5:
            assert time.monotonic() < deadline, f"targets not up: {prom.targets_up()}\n{prom.log.read_text()[-2000:]}"
            time.sleep(0.5)

        # every exposition passes promtool's own checks (names, types, units, label conventions)
        # every change the worker wrote reached the shop's endpoint, signed (verified by standardwebhooks)
        changes = [r.value for r in kafka_log.read(own, kafka_log.end_offsets(
            own, [own.kafka.topic_prefix + REWARDS.name, own.kafka.topic_prefix + ATTRIBUTIONS.name]))]
        assert len(changes) > 10
        want = {json.loads(v)["event_id"] for v in changes}
        wait_for(lambda: (want <= {r["webhook_id"] for r in shop.delivered()}, len(shop.delivered())), timeout_s=120)
        assert all(r["verified"] for r in shop.requests())

        for job, address in (("exporter", own.exporter.port), ("worker", own.streams.metrics_port),
                             ("gateway", gateway_metrics.server_port), ("dispatcher", dispatcher.metrics_port)):
            text = httpx.get(f"http://127.0.0.1:{address}/metrics", timeout=10).text
            done = subprocess.run([shutil.which("promtool") or "promtool", "check", "metrics"], input=text,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), \
                f"{job}: {done.stdout}{done.stderr}"

        # the funnel as Prometheus has it equals the live counters in Redis
        live = redis_funnel(own)

        def scraped() -> Counter:
            rows = prom.query('sum by (stage, channel) (referral_funnel_events_total{campaign="default"})')
            return +Counter({f"{r['metric']['stage']}:{r['metric']['channel']}": int(float(r["value"][1]))
                             for r in rows})

        wait_for(lambda: (scraped() == live, {"prometheus": scraped(), "redis": live}), timeout_s=30)
        assert sum(live.values()) > 0

        # One more share while Prometheus watches: the whole run may have fitted between two scrapes, and
        # increase() and rate() need a change between samples (as steady traffic gives them).
        share = next(e for e in events if e["type"] == "share")
        target = GatewayTarget(gateway.settings, gateway.url)
        try:
            target.send([share | {"event_id": "share-while-watched", "occurred_at": datetime.now(UTC).isoformat()}],
                        Summary())
        finally:
            target.close()
        live[f"share:{share['channel']}"] += 1
        wait_for(lambda: (scraped() == live, {"prometheus": scraped(), "redis": redis_funnel(own)}), timeout_s=60)
        time.sleep(3)  # a few more scrapes

        empty = []
        for dashboard, title, expr in exprs_of_dashboards():
            if not prom.query(expr) and title not in MAY_BE_EMPTY:
                empty.append(f"{dashboard}: {title}: {expr}")
        assert not empty, "panels without data after the run:\n" + "\n".join(empty)

        for dashboard, variable, query in variable_queries():
            found = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
            assert found, query
            values = prom.api(f"label/{found.group(2)}/values", **{"match[]": found.group(1).replace(
                '"$campaign"', '".*"')})
            assert values, f"{dashboard}: variable {variable} has no values"

        results = {alert: prom.query(expr) for alert, expr in alert_exprs().items()}  # each one valid
        # A dead letter arriving while Prometheus watches: the dead-letter alert's expression has it at once.
        # (The first one made its series, which starts at 1; the rule's second clause only counts new series
        # while the exporter was scraped 5 minutes before, which this young Prometheus was not.)
        bad_record(own)
        wait_for(lambda: (bool(rows := prom.query(alert_exprs()["ReferralDeadLetters"])), rows), timeout_s=60)
        assert {r["metric"]["topic"] for r in prom.query(alert_exprs()["ReferralDeadLetters"])} == {"shop.orders"}
        quiet = {"ReferralConsumerLagHigh", "ReferralNoEvents", "ReferralExporterSourceDown", "ReferralTargetDown",
                 "ReferralWebhookEndpointFailing", "ReferralWebhookUndeliveredOld"}
        assert {alert: rows for alert, rows in results.items() if alert in quiet and rows} == {}

        # the reward ledger and the rejections as Prometheus has them equal the ledger in Redis
        ledger = redis_ledger(own)
        assert ledger, "the simulated run has rewards"
        rows = prom.query('sum by (role, status) (referral_rewards_total{campaign="default"})')
        assert +Counter({f"rewards:{r['metric']['role']}:{r['metric']['status']}": int(float(r["value"][1]))
                         for r in rows}) == +Counter({k: v for k, v in ledger.items() if k.startswith("rewards:")})
        rows = prom.query('sum by (reason) (referral_rejections_total{campaign="default"})')
        assert +Counter({f"rejections:{r['metric']['reason']}": int(float(r["value"][1])) for r in rows}) == \
            +Counter({k: v for k, v in ledger.items() if k.startswith("rejections:")})
        assert any(k.startswith("rejections:") for k in +ledger), "the simulated run rejects some referrals"
        worker_events = prom.query('sum by (agent) (referral_worker_events_total)')
        assert {r["metric"]["agent"] for r in worker_events} == {"visitors", "customers", "referrers"}
        accepted = prom.query("sum(referral_gateway_events_total)")
        assert float(accepted[0]["value"][1]) >= len(events)

        # personal data: no customer, visitor or device id, e-mail hash or code in any label value, nor in
        # the worker's log (it runs at info) or the gateway's and the exporter's
        personal = {e[f] for e in events for f in PERSONAL_FIELDS if e.get(f)}
        assert len(personal) > 100
        labels = set()
        for port in (own.exporter.port, own.streams.metrics_port, gateway_metrics.server_port,
                     dispatcher.metrics_port):
            for family in text_string_to_metric_families(httpx.get(f"http://127.0.0.1:{port}/metrics",
                                                                   timeout=10).text):
                for sample in family.samples:
                    labels.update(sample.labels.values())
        assert {"default", "whatsapp"} <= labels
        assert not labels & personal, sorted(labels & personal)[:5]
        logged = (worker.log.read_text(errors="replace") + "\n" + caplog.text + "\n"
                  + dispatcher.log.read_text(errors="replace"))
        tokens = set(re.findall(r"[\w.@+-]+", logged))
        assert "dead" in tokens and len(tokens) > 50  # the logs were read: the bad records are in them
        assert not tokens & personal, sorted(tokens & personal)[:5]
    finally:
        gateway_metrics.shutdown()
