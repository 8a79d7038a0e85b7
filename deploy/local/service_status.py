"""What `referrals stack status` reports for one service."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    address: str
    version: str | None
    answers: bool
    data: str
    log: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def line(self) -> str:
        state = "running" if self.running and self.answers else ("not answering" if self.running else "stopped")
        pid = f"pid {self.pid}" if self.pid else "-"
        return f"{self.name:<7} {state:<13} {self.address:<16} {pid:<11} {self.version or '-':<8} log {self.log}"
