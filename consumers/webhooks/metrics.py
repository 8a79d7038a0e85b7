"""The dispatcher's metrics. Labels: the endpoint's name (from configuration) and bounded outcomes; never a
customer, reward or webhook id."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ATTEMPTS = Counter("referral_webhook_attempts", "POSTs to an endpoint, by what came back: delivered (2xx), "
                   "retry (5xx, 408, 429, timeout, connection error), refused (any other answer)",
                   ["endpoint", "result"])
DELIVERIES = Counter("referral_webhook_deliveries", "changes settled, by outcome: delivered or dead",
                     ["endpoint", "outcome"])
RETRIES = Counter("referral_webhook_retries", "retries scheduled, by cause (status_<code>, timeout, connection)",
                  ["endpoint", "cause"])
DEAD = Counter("referral_webhook_dead_deliveries", "changes put on the dead-letter topic, by cause",
               ["endpoint", "cause"])
LATENCY = Histogram("referral_webhook_attempt_seconds", "how long an endpoint took to answer one POST",
                    ["endpoint"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
OLDEST = Gauge("referral_webhook_oldest_undelivered_seconds", "age of the oldest change read and not yet "
               "delivered (or dead) per endpoint; 0 when none waits", ["endpoint"])
SKIPPED = Counter("referral_webhook_unreadable", "records on the reward or attribution topics that are no change "
                  "(not their contract); skipped, logged", ["topic"])
FAILING = Gauge("referral_webhook_failing_seconds", "how long an endpoint's attempts have failed (retried or "
                "refused) with none delivered since; 0 after a delivery. Counted from the dispatcher's start at most",
                ["endpoint"])
