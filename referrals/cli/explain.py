"""``referrals explain``: a customer's referral story in the terminal, as the read API tells it."""

from __future__ import annotations

import redis
import typer

from consumers.story_view import story_page
from referrals.cli.common import fail, settings
from referrals.redis_client import redis_client

app = typer.Typer(add_completion=False)


@app.command("explain")
def explain(
    customer_id: str = typer.Argument(..., help="the customer"),
    language: str = typer.Option("en", "--language", "-l", help="en or de"),
    limit: int = typer.Option(0, help="show only the first N steps (0: the whole story kept)"),
) -> None:
    """Everything the pipeline knows about the customer's referrals, as referrer and as referee, in event-time
    order, each decision in a sentence with its values: the same story as GET /v1/customers/{id}/story."""
    if language not in ("en", "de"):
        fail("--language must be en or de", code=2)
    own = settings()
    client = redis_client(own)
    cursor, shown = None, 0
    try:
        while True:
            page = story_page(client, own, customer_id, limit=200, cursor=cursor, language=language)
            if page is None:
                fail("this customer was erased", code=3)
            if shown == 0 and page["earlier"]:
                typer.echo(f"(before {page['earlier']['until'][:10]}: {sum(page['earlier']['steps'].values())} "
                           "earlier steps, folded)")
            for step in page["steps"]:
                who = f" [{step['role']}]" if "role" in step else ""
                typer.echo(f"{step['at'][:10]}{who} {step['text']}")
                shown += 1
                if limit and shown >= limit:
                    return
            cursor = page["next_cursor"]
            if cursor is None:
                break
    except redis.RedisError as exc:
        fail(f"Redis is not reachable ({exc}); is the stack up?")
    if shown == 0:
        typer.echo("nothing is known about this customer's referrals")
