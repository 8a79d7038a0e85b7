"""`referrals stack up|down|status` on a throw-away stack of its own (own state folder, own ports)."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from deploy.local.processes import StackError
from deploy.local.stack import LocalStack


def our_processes(state_dir) -> list[psutil.Process]:
    """Every process whose command line or working directory is inside the stack's state folder."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["cwd"] or "")
        except (psutil.Error, TypeError):
            continue
        if str(state_dir) in text:
            found.append(proc)
    return found


def test_up_is_idempotent_state_survives_restart_and_down_leaves_nothing(isolated_settings):
    stack = LocalStack(isolated_settings)
    try:
        assert stack.up(echo=lambda m: None) == {"redis": True, "kafka": True}
        first = {s.name: s for s in stack.status()}
        assert all(s.running and s.answers for s in first.values())
        assert first["kafka"].version.startswith("4.")
        assert first["kafka"].address == f"127.0.0.1:{isolated_settings.kafka.port}"

        # A second `up` changes nothing: same processes, nothing started.
        assert stack.up(echo=lambda m: None) == {"redis": False, "kafka": False}
        again = {s.name: s for s in stack.status()}
        assert {n: s.pid for n, s in again.items()} == {n: s.pid for n, s in first.items()}

        # Redis state survives a restart (AOF, fsync every second; SIGTERM flushes it).
        with stack.redis.client() as client:
            client.set("survives", "yes")
        assert stack.redis.down()
        assert stack.redis.up(echo=lambda m: None)
        with stack.redis.client() as client:
            assert client.get("survives") == b"yes"
    finally:
        stopped = stack.down()
    assert stopped == {"kafka": True, "redis": True}
    assert our_processes(isolated_settings.state_dir) == []
    assert not any(s.running for s in stack.status())
    assert stack.down() == {"kafka": False, "redis": False}


def test_down_never_stops_a_process_it_did_not_start(isolated_settings):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stack = LocalStack(isolated_settings)
        stack.redis.home.mkdir(parents=True)
        # A pid file naming a process that is not ours (start time differs), e.g. after pid reuse.
        stack.redis.pidfile.write_text(f'{{"pid": {stranger.pid}, "started": 1.0}}')
        assert stack.down() == {"kafka": False, "redis": False}
        assert stranger.poll() is None
        assert not stack.redis.pidfile.exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_a_failed_broker_start_prints_the_broker_log_and_leaves_nothing(isolated_settings):
    isolated_settings.kafka.extra_properties = {"authorizer.class.name": "no.such.Authorizer"}
    stack = LocalStack(isolated_settings)
    try:
        with pytest.raises(StackError) as info:
            stack.up(echo=lambda m: None)
    finally:
        stack.down()
    message = str(info.value)
    assert "Kafka did not start: the broker exited" in message
    assert "last lines of" in message and "no.such.Authorizer" in message
    assert our_processes(isolated_settings.state_dir) == []


def test_a_port_taken_by_someone_else_is_named(isolated_settings):
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", isolated_settings.redis.port))
        squatter.listen()
        with pytest.raises(StackError, match=f"port {isolated_settings.redis.port} on 127.0.0.1 is taken"):
            LocalStack(isolated_settings).up(echo=lambda m: None)
    assert our_processes(isolated_settings.state_dir) == []
