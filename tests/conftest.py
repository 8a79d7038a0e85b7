"""Shared pytest hooks: mark integration tests, and report which real Kafka and Redis they used."""

from __future__ import annotations

from pathlib import Path

import pytest

INTEGRATION = Path(__file__).parent / "integration"


def pytest_addoption(parser):
    parser.addoption("--soak", action="store_true", default=False,
                     help="the long variants of the fault-injection tests (`make soak`): 8 times the events")


@pytest.fixture(scope="session")
def soak_factor(request) -> int:
    """How many times the short variant's events a fault test sends: 1, or 8 with --soak."""
    return 8 if request.config.getoption("--soak") else 1


def pytest_collection_modifyitems(config, items):
    for item in items:
        if INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def pytest_report_header(config):
    from deploy.local.kafka_broker import pinned_kafka_version

    return f"pinned broker: Apache Kafka {pinned_kafka_version()} (deploy/local/kafka/pom.xml)"


def pytest_terminal_summary(terminalreporter):
    from tests.integration.fixtures.stack import STACK_FACTS

    if STACK_FACTS:
        terminalreporter.section("real stack used by the integration tests")
        for name, fact in STACK_FACTS.items():
            terminalreporter.write_line(f"{name}: {fact}")
