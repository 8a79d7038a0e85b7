"""What every command shares: the settings, messages on standard error, failing with an exit code."""

from __future__ import annotations

from typing import NoReturn

import typer
from pydantic import ValidationError

from referrals.settings import Settings
from streams.campaigns import CampaignBook, CampaignError, load_campaigns


def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        fail(f"invalid configuration:\n{exc}", code=2)


def campaigns(settings: Settings) -> CampaignBook:
    try:
        return load_campaigns(settings.streams.campaigns_file)
    except CampaignError as exc:
        fail(f"the campaign file is not usable:\n{exc}", code=2)


def echo(message: str) -> None:
    typer.echo(message, err=True)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)
