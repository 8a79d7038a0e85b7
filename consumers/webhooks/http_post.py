"""One attempt: POST a signed change to an endpoint with httpx, bounded by ``timeout_s``, and say what came back.
Redirects are not followed (a redirect is an answer: dead, see ``consumers.webhooks.retry``); at most the first
``EXCERPT_BYTES`` of an answer's body are read and kept."""

from __future__ import annotations

import time

import httpx

from consumers.webhooks import signing
from consumers.webhooks.retry import Answer, retry_after_s
from schemas.webhooks import Change

EXCERPT_BYTES = 512


def client(timeout_s: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), follow_redirects=False,
                             limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))


async def post(http: httpx.AsyncClient, url: str, keys: list[bytes], change: Change,
               now: float | None = None) -> Answer:
    timestamp = int(now if now is not None else time.time())
    headers = signing.headers(keys, change.webhook_id, timestamp, change.body)
    try:
        async with http.stream("POST", url, content=change.body, headers=headers) as response:
            excerpt = b""
            async for chunk in response.aiter_bytes():
                excerpt += chunk
                if len(excerpt) >= EXCERPT_BYTES:
                    break
            return Answer(response.status_code, retry_after_s(response.headers.get("retry-after")),
                          excerpt=excerpt[:EXCERPT_BYTES].decode("utf-8", "replace") or None)
    except httpx.TimeoutException:
        return Answer(None, error="timeout")
    except httpx.TransportError as exc:
        return Answer(None, error=f"connection: {type(exc).__name__}")
