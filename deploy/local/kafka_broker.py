"""Apache Kafka in KRaft mode from Maven-resolved jars: one node, or a cluster of ``kafka.brokers`` nodes (each a
broker and a controller, a static quorum of all of them), over PLAINTEXT, SASL_PLAINTEXT (SCRAM) or SSL.

Layout: ``<state>/kafka/`` holds ``libs/`` (the jars of ``deploy/local/kafka/pom.xml``), ``cluster.id`` (a
cluster's, shared by its nodes), ``tls/`` (with SSL: the CA the stack makes, ``ca.pem``, what clients trust, and
the brokers' key and certificate) and node 1's files: ``data/`` (log.dirs and KRaft metadata),
``logs/server.log`` (its log4j log), ``logs/kafka.out`` (JVM stdout/stderr), ``server.properties``,
``log4j2.properties``, ``kafka.pid``. Node n > 1 has the same files under ``<state>/kafka-<n>/``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import logging
import os
import re
import shutil
import signal
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


def _host_name(host: str) -> str:
    """The subjectAltName entry of ``host``: an IP address or a DNS name."""
    try:
        ipaddress.ip_address(host)
        return f"IP:{host}"
    except ValueError:
        return f"DNS:{host}"


class LocalCA:
    """The stack's own certificate authority (openssl): ``ca.pem`` for clients to trust, and one key and
    certificate for the brokers (subjectAltName: the stack's host, and localhost), signed by it. Made once."""

    def __init__(self, directory: Path, host: str):
        self.dir, self.host = directory, host
        self.ca = directory / "ca.pem"
        self.ca_key = directory / "ca.key"
        self.broker = directory / "broker.pem"  # the PKCS#8 key, then the certificate chain (Kafka's PEM keystore)

    def ready(self) -> bool:
        return self.ca.exists() and self.broker.exists()

    def make(self) -> None:
        if self.ready():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        names = ",".join(dict.fromkeys([_host_name(self.host), "DNS:localhost", "IP:127.0.0.1"]))
        key, csr, cert, ext = (self.dir / n for n in ("broker.key", "broker.csr", "broker.crt", "broker.ext"))
        ext.write_text(f"subjectAltName={names}\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n")
        steps = [
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.ca_key), "-out",
             str(self.ca), "-days", "3650", "-subj", "/CN=referral-pipeline local stack CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", f"/CN={self.host}"],
            ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", "825", "-extfile", str(ext)],
        ]
        for argv in steps:
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode != 0:
                raise StackError(f"making the stack's TLS certificates failed ({' '.join(argv[:3])}):\n"
                                 f"{(done.stdout + done.stderr)[-2000:]}")
        self.broker.write_text(key.read_text() + cert.read_text())
        for path in (self.ca_key, self.broker, key):
            path.chmod(0o600)
        for path in (csr, ext, cert, key):
            path.unlink()


