"""Debian's redis-server, run by the stack on its own port with AOF persistence.

Layout under ``<state>/redis/``: ``redis.conf``, ``appendonlydir/`` (the AOF, fsync every
second: pipeline state survives a restart), ``redis.log``, ``redis.pid``.
"""

from __future__ import annotations

import redis

from deploy.local.processes import StackError, ensure_port_free, running, spawn, stop, tail, wait_until
from deploy.local.service_status import ServiceStatus
from referrals.settings import Settings


class RedisServer:
    name = "redis"

    def __init__(self, settings: Settings):
        self.cfg = settings.redis
        self.home = settings.state_dir / "redis"
        self.conf = self.home / "redis.conf"
        self.log = self.home / "redis.log"
        self.pidfile = self.home / "redis.pid"

    def config_text(self) -> str:
        lines = [
            f"bind {self.cfg.host}",
            f"port {self.cfg.port}",
            "protected-mode yes",
            "daemonize no",
            f'dir "{self.home}"',
            f'logfile "{self.log}"',
            "appendonly yes",
            "appendfsync everysec",
            'appendfilename "appendonly.aof"',
            'appenddirname "appendonlydir"',
            'save ""',
            # the counters' hashes hold JSON values of a few hundred bytes (referral summaries, the writer's
            # _funnel): kept as compact listpacks up to 1 KiB a value instead of hash tables (bytes per referrer)
            "hash-max-listpack-value 1024",
        ]
        password = self.cfg.password.get_secret_value() if self.cfg.password else None
        if self.cfg.username and password:  # an ACL user of its own; nobody else gets in
            lines += ["user default off", f"user {self.cfg.username} on >{password} ~* &* +@all"]
        elif password:
            lines.append(f"requirepass {password}")
        return "\n".join(lines) + "\n"

    def client(self) -> redis.Redis:
        return redis.Redis(
            host=self.cfg.host,
            port=self.cfg.port,
            username=self.cfg.username,
            password=self.cfg.password.get_secret_value() if self.cfg.password else None,
            socket_timeout=2,
            socket_connect_timeout=2,
        )

    def answers(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def up(self, echo=print) -> bool:
        owned = running(self.pidfile)
        if owned is not None:
            if not wait_until(self.answers, timeout_s=self.cfg.start_timeout_s, alive=owned.alive):
                raise StackError(self._failure(f"our redis-server (pid {owned.pid}) runs but does not answer"))
            return False
        ensure_port_free(self.cfg.host, self.cfg.port, "Redis", "REFERRALS_REDIS__PORT")
        self.home.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.config_text())
        self.conf.chmod(0o600)
        echo(f"starting redis-server on {self.cfg.host}:{self.cfg.port} (AOF, fsync every second) ...")
        spawn(["redis-server", str(self.conf)], pidfile=self.pidfile, output=self.home / "redis.out", cwd=self.home)
        owned = running(self.pidfile)
        alive = owned.alive if owned is not None else (lambda: False)
        if not wait_until(self.answers, timeout_s=self.cfg.start_timeout_s, alive=alive):
            message = self._failure("redis-server did not start")
            stop(self.pidfile, timeout_s=5)
            raise StackError(message)
        return True

    def _failure(self, headline: str) -> str:
        return (
            f"{headline}.\n--- last lines of {self.log} ---\n{tail(self.log)}\n"
            f"--- last lines of {self.home / 'redis.out'} ---\n{tail(self.home / 'redis.out', 10)}"
        )

    def down(self) -> bool:
        # SIGTERM makes redis fsync the AOF and exit cleanly.
        return stop(self.pidfile, timeout_s=30)

    def version(self) -> str | None:
        try:
            with self.client() as client:
                return str(client.info("server")["redis_version"])
        except redis.RedisError:
            return None

    def status(self) -> ServiceStatus:
        owned = running(self.pidfile)
        answers = self.answers() if owned else False
        return ServiceStatus(
            name=self.name,
            running=owned is not None,
            pid=owned.pid if owned else None,
            address=f"{self.cfg.host}:{self.cfg.port}",
            version=self.version() if answers else None,
            answers=answers,
            data=str(self.home / "appendonlydir"),
            log=str(self.log),
        )
