"""Debian packages the local stack and the tests need, installed when missing.

The stack needs Java 17+ and Maven (for the Kafka broker) and ``redis-server``; the
tests also need ``docker-compose`` (to validate the Compose file), ``chromium`` (headless,
for the referral-link browser test) and ``prometheus`` with ``promtool`` (the metrics,
dashboard and alert-rule tests), ``wrk`` (the gateway benchmark, ``make bench`` and its smoke
run in the tests) and ``nodejs`` (the JavaScript snippet of docs/webhooks.md, run by its test). On a machine that
already has them nothing is installed. Installing needs root or password-less sudo.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from deploy.local.processes import StackError

#: binary -> Debian package that provides it
STACK_PACKAGES: dict[str, str] = {
    "java": "openjdk-17-jre-headless",
    "mvn": "maven",
    "redis-server": "redis-server",
    "openssl": "openssl",  # the CA and broker certificate of a stack with security_protocol SSL
}
TEST_PACKAGES: dict[str, str] = {
    "docker-compose": "docker-compose",
    "chromium": "chromium",
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "wrk": "wrk",
    "node": "nodejs",
}


def missing(binaries: dict[str, str]) -> list[str]:
    return sorted({pkg for binary, pkg in binaries.items() if shutil.which(binary) is None})


def install(packages: list[str], echo=print) -> None:
    if not packages:
        return
    apt = shutil.which("apt-get")
    if apt is None:
        raise StackError(
            f"missing {', '.join(packages)} and this machine has no apt-get: install them yourself"
        )
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise StackError(f"missing {', '.join(packages)}: run as root or install them yourself")
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    echo(f"installing Debian packages: {' '.join(packages)}")
    for argv in (
        [*prefix, apt, "update", "-qq"],
        [*prefix, apt, "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise StackError(
                f"`{' '.join(argv)}` failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
            )


def ensure(binaries: dict[str, str], echo=print) -> None:
    install(missing(binaries), echo=echo)


def java_major_version() -> int:
    done = subprocess.run(["java", "-version"], capture_output=True, text=True)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if match is None:
        raise StackError(f"cannot tell the Java version from `java -version`:\n{done.stderr}")
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major
