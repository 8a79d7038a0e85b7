"""``referrals codes``: referral codes, issued and resolved (kept in Redis)."""

from __future__ import annotations

import json

import redis
import typer

from referrals.cli.common import fail, settings
from referrals.code_registry import CodeRegistry

app = typer.Typer(help="Referral codes: issue and resolve (kept in Redis).",
                  no_args_is_help=True, add_completion=False)


@app.command("issue")
def issue(
    customer_id: str = typer.Argument(..., help="the referrer"),
    campaign: str = typer.Option("default", help="campaign id"),
) -> None:
    """Print the customer's referral code and share URL for the campaign, issuing one if needed."""
    own = settings()
    try:
        issued = CodeRegistry.from_settings(own).issue(customer_id, campaign)
    except redis.RedisError as exc:
        fail(f"Redis is not reachable ({exc}); is the stack up?")
    typer.echo(json.dumps({"referral_code": issued.code, "campaign_id": issued.campaign_id,
                           "share_url": f"{own.gateway.public_url.rstrip('/')}/r/{issued.code}",
                           "newly_issued": issued.new}))


@app.command("resolve")
def resolve(code: str = typer.Argument(..., help="a referral code as typed")) -> None:
    """Print who owns a code (exit 1 for an unknown or malformed code)."""
    owner = CodeRegistry.from_settings(settings()).resolve(code)
    if owner is None:
        fail("unknown or malformed referral code")
    typer.echo(json.dumps({"referrer_id": owner.referrer_id, "campaign_id": owner.campaign_id}))
