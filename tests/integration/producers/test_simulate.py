"""The simulator through the real gateway and straight to the real broker: everything sent arrives."""

from __future__ import annotations

from producers.simulate import GatewayTarget, KafkaTarget, register_codes, run
from producers.simulator import Simulation, SimulationConfig
from schemas.topics import BY_EVENT_TYPE
from tests.integration.support.kafka_reading import end_offsets


def arrived(settings) -> dict[str, int]:
    prefix = settings.kafka.topic_prefix
    counts = end_offsets(settings, [prefix + spec.name for spec in BY_EVENT_TYPE.values()])
    return {kind: counts[prefix + spec.name] for kind, spec in BY_EVENT_TYPE.items()}


def test_simulated_traffic_through_the_gateway_all_arrives(app_factory):
    gw = app_factory()
    config = SimulationConfig(customers=50, time_compression=1e4)
    target = GatewayTarget(gw.settings, gw.url)
    progress = []
    try:
        summary = run(config, seed=3, target=target, rate=0, count=1500,
                      duration_s=None, on_progress=lambda s, r: progress.append(s.sent))
    finally:
        target.close()
    assert summary.sent == 1500 and summary.rejected == 0
    assert progress and progress[-1] == 1500
    assert arrived(gw.settings) == {k: summary.by_type.get(k, 0) for k in BY_EVENT_TYPE}


def test_paced_simulation_keeps_the_rate(app_factory):
    gw = app_factory()
    target = GatewayTarget(gw.settings, gw.url)
    try:
        summary = run(SimulationConfig(customers=20), seed=4, target=target, rate=100, count=None, duration_s=3)
    finally:
        target.close()
    # paced: about 3 s x 100 events/s (Poisson arrivals, so not exact)
    assert 150 <= summary.sent <= 450
    assert sum(arrived(gw.settings).values()) == summary.sent


def test_simulation_straight_to_kafka_with_codes_registered(app_factory):
    gw = app_factory()
    config = SimulationConfig(customers=30, time_compression=1e4)
    from datetime import UTC, datetime, timedelta

    simulation = Simulation(config, 9, datetime.now(UTC) - timedelta(seconds=5), 200)
    assert register_codes(gw.settings, simulation) == 30
    assert register_codes(gw.settings, simulation) == 0  # stable: the same codes again
    target = KafkaTarget(gw.settings)
    try:
        summary = run(config, seed=9, target=target, rate=0, count=800, duration_s=None, simulation=simulation)
    finally:
        target.close()
    assert arrived(gw.settings) == {k: summary.by_type.get(k, 0) for k in BY_EVENT_TYPE}
    from referrals.code_registry import CodeRegistry

    owner = CodeRegistry.from_settings(gw.settings).resolve(simulation.customers[0].code)
    assert owner.referrer_id == simulation.customers[0].customer_id
