"""HTTP service supervision (start, ready on its URL, stop) with real child processes: Python's own
``http.server`` stands in for the gateway and the exporter."""

from __future__ import annotations

import httpx
import pytest

from deploy.local.processes import free_port
from deploy.local.service_process import ExporterProcess, GatewayProcess, ServiceFailed, ServiceProcess


@pytest.fixture
def services():
    made: list[ServiceProcess] = []
    yield made
    for service in made:
        service.stop()


def test_ready_once_its_url_answers_and_stopped_with_sigterm(tmp_path, services):
    port = free_port()
    service = ServiceProcess("stand-in", ["-m", "http.server", str(port), "--bind", "127.0.0.1"],
                             f"http://127.0.0.1:{port}/", tmp_path / "service.log", env={"STAND_IN": "1"})
    services.append(service)
    service.start(ready_within_s=30)
    assert service.running and httpx.get(service.ready_url).status_code == 200
    service.stop()
    assert not service.running and service.proc.returncode != 0  # ended by the signal, not by itself


def stand_in(tmp_path, services: list[ServiceProcess], code: str) -> ServiceProcess:
    """A service that runs ``code`` and never answers on its (free) ready URL."""
    service = ServiceProcess("stand-in", ["-c", code], f"http://127.0.0.1:{free_port()}/", tmp_path / "service.log")
    services.append(service)
    return service


def test_a_service_that_exits_fails_with_its_log(tmp_path, services):
    service = stand_in(tmp_path, services, "print('no such port'); raise SystemExit(3)")
    with pytest.raises(ServiceFailed, match=r"(?s)the stand-in exited with 3:.*no such port"):
        service.start(ready_within_s=30)


def test_a_service_that_never_answers_fails_in_time(tmp_path, services):
    service = stand_in(tmp_path, services, "import time; print('busy', flush=True); time.sleep(60)")
    with pytest.raises(ServiceFailed, match=r"(?s)the stand-in was not ready within 1 s:.*busy"):
        service.start(ready_within_s=1)
    service.stop()
    assert not service.running


def test_gateway_and_exporter_run_the_project_commands(tmp_path):
    gateway = GatewayProcess(8123, tmp_path / "g.log", env={"X": "1"})
    assert gateway.url == "http://127.0.0.1:8123" and gateway.ready_url == "http://127.0.0.1:8123/readyz"
    assert gateway.args == ("-m", "referrals.cli", "api", "--host", "127.0.0.1", "--port", "8123")
    assert gateway.env == {"X": "1"}
    exporter = ExporterProcess("0.0.0.0", 9308, tmp_path / "e.log")
    assert exporter.args == ("-m", "referrals.cli", "exporter") and exporter.ready_url.endswith(":9308/metrics")
