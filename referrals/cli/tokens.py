"""``referrals tokens``: customer tokens for publishable keys, as a shop's backend issues them (for testing)."""

from __future__ import annotations

import json
import time

import typer

from referrals import customer_tokens
from referrals.cli.common import fail, settings

app = typer.Typer(help="Customer tokens for publishable keys (docs/security.md).", no_args_is_help=True,
                  add_completion=False)


@app.callback()
def tokens() -> None:
    """Customer tokens for publishable keys (docs/security.md)."""


@app.command("issue")
def issue(
    customer_id: str = typer.Argument(..., help="the customer the token vouches for"),
    key: str = typer.Option(..., "--key", help="the publishable key's name"),
    ttl: int = typer.Option(3600, "--ttl", min=1, help="seconds until it expires"),
) -> None:
    """Print a customer token, signed with the key's token_secret from the configuration, as the shop's backend
    would issue it. A shop issues its own (docs/security.md has the format in Python and JavaScript)."""
    own = settings()
    found = next((k for k in own.gateway.api_keys if k.name == key), None)
    if found is None or not found.publishable or found.token_secret is None:
        fail(f"no publishable key named {key!r} in the configuration (REFERRALS_GATEWAY__API_KEYS)")
    if ttl > own.gateway.token_max_ttl_s:
        fail(f"--ttl {ttl} is over the gateway's token_max_ttl_s ({own.gateway.token_max_ttl_s}): it would refuse it")
    expires = int(time.time()) + ttl
    token = customer_tokens.issue(found.token_secret.get_secret_value(), key, customer_id, expires)
    typer.echo(json.dumps({"token": token, "expires": expires, "header": "X-Customer-Token"}))
