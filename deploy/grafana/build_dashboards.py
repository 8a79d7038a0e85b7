"""The Grafana dashboards as code: ``python -m deploy.grafana.build_dashboards`` writes
``deploy/grafana/dashboards/*.json`` (provisioned into Grafana by docker compose).

A test checks that the committed JSON is what this file builds, and evaluates every
panel's PromQL through a real Prometheus after a simulated run
(``tests/integration/consumers/test_prometheus.py``). Panels use the variables ``$campaign`` and
(on the funnel) ``$channel``; Grafana fills ``$__rate_interval``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
C = 'campaign=~"$campaign"'
CC = 'campaign=~"$campaign", channel=~"$channel"'


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {"datasource": DATASOURCE, "expr": expr, "refId": ref, "legendFormat": legend or "__auto"}
    if instant:
        t["instant"], t["range"] = True, False
    return t


def panel(title: str, kind: str, targets: list[dict[str, Any]], w: int, h: int, *, unit: str = "short",
          description: str = "", **options: Any) -> dict[str, Any]:
    return {"title": title, "type": kind, "datasource": DATASOURCE, "description": description,
            "targets": [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}, "options": options,
            "gridPos": {"w": w, "h": h}}


def variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": name}, "definition": query, "refresh": 2, "multi": True,
            "includeAll": True, "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "sort": 1}


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]],
              variables: list[dict[str, Any]]) -> dict[str, Any]:
    x = y = row_h = 0
    for i, p in enumerate(panels):  # lay the panels out left to right, 24 columns a row
        if x + p["gridPos"]["w"] > 24:
            x, y, row_h = 0, y + row_h, 0
        p["gridPos"].update({"x": x, "y": y})
        p["id"] = i + 1
        x += p["gridPos"]["w"]
        row_h = max(row_h, p["gridPos"]["h"])
    return {"uid": uid, "title": title, "description": description, "tags": ["referrals"], "editable": True,
            "schemaVersion": 39, "version": 1, "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
            "timezone": "utc", "templating": {"list": variables}, "panels": panels, "annotations": {"list": []}}


CAMPAIGN = variable("campaign", "label_values(referral_funnel_events_total, campaign)", "Campaign")
CHANNEL = variable("channel", 'label_values(referral_funnel_events_total{campaign=~"$campaign"}, channel)',
                   "Channel")
REWARD_CAMPAIGN = variable("campaign", "label_values(referral_rewards_total, campaign)", "Campaign")


def stage(name: str) -> str:
    return f'sum(referral_funnel_events_total{{stage="{name}", {CC}}})'


def funnel() -> dict[str, Any]:
    stages = ("share", "click", "signup", "conversion")
    return dashboard("referral-funnel", "Referral funnel",
                     "Share → click → signup → first purchase, from the live counters in Redis.", [
        *(panel(f"{s.capitalize()}s", "stat", [target(stage(s), s, instant=True)], 6, 4,
                description=f"{s} events counted (all time)") for s in stages),
        panel("Funnel", "bargauge", [target(f'sum by (stage) (referral_funnel_events_total{{{CC}}})', "{{stage}}",
                                            instant=True)], 12, 8, orientation="horizontal",
              description="Events per stage: shares, clicks on a known code, attributed signups, conversions"),
        panel("Stage-to-stage conversion", "stat", [
            target(f"{stage('click')} / {stage('share')}", "click per share", instant=True),
            target(f"{stage('signup')} / {stage('click')}", "signup per click", instant=True),
            target(f"{stage('conversion')} / {stage('signup')}", "conversion per signup", instant=True),
            target(f"{stage('conversion')} / {stage('share')}", "conversion per share", instant=True),
        ], 12, 8, unit="percentunit", description="Each stage's count divided by the one before"),
        panel("Events per stage", "timeseries", [target(
            f'sum by (stage) (rate(referral_funnel_events_total{{{CC}}}[$__rate_interval]))', "{{stage}}")],
            12, 8, unit="ops", description="Newly counted events per second"),
        panel("Top channels by shares", "bargauge", [target(
            f'topk(5, sum by (channel) (referral_funnel_events_total{{stage="share", {CC}}}))', "{{channel}}",
            instant=True)], 12, 8, orientation="horizontal"),
        panel("Conversions by channel", "bargauge", [target(
            f'sum by (channel) (referral_funnel_events_total{{stage="conversion", {CC}}})', "{{channel}}",
            instant=True)], 12, 8, orientation="horizontal",
            description="Channel of the attributing click; 'unknown' for referrals by code"),
        panel("By campaign", "table", [target(
            f'sum by (campaign, stage) (referral_funnel_events_total{{{CC}}})', "{{campaign}} {{stage}}",
            instant=True)], 12, 8),
    ], [CAMPAIGN, CHANNEL])


def rewards() -> dict[str, Any]:
    def reached(status: str) -> str:
        return f'sum(referral_rewards_total{{status="{status}", {C}}})'

    return dashboard("referral-rewards", "Rewards",
                     "Rewards by the statuses they reached: a reward pending and then confirmed counts in both.", [
        *(panel(f"{s.replace('_', ' ').capitalize()}", "stat", [target(reached(s), s, instant=True)], 4, 4,
                description=f"rewards that reached {s}")
          for s in ("pending", "confirmed", "revoked", "capped", "held_for_review")),
        panel("Confirmed points", "stat", [target(
            f'sum(referral_reward_points_total{{status="confirmed", {C}}})', "points", instant=True)], 4, 4),
        panel("Rewards by role and status", "table", [target(
            f'sum by (role, status) (referral_rewards_total{{{C}}})', "{{role}} {{status}}", instant=True)], 12, 8),
        panel("Points by status", "bargauge", [target(
            f'sum by (status) (referral_reward_points_total{{{C}}})', "{{status}}", instant=True)], 12, 8,
            orientation="horizontal", description="revoked: the points taken back"),
        panel("Points over time", "timeseries", [target(
            f'sum by (status) (increase(referral_reward_points_total{{{C}}}[$__rate_interval]))', "{{status}}")],
            24, 8, description="Points newly pending, confirmed, revoked per interval"),
        panel("Rewards decided per hour", "timeseries", [target(
            f'sum by (status) (increase(referral_rewards_total{{{C}}}[1h]))', "{{status}}")], 24, 8),
        # the way out to the shops (`referrals dispatcher`): every campaign's changes, per endpoint
        panel("Webhook deliveries", "timeseries", [target(
            "sum by (endpoint, outcome) (rate(referral_webhook_deliveries_total[$__rate_interval]))",
            "{{endpoint}} {{outcome}}")], 12, 8, unit="ops",
            description="Changes delivered (2xx) or dead, per second, per endpoint (all campaigns)"),
        panel("Oldest undelivered change", "timeseries", [target(
            "max by (endpoint) (referral_webhook_oldest_undelivered_seconds)", "{{endpoint}}")], 12, 8, unit="s",
            description="How long the oldest change read and not yet delivered has waited; alert above 1 h"),
        panel("Endpoint failing for", "stat", [target(
            "max by (endpoint) (referral_webhook_failing_seconds)", "{{endpoint}}", instant=True)], 6, 8, unit="s",
            description="Time since the endpoint's attempts started failing with none delivered; alert above 15 min"),
        panel("Webhook answer time (p95)", "timeseries", [target(
            "histogram_quantile(0.95, sum by (endpoint, le) "
            "(rate(referral_webhook_attempt_seconds_bucket[$__rate_interval])))", "{{endpoint}}")], 6, 8, unit="s"),
        panel("Webhook retries by cause", "bargauge", [target(
            "sum by (endpoint, cause) (referral_webhook_retries_total)", "{{endpoint}} {{cause}}", instant=True)],
            6, 8, orientation="horizontal", description="Since the dispatcher started: 5xx, 408, 429, timeouts, "
            "connection errors"),
        panel("Dead deliveries by cause", "bargauge", [target(
            "sum by (endpoint, cause) (referral_webhook_dead_deliveries_total)", "{{endpoint}} {{cause}}",
            instant=True)], 6, 8, orientation="horizontal",
            description="Since the dispatcher started; `referrals webhooks list` shows them, `replay` sends them"),
    ], [REWARD_CAMPAIGN])


def fraud() -> dict[str, Any]:
    return dashboard("referral-fraud", "Fraud and quality",
                     "Why referrals were not counted or rewards withheld, and inbound records refused.", [
        panel("Rejections by reason", "bargauge", [target(
            f'sum by (reason) (referral_rejections_total{{{C}}})', "{{reason}}", instant=True)], 12, 8,
            orientation="horizontal", description="Reason codes as the read API and docs/rules.md list them"),
        panel("Held for review", "stat", [target(
            f'sum(referral_rewards_total{{status="held_for_review", {C}}})', "held", instant=True)], 6, 8),
        panel("Held for review, share of new rewards (1 h)", "stat", [target(
            f'sum(increase(referral_rewards_total{{status="held_for_review", {C}}}[1h])) / '
            f'sum(increase(referral_rewards_total{{status=~"pending|capped|held_for_review", {C}}}[1h]))',
            "held share", instant=True)], 6, 8, unit="percentunit"),
        panel("Rejections over time", "timeseries", [target(
            f'sum by (reason) (increase(referral_rejections_total{{{C}}}[$__rate_interval]))', "{{reason}}")],
            24, 8),
        panel("Dead letters by source topic and reason", "table", [target(
            "sum by (topic, reason) (referral_deadletter_total)", "{{topic}} {{reason}}", instant=True)], 12, 8,
            description="Inspect with `referrals deadletter list`, re-inject with `referrals deadletter replay`"),
        panel("Dead letters per minute", "timeseries", [target(
            "sum by (topic) (rate(referral_deadletter_total[$__rate_interval])) * 60", "{{topic}}")], 12, 8),
    ], [REWARD_CAMPAIGN])


def health() -> dict[str, Any]:
    def quantile(q: float) -> str:
        return f"histogram_quantile({q}, sum by (le) (rate(referral_event_freshness_seconds_bucket[$__rate_interval])))"

    return dashboard("referral-pipeline-health", "Pipeline health",
                     "Consumer lag, event freshness, throughput of workers and gateway.", [
        panel("Consumer lag by topic", "timeseries", [target(
            "sum by (topic) (referral_consumer_lag_records)", "{{topic}}")], 12, 8,
            description="Records the worker group has not processed yet"),
        panel("Consumer lag by partition", "table", [target(
            "referral_consumer_lag_records", "{{topic}}[{{partition}}]", instant=True)], 12, 8),
        panel("Event freshness", "timeseries", [
            target(quantile(0.5), "p50"), target(quantile(0.99), "p99"),
        ], 12, 8, unit="s", description="From occurred_at to the live counters written (late events count as stale)"),
        panel("Events processed per agent", "timeseries", [target(
            "sum by (agent) (rate(referral_worker_events_total[$__rate_interval]))", "{{agent}}")], 12, 8,
            unit="ops"),
        panel("Batch time p99 per agent", "timeseries", [target(
            "histogram_quantile(0.99, sum by (le, agent) (rate(referral_worker_batch_seconds_bucket"
            "[$__rate_interval])))", "{{agent}}")], 12, 8, unit="s"),
        panel("Gateway requests", "timeseries", [target(
            "sum by (route, status) (rate(referral_gateway_requests_total[$__rate_interval]))",
            "{{route}} {{status}}")], 12, 8, unit="reqps"),
        panel("Gateway latency p99", "timeseries", [target(
            "histogram_quantile(0.99, sum by (le, route) (rate(referral_gateway_request_seconds_bucket"
            "[$__rate_interval])))", "{{route}}")], 12, 8, unit="s"),
        panel("Gateway events accepted", "timeseries", [target(
            "sum by (type) (rate(referral_gateway_events_total[$__rate_interval]))", "{{type}}")], 12, 8,
            unit="ops"),
        panel("Sources and targets up", "table", [
            target("referral_exporter_source_up", "{{source}}", instant=True),
            target('up{job=~"referral-.*"}', "{{job}} {{instance}}", instant=True),
        ], 24, 6),
    ], [])


DASHBOARDS = {"referral-funnel": funnel, "referral-rewards": rewards, "referral-fraud": fraud,
              "referral-pipeline-health": health}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2, sort_keys=True) + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name in DASHBOARDS:
        (OUT / f"{name}.json").write_text(render(name))
        print(f"wrote {OUT / f'{name}.json'}")


if __name__ == "__main__":
    main()
