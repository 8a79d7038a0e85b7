"""The gateway's HTTP shell (FastAPI): authentication, limits, intake, Kafka, referral links.

The decisions live in pure modules (``intake``, ``auth``, ``rate_limit``, ``links``); this
module only moves bytes between HTTP, them, Kafka and Redis. No key, secret, customer id
or referral code is logged above debug; uvicorn's access log (which would log paths with
codes) is off.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import anyio
import redis
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema
from starlette.requests import ClientDisconnect

from producers.gateway import metrics
from producers.gateway.browsers import BrowserRoutes, BrowserRules, token_bucket, vouched_events
from producers.gateway.intake import BODY, IntakeRejected, read_events
from producers.gateway.kafka_sink import KafkaSink, SinkUnavailable
from producers.gateway.links import COOKIE_MAX_AGE_S, valid_visitor_id, with_ref
from producers.gateway.rate_limit import SharedRateLimiter, redis_take
from referrals import customer_tokens
from referrals.code_registry import CodeRegistry
from referrals.http_auth import KeyRing, Principal, SignatureProblem, WebhookVerifier
from referrals.http_body import BodyTooLarge, read_body
from referrals.http_errors import error
from referrals.redis_client import async_redis_client, redis_client
from referrals.settings import Settings
from schemas.events import EVENT_MODELS, ClickEvent
from schemas.fields import Channel
from schemas.records import inbound_record
from schemas.referral_codes import CodeOwner, is_well_formed, normalize

log = logging.getLogger("referrals.gateway")


def _errors(status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=status, headers=headers)


CLIENT_CLOSED = 499  # the client closed the connection before it sent its whole body (never sent to anyone)


class ClickDeduper:
    """First click of a visitor on a code within the window? Redis SET NX EX, shared by all
    gateway processes; falls back to this process' memory while Redis is unreachable."""

    def __init__(self, client: redis.Redis, prefix: str, window_s: int):
        self.client, self.prefix, self.window_s = client, prefix, window_s
        self._memory: dict[str, float] = {}

    def first(self, visitor_id: str, code: str, now: float) -> bool:
        key = f"{self.prefix}click:{visitor_id}:{code}"
        try:
            return bool(self.client.set(key, 1, nx=True, ex=self.window_s))
        except redis.RedisError:
            if len(self._memory) > 100_000:
                self._memory = {k: t for k, t in self._memory.items() if t > now}
            if self._memory.get(key, 0) > now:
                return False
            self._memory[key] = now + self.window_s
            return True


def _event_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """JSON Schema of one event (a oneOf over the types) and the component schemas it refers to."""
    _, top = models_json_schema(
        [(m, "validation") for m in EVENT_MODELS.values()], ref_template="#/components/schemas/{model}"
    )
    one = {"oneOf": [{"$ref": f"#/components/schemas/{m.__name__}"} for m in EVENT_MODELS.values()],
           "discriminator": {"propertyName": "type"}}
    return one, top.get("$defs", {})


