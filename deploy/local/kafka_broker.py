"""A single-node Apache Kafka broker in KRaft mode, from Maven-resolved jars.

Layout under ``<state>/kafka/``: ``libs/`` (the jars of ``deploy/local/kafka/pom.xml``),
``data/`` (log.dirs and KRaft metadata), ``logs/server.log`` (the broker's log4j log),
``logs/kafka.out`` (JVM stdout/stderr), ``server.properties``, ``log4j2.properties``,
``kafka.pid``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

from deploy.local.processes import (
    StackError,
    ensure_port_free,
    port_open,
    running,
    spawn,
    stop,
    tail,
    wait_until,
)
from deploy.local.service_status import ServiceStatus
from deploy.local.system_packages import java_major_version
from referrals.settings import Settings, changed

POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
_VERSION_LINE = re.compile(r"Kafka version: (\S+)")


def pinned_kafka_version(pom: Path = POM) -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not node.text:
        raise StackError(f"{pom} has no kafka.version property")
    return node.text.strip()


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as `StorageTool random-uuid`)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


class KafkaBroker:
    name = "kafka"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.cfg = settings.kafka
        self.home = settings.state_dir / "kafka"
        self.libs = self.home / "libs"
        self.data = self.home / "data"
        self.logs = self.home / "logs"
        self.server_log = self.logs / "server.log"
        self.stdout_log = self.logs / "kafka.out"
        self.properties = self.home / "server.properties"
        self.log4j = self.home / "log4j2.properties"
        self.pidfile = self.home / "kafka.pid"
        self.version_file = self.home / "running.version"

    # -- preparing -----------------------------------------------------------------------------

    def jars_ready(self) -> bool:
        marker = self.libs / ".pom-sha256"
        return marker.exists() and marker.read_text() == self._pom_digest()

    def _pom_digest(self) -> str:
        return hashlib.sha256(POM.read_bytes()).hexdigest()

    def resolve_jars(self, echo=print) -> None:
        """Resolve the pinned broker jars with Maven (once per version of the pom)."""
        if self.jars_ready():
            return
        if java_major_version() < 17:
            raise StackError("Kafka 4 needs Java 17 or newer; `java -version` reports an older one")
        echo(f"resolving Apache Kafka {pinned_kafka_version()} jars with Maven ...")
        if self.libs.exists():
            shutil.rmtree(self.libs)
        self.libs.mkdir(parents=True)
        argv = [
            "mvn", "-B", "-q", "-f", str(POM),
            "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={self.libs}",
        ]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise StackError(f"Maven could not resolve the Kafka jars:\n{(done.stdout + done.stderr)[-4000:]}")
        (self.libs / ".pom-sha256").write_text(self._pom_digest())

    def _java(self, *args: str) -> list[str]:
        return [
            "java", f"-Xms{self.cfg.heap}", f"-Xmx{self.cfg.heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j}", "-cp", f"{self.libs}/*", *args,
        ]

    def server_properties(self) -> dict[str, str]:
        host, port, cport = self.cfg.host, self.cfg.port, self.cfg.controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{host}:{cport}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data),
            "num.partitions": str(self.cfg.partitions),
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
        }
        if self.cfg.security_protocol == "SASL_PLAINTEXT":  # SCRAM: the user is created when storage is formatted
            mechanism = self.cfg.sasl_mechanism
            props.update({
                "listeners": f"SASL_PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
                "advertised.listeners": f"SASL_PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
                "inter.broker.listener.name": "SASL_PLAINTEXT",
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
                "sasl.enabled.mechanisms": mechanism,
                "sasl.mechanism.inter.broker.protocol": mechanism,
                f"listener.name.sasl_plaintext.{mechanism.lower()}.sasl.jaas.config":
                    "org.apache.kafka.common.security.scram.ScramLoginModule required "
                    f'username="{self.cfg.sasl_username}" password="{self.cfg.sasl_password.get_secret_value()}";',
            })
        props.update(self.cfg.extra_properties)
        return props

    def check_security(self) -> None:
        """The local broker speaks PLAINTEXT, or SASL_PLAINTEXT with a SCRAM user; TLS is for real clusters."""
        cfg = self.cfg
        if cfg.security_protocol not in ("PLAINTEXT", "SASL_PLAINTEXT") or (
                cfg.security_protocol == "SASL_PLAINTEXT" and not cfg.sasl_mechanism.startswith("SCRAM-")):
            raise StackError(
                f"the local stack runs Kafka with PLAINTEXT or SASL_PLAINTEXT (SCRAM), not {cfg.security_protocol} "
                f"{cfg.sasl_mechanism if cfg.security_protocol.startswith('SASL') else ''}; for TLS, point "
                "REFERRALS_KAFKA__BOOTSTRAP_SERVERS at a cluster that has it and do not run `stack up` for Kafka")

    def _write_config(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        self.properties.write_text("".join(f"{k}={v}\n" for k, v in self.server_properties().items()))
        self.properties.chmod(0o600)  # it may hold the SCRAM user's password
        self.log4j.write_text(
            "status = warn\n"
            "appender.file.type = RollingFile\n"
            "appender.file.name = file\n"
            f"appender.file.fileName = {self.server_log}\n"
            f"appender.file.filePattern = {self.server_log}.%i\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "appender.file.policies.type = Policies\n"
            "appender.file.policies.size.type = SizeBasedTriggeringPolicy\n"
            "appender.file.policies.size.size = 20MB\n"
            "appender.file.strategy.type = DefaultRolloverStrategy\n"
            "appender.file.strategy.max = 3\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = file\n"
            "logger.kafka.name = kafka\n"
            "logger.kafka.level = INFO\n"
            "logger.state.name = state.change.logger\n"
            "logger.state.level = WARN\n"
        )

    def _format_storage(self) -> None:
        if (self.data / "meta.properties").exists():
            return
        scram = []
        if self.cfg.security_protocol == "SASL_PLAINTEXT":
            scram = ["--add-scram", f"{self.cfg.sasl_mechanism}=[name={self.cfg.sasl_username},"
                                    f"password={self.cfg.sasl_password.get_secret_value()}]"]
        done = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "--standalone",
                       "-t", new_cluster_id(), "-c", str(self.properties), *scram),
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{(done.stdout + done.stderr)[-4000:]}")

    # -- running -------------------------------------------------------------------------------

    def answers(self, timeout_s: float = 3.0) -> bool:
        """True when the broker answers a metadata request."""
        if not port_open(self.cfg.host, self.cfg.port):
            return False
        from referrals.kafka_admin import broker_answers

        quiet = logging.getLogger("kafka")  # refused connections while the broker starts are expected
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            return broker_answers(changed(self.cfg, bootstrap_servers=None), client_id="referrals-stack",
                                  timeout_s=timeout_s)
        finally:
            quiet.setLevel(level)

    def up(self, echo=print) -> bool:
        """Start the broker unless ours already runs. True if it was started now."""
        owned = running(self.pidfile)
        if owned is not None:
            if self.answers():
                return False
            if not wait_until(self.answers, timeout_s=self.cfg.start_timeout_s, alive=owned.alive):
                raise StackError(self._failure("our broker (pid %d) runs but does not answer" % owned.pid))
            return False
        ensure_port_free(self.cfg.host, self.cfg.port, "Kafka", "REFERRALS_KAFKA__PORT")
        ensure_port_free(self.cfg.host, self.cfg.controller_port, "Kafka controller", "REFERRALS_KAFKA__CONTROLLER_PORT")
        self.check_security()
        self.resolve_jars(echo=echo)
        self._write_config()
        self._format_storage()
        echo(f"starting Apache Kafka {pinned_kafka_version()} (KRaft) on {self.cfg.host}:{self.cfg.port} ...")
        spawn(self._java("kafka.Kafka", str(self.properties)), pidfile=self.pidfile, output=self.stdout_log, cwd=self.home)
        owned = running(self.pidfile)
        alive = owned.alive if owned is not None else (lambda: False)
        if not wait_until(self.answers, timeout_s=self.cfg.start_timeout_s, interval_s=0.5, alive=alive):
            reason = "the broker exited" if not alive() else f"no answer within {self.cfg.start_timeout_s:.0f} s"
            message = self._failure(f"Kafka did not start: {reason}")
            stop(self.pidfile, timeout_s=10)
            raise StackError(message)
        self.version_file.write_text(self._logged_version() or "")
        return True

    def _failure(self, headline: str) -> str:
        return (
            f"{headline}.\n--- last lines of {self.server_log} ---\n{tail(self.server_log)}\n"
            f"--- last lines of {self.stdout_log} ---\n{tail(self.stdout_log, 15)}"
        )

    def down(self) -> bool:
        return stop(self.pidfile, timeout_s=60)

    def _logged_version(self) -> str | None:
        """The version the broker logged at start-up ("Kafka version: 4.4.0")."""
        try:
            text = self.server_log.read_text(errors="replace")
        except FileNotFoundError:
            return None
        found = _VERSION_LINE.findall(text)
        return found[-1] if found else None

    def running_version(self) -> str | None:
        """The version the running broker logged when `up` started it (kept, as the log rolls over)."""
        try:
            return self.version_file.read_text().strip() or None
        except FileNotFoundError:
            return self._logged_version()

    def status(self) -> ServiceStatus:
        owned = running(self.pidfile)
        return ServiceStatus(
            name=self.name,
            running=owned is not None,
            pid=owned.pid if owned else None,
            address=f"{self.cfg.host}:{self.cfg.port}",
            version=(self.running_version() if owned else None) or pinned_kafka_version(),
            answers=self.answers() if owned else False,
            data=str(self.data),
            log=str(self.server_log),
        )
