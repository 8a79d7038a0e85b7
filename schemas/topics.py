"""Topic names, and the partition key of every topic with the reason it was chosen.

Every topic has the same number of partitions (``Settings.kafka.partitions``) and every
producer uses Kafka's default murmur2 partitioner (kafka-python, aiokafka and the Java
client agree), so the same key lands on the same partition number in every topic: the
topics are co-partitioned, and a worker that owns partition *n* of ``shop.orders`` also
owns partition *n* of ``customers.signups`` and ``referrals.attributions``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    key_field: str
    why: str
    event_type: str | None = None  # the inbound event type it carries; None for derived topics


SHARES = TopicSpec(
    "referrals.shares",
    "referrer_id",
    "share counts are per referrer (funnel, leaderboard); one referrer's shares stay in order in one partition",
    "share",
)
CLICKS = TopicSpec(
    "referrals.clicks",
    "visitor_id",
    "click attribution looks up one visitor's clicks; all clicks of a visitor are in one partition, in order",
    "click",
)
SIGNUPS = TopicSpec(
    "customers.signups",
    "customer_id",
    "'attributed at most once' is a per-customer decision; signups, orders, refunds and attributions of one "
    "customer share a partition (visitor-based attribution re-keys the signup by visitor_id inside the worker)",
    "signup",
)
ORDERS = TopicSpec(
    "shop.orders",
    "customer_id",
    "the first qualifying order is per customer and must be decided next to the customer's attribution",
    "order",
)
REFUNDS = TopicSpec(
    "shop.refunds",
    "customer_id",
    "a refund is judged against the customer's qualifying order, which sits in the same partition",
    "refund",
)
ATTRIBUTIONS = TopicSpec(
    "referrals.attributions",
    "referee_id",
    "keyed like signups and orders (the referee is the customer), so qualification reads it locally",
)
REWARDS = TopicSpec(
    "referrals.rewards",
    "referrer_id",
    "monthly caps and milestones are per referrer; all reward changes of one referrer are in one partition",
)
DEADLETTER = TopicSpec(
    "referrals.deadletter",
    "source_topic",
    "kept per source topic in order; nothing downstream joins on it",
)
FULFILMENTS = TopicSpec(
    "referrals.fulfilments",
    "reward_id",
    "the shops' word on each reward (issued, or could not be); one reward's in order; read by the reward book",
)
WEBHOOK_DEADLETTER = TopicSpec(
    "referrals.webhooks.deadletter",
    "endpoint",
    "the deliveries an endpoint refused or never took, in the order they died: `referrals webhooks replay` sends "
    "one endpoint's again in that order, so a reward's changes arrive in their order",
)

# The worker's own topics between its stages (values are facts in the records' encoding, streams.record_codec;
# read only by the worker).
VISITOR_FACTS = TopicSpec(
    "referrals.visitor-facts",
    "visitor_id",
    "a signup without a code is re-keyed by its visitor, so it meets that visitor's clicks in one partition",
)
CUSTOMER_FACTS = TopicSpec(
    "referrals.customer-facts",
    "customer_id",
    "a click candidate is sent to the customer it would attribute, next to the customer's signups and orders",
)
REFERRER_FACTS = TopicSpec(
    "referrals.referrer-facts",
    "referrer_id",
    "referrals, profiles and counted clicks of one referrer, and the clock's ticks (sent to every partition)",
)

INBOUND: tuple[TopicSpec, ...] = (SHARES, CLICKS, SIGNUPS, ORDERS, REFUNDS)
DERIVED: tuple[TopicSpec, ...] = (ATTRIBUTIONS, REWARDS, DEADLETTER, FULFILMENTS, WEBHOOK_DEADLETTER)
ALL: tuple[TopicSpec, ...] = INBOUND + DERIVED
INTERNAL: tuple[TopicSpec, ...] = (VISITOR_FACTS, CUSTOMER_FACTS, REFERRER_FACTS)
BY_EVENT_TYPE: dict[str, TopicSpec] = {spec.event_type: spec for spec in INBOUND if spec.event_type}
