"""Creating and describing the project's topics on a real broker (kafka-python admin client)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaConfigurationError, KafkaError, TopicAlreadyExistsError

from referrals.settings import KafkaSettings, Settings


class TopicMismatch(RuntimeError):
    """An existing topic does not have the partition count the project needs for co-partitioning."""


@dataclass(frozen=True, slots=True)
class TopicState:
    name: str
    partitions: int
    created: bool


def project_topics(settings: Settings) -> list[str]:
    """The names of every project topic, with the configured prefix."""
    from schemas.topics import ALL

    return [settings.kafka.topic_prefix + spec.name for spec in ALL]


def broker_answers(kafka: KafkaSettings, *, client_id: str, timeout_s: float) -> bool:
    """Does the broker answer a metadata request within ``timeout_s``? A wrong client setting raises."""
    ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(**kafka.client_options(), client_id=client_id, request_timeout_ms=ms,
                                 bootstrap_timeout_ms=ms)
    except KafkaConfigurationError:
        raise
    except (KafkaError, OSError):
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def admin_client(settings: Settings, client_id: str = "referrals-admin") -> KafkaAdminClient:
    return KafkaAdminClient(**settings.kafka.client_options(), client_id=client_id, request_timeout_ms=15000)


def ensure_topics(settings: Settings, names: Iterable[str], partitions: int | None = None,
                  configs: dict[str, str] | None = None) -> list[TopicState]:
    """Create the topics that do not exist (with ``configs``, replicated ``kafka.replicas`` times, with
    ``kafka.min_isr`` in-sync replicas for a write); check that every one has the right partition count."""
    want = partitions or settings.kafka.partitions
    configs = {"min.insync.replicas": str(settings.kafka.min_isr), **(configs or {})}
    names = list(dict.fromkeys(names))
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(n, want, settings.kafka.replicas, topic_configs=configs)
                                     for n in missing], timeout_ms=30000)
            except TopicAlreadyExistsError:
                pass  # created concurrently by another process: checked below like any existing topic
        counts = partition_counts(admin, names)
    finally:
        admin.close()
    wrong = {n: c for n, c in counts.items() if c != want}
    if wrong:
        raise TopicMismatch(
            ", ".join(f"{n} has {c} partitions" for n, c in wrong.items())
            + f"; the project needs {want} on every topic so that keys stay co-partitioned"
        )
    return [TopicState(n, counts[n], n in missing) for n in names]


UNKNOWN_TOPIC_OR_PARTITION = 3


def partition_counts(admin: KafkaAdminClient, names: list[str], wait_s: float = 15.0) -> dict[str, int]:
    """Partition count per topic. A topic created a moment ago may take a moment to be known
    to the broker's metadata; that is waited for (bounded), any other error is raised."""
    deadline = time.monotonic() + wait_s
    while True:
        counts, unknown = {}, []
        for topic in admin.describe_topics(names):
            code = topic.get("error_code")
            if code == UNKNOWN_TOPIC_OR_PARTITION:
                unknown.append(topic["name"])
            elif code:
                raise RuntimeError(f"cannot describe topic {topic.get('name')}: error code {code}")
            else:
                counts[topic["name"]] = len(topic["partitions"])
        if not unknown:
            return counts
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics not known to the broker after {wait_s:.0f} s: {', '.join(unknown)}")
        time.sleep(0.1)


def topic_names(settings: Settings) -> set[str]:
    """Every topic the cluster has."""
    admin = admin_client(settings)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def delete_topics(settings: Settings, names: Iterable[str]) -> None:
    """Delete topics (the tests' own); names that do not exist are ignored."""
    names = list(names)
    if not names:
        return
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            admin.delete_topics(doomed)
    finally:
        admin.close()


def group_positions(settings: Settings, group: str, topics: Iterable[str]) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (the group's committed offset, 0 if none; the end offset) for ``topics``."""
    from kafka import KafkaConsumer, TopicPartition

    admin = admin_client(settings, "referrals-lag")
    consumer = KafkaConsumer(**settings.kafka.client_options(), client_id="referrals-lag",
                             enable_auto_commit=False)
    try:
        committed = admin.list_group_offsets(group).get(group, {})
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.kafka.partitions)]
        ends = consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): (committed[tp].offset if tp in committed else 0, end)
                for tp, end in ends.items()}
    finally:
        consumer.close()
        admin.close()


def group_lag(settings: Settings, group: str, topics: Iterable[str]) -> int:
    """Records of ``topics`` the consumer group has not committed yet (uncommitted partitions count whole)."""
    return sum(max(0, end - committed) for committed, end in group_positions(settings, group, topics).values())