class RequestRoute(APIRoute):
    """A route whose endpoint takes the ``Request`` and returns the ``Response`` itself, as ``POST /v1/events``
    does: described in OpenAPI like any other, served without FastAPI's per-request dependency solving and
    response handling, which it does not use (about a tenth of the gateway's time under load, profiled)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        return self.endpoint


def create_app(
    settings: Settings,
    *,
    sink: KafkaSink | None = None,
    redis_connection: redis.Redis | None = None,
    routers: Sequence[APIRouter] = (),
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The gateway's routes (events in, referral links, health), and ``routers`` of other parts served by the
    same application (the read API: ``referrals.cli.api.http_app`` composes them)."""
    cfg = settings.gateway
    keys = KeyRing(cfg.api_keys)
    webhooks = WebhookVerifier(cfg.webhook_secrets, cfg.signature_tolerance_s)
    sink = sink or KafkaSink(settings)
    redis_connection = redis_connection or redis_client(settings)
    limits_redis = async_redis_client(settings, timeout_s=cfg.rate_limit_timeout_s)
    limiter = SharedRateLimiter(redis_take(limits_redis, settings.redis.key_prefix), cfg.rate_limit_per_s,
                                cfg.rate_limit_burst, cfg.processes)
    registry = CodeRegistry(redis_connection, settings.redis.key_prefix)
    deduper = ClickDeduper(redis_connection, settings.redis.key_prefix, cfg.click_dedup_window_s)
    prefix = settings.kafka.topic_prefix
    retry_503 = {"Retry-After": str(cfg.retry_after_s)}
    token_limiter = SharedRateLimiter(redis_take(limits_redis, settings.redis.key_prefix), cfg.token_rate_limit_per_s,
                                      cfg.token_rate_limit_burst, cfg.processes)
    browser_rules = BrowserRules(cfg.browser_origins, _errors)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        starting = asyncio.create_task(sink.start())
        yield
        starting.cancel()
        with suppress(asyncio.CancelledError):
            await starting
        await sink.close()
        await limits_redis.aclose()

    app = FastAPI(
        title="referral-pipeline gateway",
        version="1",
        description="Ingest of share, click, signup, order and refund events; referral links.",
        lifespan=lifespan,
        # metrics go to Prometheus (``metrics``); FastAPI's OpenTelemetry checks for a provider on every
        # request otherwise (2.7 % of the gateway's time under load, profiled)
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # the description is the only thing but /r/{code}, /healthz and /readyz served without a key
        openapi_url="/openapi.json" if cfg.public_docs else None,
        docs_url="/docs" if cfg.public_docs else None,
        redoc_url="/redoc" if cfg.public_docs else None,
    )

    one_event, components = _event_schemas()

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
            schema["components"]["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API key from configuration"},
                "signature": {"type": "apiKey", "in": "header", "name": "X-Signature",
                              "description": "t=<unix>,v1=<hex HMAC-SHA256 of '<t>.<raw body>'>"},
                "customerToken": {"type": "apiKey", "in": "header", "name": "X-Customer-Token",
                                  "description": "with a publishable key: v1.<expiry>.<customer>.<mac>, issued by "
                                  "the shop's backend (docs/security.md)"},
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BrowserRoutes, origins=browser_rules.origins)
    app.add_middleware(metrics.MetricsMiddleware)

    def _error_response(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"errors": {"type": "array", "items": {"type": "object", "properties": {
                "index": {"type": ["integer", "null"]}, "field": {"type": "string"},
                "rule": {"type": "string"}, "message": {"type": "string"}}}}}}}}}

    events = APIRouter(route_class=RequestRoute)

    @events.post(
        "/v1/events",
        status_code=202,
        summary="Send one event or a batch",
        openapi_extra={
            "security": [{"bearer": []}, {"bearer": [], "customerToken": []}, {"signature": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                one_event, {"type": "array", "items": one_event, "minItems": 1, "maxItems": cfg.max_batch}]}}}},
            "responses": {
                "202": {"description": "every event is on Kafka", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"accepted": {"type": "integer"}}}}}},
                "400": _error_response("not UTF-8 JSON"),
                "401": _error_response("no valid key, signature or customer token"),
                "403": _error_response("the key may not send this event type, from this origin or for this "
                                       "customer"),
                "413": _error_response("body over the size limit"),
                "422": _error_response("invalid events; nothing of the request was produced"),
                "429": _error_response("rate limit; see Retry-After"),
                "503": _error_response("Kafka unavailable; nothing acknowledged, retry after Retry-After"),
            },
        },
    )
    async def post_events(request: Request) -> JSONResponse:
        async def rate_limited(principal: Principal) -> JSONResponse | None:
            allowed, wait = await limiter.allow(principal.name)
            if allowed:
                return None
            return _errors(429, [error(None, BODY, "rate_limited", "too many requests for this key")],
                           {"Retry-After": str(wait)})

        authorization = request.headers.get("authorization")
        signature = request.headers.get("x-signature")
        principal: Principal | None = None
        if authorization is not None:
            principal = keys.authenticate(authorization)
            if principal is None:
                return _errors(401, [error(None, "Authorization", "unknown_key", "unknown API key")],
                               {"WWW-Authenticate": "Bearer"})
        elif signature is None:
            return _errors(401, [error(None, "Authorization", "missing_credentials",
                                       "send Authorization: Bearer <key> or a signed X-Signature")],
                           {"WWW-Authenticate": "Bearer"})
        if principal is not None and (limited := await rate_limited(principal)):  # before reading the body
            return limited
        customer: str | None = None  # the customer a publishable key's token vouches for
        origin = request.headers.get("origin")
        if principal is not None and (refused := browser_rules.refuse(principal, origin)):
            return refused
        if principal is not None and principal.publishable:
            token = request.headers.get("x-customer-token")
            if token is not None:
                try:
                    customer = customer_tokens.verify(token, secret=principal.token_secret or "",
                                                      key_name=principal.name, now=clock(),
                                                      max_ttl_s=cfg.token_max_ttl_s)
                except customer_tokens.TokenProblem as problem:
                    return _errors(401, [error(None, "X-Customer-Token", problem.rule, problem.message)])
                allowed, wait = await token_limiter.allow(token_bucket(principal.name, customer))
                if not allowed:
                    return _errors(429, [error(None, BODY, "rate_limited", "too many requests for this customer "
                                               "token")], {"Retry-After": str(wait)})
        try:
            body = await read_body(request, cfg.max_body_bytes)
        except BodyTooLarge:
            return _errors(413, [error(None, BODY, "too_large", f"body over {cfg.max_body_bytes} bytes")])
        except ClientDisconnect:  # nothing produced, and no one to answer: counted as nginx's "client closed"
            log.debug("a client went away before its body was read")
            return Response(status_code=CLIENT_CLOSED)
        if principal is None:
            try:
                principal = webhooks.verify(signature or "", body, clock())
            except SignatureProblem as problem:
                return _errors(401, [error(None, "X-Signature", problem.rule, problem.message)])
            if limited := await rate_limited(principal):  # a signed request's sender is known only now
                return limited
        try:
            intake = read_events(body, allowed_types=principal.types, principal=principal.name,
                                 now=datetime.fromtimestamp(clock(), UTC), max_batch=cfg.max_batch)
        except IntakeRejected as rejected:
            return _errors(rejected.status, rejected.errors)
        events = intake.events
        if principal.publishable:
            try:
                events = vouched_events(events, customer, batch=intake.batch)
            except IntakeRejected as rejected:
                return _errors(rejected.status, rejected.errors)
        records = [inbound_record(e, f"gateway/{principal.name}", prefix) for e in events]
        try:
            accepted = await sink.send(records)
        except SinkUnavailable as exc:
            return _errors(503, [error(None, BODY, "kafka_unavailable", str(exc))], retry_503)
        for kind, count in Counter(event.type for event in events).items():
            metrics.EVENTS.labels(kind).inc(count)
        return JSONResponse({"accepted": accepted}, status_code=202)

    app.include_router(events)

    @app.get("/r/{code:path}", summary="Referral link: redirect to the landing page and record the click",
             response_class=RedirectResponse, status_code=302)
    async def referral_link(code: str, request: Request, c: str | None = None) -> RedirectResponse:
        """Any path below /r/ redirects: an unknown, malformed or empty code goes to the default landing page."""
        now = clock()
        origin = request.headers.get("origin")
        if origin is not None and origin not in browser_rules.origins:  # a page elsewhere fetching the link
            return _errors(403, [error(None, "Origin", "origin_not_allowed",  # type: ignore[return-value]
                                       "this origin may not call the gateway")])
        visitor = request.cookies.get(cfg.visitor_cookie)
        new_visitor = not valid_visitor_id(visitor)
        if new_visitor:
            visitor = secrets.token_urlsafe(18)
        code = normalize(code)
        owner: CodeOwner | None = None
        if is_well_formed(code):
            try:
                owner = await anyio.to_thread.run_sync(registry.resolve, code)
            except redis.RedisError:
                # Redis unreachable: a well-formed code still counts; the stream agents resolve it later.
                owner = CodeOwner(referrer_id="", campaign_id="")
        if owner is None:
            target = cfg.default_landing_url
        else:
            target = with_ref(cfg.landing_urls.get(owner.campaign_id, cfg.default_landing_url), code)
            first = await anyio.to_thread.run_sync(deduper.first, visitor, code, now)
            if first:
                channel = c if c in Channel.__members__.values() else None
                click = ClickEvent(
                    type="click", event_id=f"click-{uuid.uuid4()}", occurred_at=datetime.fromtimestamp(now, UTC),
                    referral_code=code, visitor_id=visitor, channel=channel,
                    campaign_id=owner.campaign_id or None,
                )
                try:
                    await sink.send([inbound_record(click, "gateway/links", prefix)])
                    metrics.EVENTS.labels("click").inc()
                except SinkUnavailable:
                    log.warning("a referral click could not be written to Kafka")
        response = RedirectResponse(target, status_code=302, headers={"Cache-Control": "no-store"})
        if new_visitor:
            response.set_cookie(cfg.visitor_cookie, visitor, max_age=COOKIE_MAX_AGE_S, httponly=True,
                                samesite="lax", secure=cfg.cookie_secure, path="/")
        return response

    for router in routers:
        app.include_router(router)

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Kafka answers")
    async def readyz() -> JSONResponse:
        if await sink.ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "kafka unavailable"}, status_code=503, headers=retry_503)

    return app