class KafkaBroker:
    """One node of the local stack (``node`` 1 to ``kafka.brokers``)."""

    def __init__(self, settings: Settings, node: int = 1):
        self.settings = settings
        self.cfg = settings.kafka
        self.node = node
        self.name = "kafka" if node == 1 else f"kafka-{node}"
        self.port, self.controller_port = self.cfg.node_ports(node)
        self.base = settings.state_dir / "kafka"
        self.home = settings.state_dir / self.name
        self.libs = self.base / "libs"
        self.cluster_id_file = self.base / "cluster.id"
        self.tls = LocalCA(self.base / "tls", self.cfg.host)
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
        host, port, cport = self.cfg.host, self.port, self.controller_port
        replicas, min_isr = str(self.cfg.replicas), str(self.cfg.min_isr)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node),
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data),
            "num.partitions": str(self.cfg.partitions),
            "auto.create.topics.enable": "false",
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
        }
        if self.cfg.brokers == 1:
            props["controller.quorum.bootstrap.servers"] = f"{host}:{cport}"
        else:  # a static quorum: every node is a voter
            props["controller.quorum.voters"] = ",".join(
                f"{n}@{host}:{self.cfg.node_ports(n)[1]}" for n in range(1, self.cfg.brokers + 1))
        if self.cfg.security_protocol == "SSL":  # clients and the brokers among themselves over TLS
            props.update({
                "listeners": f"SSL://{host}:{port},CONTROLLER://{host}:{cport}",
                "advertised.listeners": f"SSL://{host}:{port},CONTROLLER://{host}:{cport}",
                "inter.broker.listener.name": "SSL",
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SSL:SSL",
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self.tls.broker),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(self.tls.ca),
                "ssl.client.auth": "requested" if self.cfg.ssl_certfile else "none",
            })
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
        """The local broker speaks PLAINTEXT, SASL_PLAINTEXT with a SCRAM user, or SSL with the stack's own CA."""
        cfg = self.cfg
        if cfg.security_protocol not in ("PLAINTEXT", "SASL_PLAINTEXT", "SSL") or (
                cfg.security_protocol == "SASL_PLAINTEXT" and not cfg.sasl_mechanism.startswith("SCRAM-")):
            raise StackError(
                f"the local stack runs Kafka with PLAINTEXT, SASL_PLAINTEXT (SCRAM) or SSL, not "
                f"{cfg.security_protocol} {cfg.sasl_mechanism if cfg.security_protocol.startswith('SASL') else ''}; "
                "for SASL_SSL, point REFERRALS_KAFKA__BOOTSTRAP_SERVERS at a cluster that has it and do not run "
                "`stack up` for Kafka")

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
        if self.cfg.brokers == 1:
            quorum, cluster_id = ["--standalone"], new_cluster_id()
        else:  # the voters are in server.properties; every node formats with the cluster's one id
            quorum, cluster_id = [], self._cluster_id()
        done = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", *quorum,
                       "-t", cluster_id, "-c", str(self.properties), *scram),
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{(done.stdout + done.stderr)[-4000:]}")

    def _cluster_id(self) -> str:
        """The cluster's id, made by the first node that formats its storage (a cluster's nodes share it)."""
        self.base.mkdir(parents=True, exist_ok=True)
        if not self.cluster_id_file.exists():
            self.cluster_id_file.write_text(new_cluster_id())
        return self.cluster_id_file.read_text().strip()

    # -- running -------------------------------------------------------------------------------

    @property
    def _which(self) -> str:
        """`` kafka-2`` in messages about a node of a cluster; nothing for the single broker."""
        return f" {self.name}" if self.cfg.brokers > 1 else ""

    def client_settings(self):
        """How a client reaches this node alone (with SSL: trusting the stack's CA unless another is set)."""
        own = changed(self.cfg, bootstrap_servers=f"{self.cfg.host}:{self.port}")
        if self.cfg.security_protocol == "SSL" and self.cfg.ssl_cafile is None:
            own = changed(own, ssl_cafile=self.tls.ca)
        return own

    def answers(self, timeout_s: float = 3.0) -> bool:
        """True when the node answers a metadata request."""
        if not port_open(self.cfg.host, self.port):
            return False
        from referrals.kafka_admin import broker_answers

        quiet = logging.getLogger("kafka")  # refused connections while the broker starts are expected
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            return broker_answers(self.client_settings(), client_id="referrals-stack", timeout_s=timeout_s)
        finally:
            quiet.setLevel(level)

    def start(self, echo=print) -> bool:
        """Start the node unless ours already runs (without waiting for it: a cluster's nodes answer only once a
        majority of them runs). True if it was started now."""
        if running(self.pidfile) is not None:
            return False
        plus = "" if self.node == 1 else f" (the configured port + {2 * (self.node - 1)})"
        ensure_port_free(self.cfg.host, self.port, f"Kafka{self._which}{plus}", "REFERRALS_KAFKA__PORT")
        ensure_port_free(self.cfg.host, self.controller_port, f"Kafka{self._which} controller{plus}",
                         "REFERRALS_KAFKA__CONTROLLER_PORT")
        self.check_security()
        self.resolve_jars(echo=echo)
        if self.cfg.security_protocol == "SSL":
            self.tls.make()
        self._write_config()
        self._format_storage()
        echo(f"starting Apache Kafka {pinned_kafka_version()} (KRaft) node {self.node} on "
             f"{self.cfg.host}:{self.port} ...")
        spawn(self._java("kafka.Kafka", str(self.properties)), pidfile=self.pidfile, output=self.stdout_log,
              cwd=self.home)
        return True

    def wait_ready(self, started: bool) -> None:
        """Wait until the node answers; stop it (if ``started`` now) and say why when it does not."""
        owned = running(self.pidfile)
        alive = owned.alive if owned is not None else (lambda: False)
        if wait_until(self.answers, timeout_s=self.cfg.start_timeout_s, interval_s=0.5, alive=alive):
            if started:
                self.version_file.write_text(self._logged_version() or "")
            return
        if not started and alive():
            raise StackError(self._failure(f"our broker{self._which} (pid {owned.pid}) runs but does not answer"))
        reason = "the broker exited" if not alive() else f"no answer within {self.cfg.start_timeout_s:.0f} s"
        message = self._failure(f"Kafka{self._which} did not start: {reason}")
        if started:
            stop(self.pidfile, timeout_s=10)
        raise StackError(message)

    def up(self, echo=print) -> bool:
        """Start the node unless ours already runs, and wait until it answers. True if it was started now."""
        started = self.start(echo=echo)
        self.wait_ready(started)
        return started

    def kill(self) -> bool:
        """SIGKILL the node (a crash, for fault tests). True if it was running."""
        owned = running(self.pidfile)
        if owned is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(owned.pid, signal.SIGKILL)
        wait_until(lambda: not owned.alive(), timeout_s=30)
        self.pidfile.unlink(missing_ok=True)
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
            address=f"{self.cfg.host}:{self.port}",
            version=(self.running_version() if owned else None) or pinned_kafka_version(),
            answers=self.answers() if owned else False,
            data=str(self.data),
            log=str(self.server_log),
        )
