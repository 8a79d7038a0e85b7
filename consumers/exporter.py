"""``referrals exporter``: the pipeline's global state for Prometheus, read at every scrape.

Everything here is read from where the pipeline keeps it, not counted in this process, so
the figures are right however many workers run, and survive a restart of any of them
(and of the exporter):

- the funnel, the reward ledger and the rejections from the live Redis view
  (``streams.redis_layout``, ``streams.counters``), summed over the shards;
- dead letters from their Redis counts (``streams.deadletter_counts``), once per record;
- consumer lag per topic and partition from Kafka (the worker group's committed offsets
  against the end offsets);
- whether each campaign is running, from the campaign file.

Labels are bounded: stage, channel, campaign, role, status, reason, topic, partition;
never a customer id, a code or an e-mail. A source that does not answer is reported by
``referral_exporter_source_up{source}`` = 0, and its metrics are left out of that scrape
(a gap in the graphs, never a wrong value).

Counters only grow: funnel stages, and every status a reward *reached* (a reward that is
pending and then confirmed counts once under each). Late events can correct a funnel
value downwards (a referral found to be an existing customer's, say); Prometheus' rate()
then sees a reset, so such a correction shows as one short spike, and the value stays right.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from consumers.live_counters import as_text, summed
from referrals.kafka_admin import group_positions
from referrals.redis_client import redis_client
from referrals.settings import Settings
from schemas.derived import ReasonCode, RewardRole, RewardStatus
from streams import deadletter_counts, redis_views
from streams.campaigns import CampaignBook
from streams.redis_layout import RedisLayout
from streams.topology import input_topics

log = logging.getLogger("referrals.exporter")


def campaigns_in(client: redis.Redis, layout: RedisLayout) -> list[str]:
    """Every campaign the view has counters for."""
    pipe = client.pipeline(transaction=False)
    for key in layout.all_campaign_sets():
        pipe.smembers(key)
    return sorted({as_text(c) for members in pipe.execute() for c in members})


ZERO_LEDGER: dict[str, int] = {
    **{f"{kind}:{role.value}:{status.value}": 0 for kind in ("rewards", "points") for role in RewardRole
       for status in RewardStatus},
    **{f"rejections:{reason.value}": 0 for reason in ReasonCode},
}


class PipelineCollector(Collector):
    def __init__(self, settings: Settings, campaigns: CampaignBook, client: redis.Redis):
        self.settings = settings
        self.campaigns = campaigns
        self.client = client
        self.prefix = settings.kafka.topic_prefix

    def _topic(self, name: str) -> str:
        return name[len(self.prefix):] if self.prefix and name.startswith(self.prefix) else name

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily("referral_exporter_source_up", "Whether the source answered this scrape",
                               labels=["source"])
        try:
            yield from self._redis_metrics()
            up.add_metric(["redis"], 1)
        except redis.RedisError as exc:
            log.warning("redis did not answer the scrape: %s", exc)
            up.add_metric(["redis"], 0)
        try:
            yield self._lag()
            up.add_metric(["kafka"], 1)
        except Exception as exc:  # kafka-python raises many kinds; the scrape goes on
            log.warning("kafka did not answer the scrape: %s", exc)
            up.add_metric(["kafka"], 0)
        yield up
        yield self._campaigns_active()
        took = GaugeMetricFamily("referral_exporter_scrape_seconds", "How long this scrape took")
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _redis_metrics(self) -> Iterator[Metric]:
        key_prefix = self.settings.redis.key_prefix
        layout = redis_views.active_layout(self.client, key_prefix, self.settings.kafka.partitions)
        funnel = CounterMetricFamily("referral_funnel_events", "Referral funnel: shares, clicks on a known code, "
                                     "attributed signups, first qualifying purchases",
                                     labels=["stage", "channel", "campaign"])
        rewards = CounterMetricFamily("referral_rewards", "Rewards that reached each status",
                                      labels=["role", "status", "campaign"])
        points = CounterMetricFamily("referral_reward_points", "Points of the rewards that reached each status "
                                     "(revoked: the points taken back)", labels=["role", "status", "campaign"])
        rejections = CounterMetricFamily("referral_rejections", "Referrals not counted or rewards withheld, by "
                                         "fraud or policy reason", labels=["reason", "campaign"])
        for campaign in campaigns_in(self.client, layout):
            for field, n in sorted(summed(self.client, layout.all_funnels(campaign)).items()):
                stage, _, channel = field.partition(":")
                funnel.add_metric([stage, channel, campaign], n)
            ledger = Counter(ZERO_LEDGER)  # every role, status and reason from 0: panels show 0, not "no data"
            ledger.update(summed(self.client, layout.all_ledgers(campaign)))
            for field, n in sorted(ledger.items()):
                kind, _, rest = field.partition(":")
                if kind == "rejections":
                    rejections.add_metric([rest, campaign], n)
                else:
                    role, _, status = rest.partition(":")
                    (rewards if kind == "rewards" else points).add_metric([role, status, campaign], n)
        deadletters = CounterMetricFamily("referral_deadletter", "Inbound records sent to the dead-letter topic, "
                                          "by source topic and reason", labels=["topic", "reason"])
        for (topic, reason), n in sorted(deadletter_counts.counts(self.client, key_prefix).items()):
            deadletters.add_metric([self._topic(topic), reason], n)
        yield from (funnel, rewards, points, rejections, deadletters)

    def _lag(self) -> Metric:
        group = self.settings.streams.app_id
        topics = input_topics(self.settings)
        lag = GaugeMetricFamily("referral_consumer_lag_records", "Records not yet processed by the worker group, "
                                "per input topic and partition", labels=["group", "topic", "partition"])
        for (topic, partition), (committed, end) in sorted(group_positions(self.settings, group, topics).items()):
            lag.add_metric([group, self._topic(topic), str(partition)], max(0, end - committed))
        return lag

    def _campaigns_active(self) -> Metric:
        active = GaugeMetricFamily("referral_campaign_active", "1 while a campaign runs (between its start and "
                                   "end), from the campaign file", labels=["campaign"])
        now = datetime.now(UTC)
        for campaign in self.campaigns.campaign:
            active.add_metric([campaign.id], int(campaign.active(now)))
        return active


def serve(settings: Settings, campaigns: CampaignBook, stop=None) -> None:
    """Serve /metrics until ``stop`` (a threading.Event) is set or the process is told to stop."""
    import signal
    import threading

    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(PipelineCollector(settings, campaigns,
                                        redis_client(settings, settings.exporter.redis_timeout_s)))
    server, thread = start_http_server(settings.exporter.port, addr=settings.exporter.host, registry=registry)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    log.info("exporter on http://%s:%d/metrics", settings.exporter.host, settings.exporter.port)
    try:
        stop.wait()
    finally:
        server.shutdown()
        thread.join(timeout=5)
