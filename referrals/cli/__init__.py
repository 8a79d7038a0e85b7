"""`referrals`: one command for everything the project offers, one module per command or group.

A command's module is imported only when that command runs (``LazyGroup``: Typer's custom group class with
click's documented pattern for lazily loaded subcommands), so ``referrals stack status`` does not pay for
Faust or the gateway. Every sub-command documents itself under ``--help`` (Typer).
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

# command -> (module, its Typer app); a group of commands or a single one
COMMANDS: dict[str, tuple[str, str]] = {
    "stack": ("referrals.cli.stack", "app"),
    "topics": ("referrals.cli.topics", "app"),
    "schemas": ("referrals.cli.schemas", "app"),
    "validate": ("referrals.cli.schemas", "validate_app"),
    "codes": ("referrals.cli.codes", "app"),
    "tokens": ("referrals.cli.tokens", "app"),
    "api": ("referrals.cli.api", "app"),
    "simulate": ("referrals.cli.simulate", "app"),
    "worker": ("referrals.cli.worker", "app"),
    "exporter": ("referrals.cli.exporter", "app"),
    "status": ("referrals.cli.ops", "status_app"),
    "rebuild": ("referrals.cli.ops", "rebuild_app"),
    "deadletter": ("referrals.cli.deadletter", "app"),
    "dispatcher": ("referrals.cli.webhooks", "dispatcher_app"),
    "webhooks": ("referrals.cli.webhooks", "app"),
    "erase": ("referrals.cli.ops", "erase_app"),
    "statement": ("referrals.cli.statement", "app"),
    "explain": ("referrals.cli.explain", "app"),
    "demo": ("referrals.cli.demo", "app"),
}


class LazyGroup(TyperGroup):
    """The root group: a command's module is imported when the command runs (or ``--help`` lists them all)."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        if cmd_name not in COMMANDS:
            return None
        module, attribute = COMMANDS[cmd_name]
        command = typer.main.get_command(getattr(importlib.import_module(module), attribute))
        command.name = cmd_name  # a group's name, as ``add_typer(name=...)`` would give it
        return command


app = typer.Typer(
    cls=LazyGroup, no_args_is_help=True, add_completion=False,
    pretty_exceptions_show_locals=False,  # locals can hold keys and secrets
)


@app.callback()
def main() -> None:
    """referral-pipeline: event-driven referral tracking on Kafka, Faust and Redis."""
