"""What a publishable key (inside an app or a web page) and a browser may do at the gateway.

- ``vouched_events`` (pure): the events a publishable key sent, checked against the customer its token
  vouches for (a share's ``referrer_id``, a signup's ``customer_id``; a click names no customer and needs no
  token), each signup marked as a claim (``claim: true``) that the shop's server confirms (docs/rules.md).
- ``BrowserRules``: which key may be used from which web origin: a publishable key from its ``origins``
  (a request without ``Origin`` is an app's, not a browser's), a secret key from none (a secret key used in a
  browser has leaked).
- ``BrowserRoutes``: CORS (Starlette's ``CORSMiddleware``) on the routes browsers may call (``POST
  /v1/events``, ``GET /r/{code}``) for the configured origins, no credentials (the key and the token are
  headers; the visitor cookie belongs to a link followed, not to a fetch); every other route answers browsers
  nothing, so no page reads the read API.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from producers.gateway.intake import IntakeRejected
from referrals.http_auth import Principal
from referrals.http_errors import error
from schemas.events import InboundEventBase, ShareEvent, SignupEvent

BROWSER_PATHS = ("/v1/events",)  # and every path below /r/
TOKEN_HEADER = "X-Customer-Token"


def token_bucket(key_name: str, customer_id: str) -> str:
    """The rate limit bucket of one customer token (of one key): no customer id in a Redis key."""
    return f"{key_name}:token:{hashlib.sha256(customer_id.encode()).hexdigest()[:32]}"


def _customer_of(event: InboundEventBase) -> str | None:
    if isinstance(event, ShareEvent):
        return event.referrer_id
    if isinstance(event, SignupEvent):
        return event.customer_id
    return None


def vouched_events(events: Sequence[InboundEventBase], customer: str | None, *, batch: bool
                   ) -> list[InboundEventBase]:
    """``events`` of a publishable key whose token vouches for ``customer`` (None: no token), signups marked as
    claims; ``IntakeRejected`` 401 when an event names a customer and there is no token, 403 when it names
    another customer than the token's. Nothing of a refused request is produced."""
    missing, foreign = [], []
    for i, event in enumerate(events):
        named = _customer_of(event)
        if named is None:
            continue
        field = "referrer_id" if isinstance(event, ShareEvent) else "customer_id"
        if customer is None:
            missing.append(error(i if batch else 0, TOKEN_HEADER, "token_required",
                                 f"a {event.type} event sent with a publishable key needs a customer token"))  # type: ignore[attr-defined]
        elif named != customer:
            foreign.append(error(i if batch else 0, field, "not_token_customer",
                                 f"{field} is not the customer of the customer token"))
    if missing:
        raise IntakeRejected(401, missing)
    if foreign:
        raise IntakeRejected(403, foreign)
    return [event.model_copy(update={"claim": True}) if isinstance(event, SignupEvent) else event
            for event in events]


class BrowserRules:
    """Which web origins may use which key (``refuse``) and call the gateway at all (``origins``)."""

    def __init__(self, origins: frozenset[str], errors: Callable[[int, list[dict[str, Any]]], Response]):
        self.origins = origins
        self._errors = errors

    def refuse(self, principal: Principal, origin: str | None) -> Response | None:
        """The 403 for a request from a web ``origin`` that may not use ``principal``'s key, else None."""
        if origin is None:
            return None
        if not principal.publishable:
            return self._errors(403, [error(None, "Authorization", "secret_key_in_browser",
                                            "a secret key must not be used from a web page: it is public there; "
                                            "use a publishable key with customer tokens")])
        if origin not in principal.origins:
            return self._errors(403, [error(None, "Origin", "origin_not_allowed",
                                            "this publishable key may not be used from this origin")])
        return None


class BrowserRoutes:
    """Starlette's CORS on the routes browsers may call, for ``origins``; the other routes without it."""

    def __init__(self, app: ASGIApp, origins: frozenset[str]):
        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=sorted(origins), allow_methods=["GET", "POST"],
                                   allow_headers=["Authorization", "Content-Type", TOKEN_HEADER],
                                   allow_credentials=False, max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["path"] in BROWSER_PATHS or scope["path"].startswith("/r/")):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
