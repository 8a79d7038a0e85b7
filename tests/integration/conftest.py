"""Fixtures for the tests against the real stack (Kafka 4 in KRaft mode, Redis, Prometheus, the project's own
processes), one module per area: ``fixtures/stack.py`` (the stack, names of a test's own), ``fixtures/gateway.py``
(the gateway served in-process), ``fixtures/pipeline.py`` (a pipeline and its worker), ``fixtures/cluster.py`` (three
Kafka nodes over TLS, once per run). Fixtures only one area
uses live in that area's conftest (Prometheus: ``consumers/conftest.py``); helpers tests import are in
``support/``.
"""

from tests.integration.fixtures.cluster import cluster
from tests.integration.fixtures.gateway import app_factory
from tests.integration.fixtures.pipeline import pipeline_factory
from tests.integration.fixtures.stack import (
    isolated_settings,
    redis_client,
    redis_keys,
    settings,
    stack,
    topic_factory,
    unique_name,
)

__all__ = ["app_factory", "cluster", "isolated_settings", "pipeline_factory", "redis_client", "redis_keys", "settings", "stack",
           "topic_factory", "unique_name"]
