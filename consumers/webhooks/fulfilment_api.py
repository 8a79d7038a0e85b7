"""``POST /v1/rewards/{reward_id}/fulfilment``: the shop says it issued a reward (or could not). Served by the
gateway (``referrals api``) with a key of scope ``fulfil``.

Checked against the reward book (``consumers.webhooks.reward_book``): an unknown reward is 404, a revoked,
capped or held one 409, each with the rule and a message; nothing is produced then. Otherwise the fulfilment is
produced to ``referrals.fulfilments`` like every event (202 once Kafka acknowledged it; 503 with Retry-After
when it did not). The same call again is the same event (its id is derived from the reward and the content):
202 again, and the book records it once. docs/webhooks.md, the shop's confirmation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from consumers.webhooks.reward_book import read_entries, refusal
from referrals.http_auth import KeyRing
from referrals.http_body import BodyTooLarge, read_body
from referrals.http_errors import error
from referrals.settings import Settings
from schemas.fulfilment import MAX_REWARD_ID_LENGTH, Fulfilment, FulfilmentRequest
from schemas.parsing import EventRejected, decode_json, problems_from_validation_error
from schemas.records import Record, fulfilment_record

MAX_BODY_BYTES = 4096


def _errors(status: int, field: str, rule: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"errors": [error(None, field, rule, message)]}, status_code=status, headers=headers or None)


def fulfilment_router(settings: Settings, keys: KeyRing, client: redis.Redis,
                      send: Callable[[list[Record]], Awaitable[int]], unavailable: type[Exception],
                      clock: Callable[[], float] | None = None) -> APIRouter:
    """``send``: the gateway's way to Kafka, which raises ``unavailable`` when Kafka did not take the records."""
    router = APIRouter(prefix="/v1", tags=["fulfilment"])
    prefix, secret = settings.redis.key_prefix, settings.privacy.pseudonym_key.get_secret_value()
    topic_prefix = settings.kafka.topic_prefix
    retry = {"Retry-After": str(settings.gateway.retry_after_s)}
    now = clock or (lambda: datetime.now(UTC).timestamp())

    @router.post("/rewards/{reward_id:path}/fulfilment", status_code=202,
                 summary="The shop issued a reward (or could not)",
                 openapi_extra={
                     "security": [{"bearer": []}],
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": FulfilmentRequest.model_json_schema()}}},
                     "responses": {
                         "202": {"description": "on Kafka; the same call again is the same event"},
                         "401": {"description": "no valid key"}, "403": {"description": "the key may not fulfil"},
                         "404": {"description": "no such reward (unknown_reward)"},
                         "409": {"description": "revoked, capped or held for review: nothing to fulfil"},
                         "413": {"description": "body over 4 KiB"}, "422": {"description": "invalid body"},
                         "503": {"description": "Kafka or Redis unavailable; retry after Retry-After"}}})
    async def fulfil(reward_id: str, request: Request) -> Any:
        principal = keys.authenticate(request.headers.get("authorization"))
        if principal is None:
            return _errors(401, "Authorization", "unknown_key" if request.headers.get("authorization")
                           else "missing_credentials", "send Authorization: Bearer <key>",
                           **{"WWW-Authenticate": "Bearer"})
        if not principal.fulfil:
            return _errors(403, "Authorization", "not_allowed", "this key may not confirm fulfilments")
        if not 0 < len(reward_id) <= MAX_REWARD_ID_LENGTH or not reward_id.isprintable():
            return _errors(422, "reward_id", "invalid_id", f"1 to {MAX_REWARD_ID_LENGTH} printable characters")
        try:
            body = await read_body(request, MAX_BODY_BYTES)
        except BodyTooLarge:
            return _errors(413, "body", "too_large", f"body over {MAX_BODY_BYTES} bytes")
        except ClientDisconnect:  # nothing produced, no one to answer (as POST /v1/events: 499 in the metrics)
            return Response(status_code=499)
        try:
            wanted = FulfilmentRequest.model_validate(decode_json(body))
        except EventRejected as rejected:
            return JSONResponse({"errors": [error(None, p.field, p.rule, p.message) for p in rejected.problems]},
                                status_code=422)
        except ValidationError as exc:
            return JSONResponse({"errors": [error(None, p.field, p.rule, p.message)
                                            for p in problems_from_validation_error(exc, FulfilmentRequest)]},
                                status_code=422)
        try:
            (entry,) = await anyio.to_thread.run_sync(lambda: read_entries(client, prefix, secret, [reward_id]))
        except redis.RedisError:
            return _errors(503, "body", "redis_unavailable", "the reward book is unavailable", **retry)
        if (refused := refusal(entry)) is not None:
            return _errors(refused.status, "reward_id", refused.rule, refused.message)
        event = Fulfilment.of(reward_id, wanted, datetime.fromtimestamp(now(), UTC), principal.name)
        try:
            await send([fulfilment_record(event, f"gateway/{principal.name}", topic_prefix)])
        except unavailable as exc:
            return _errors(503, "body", "kafka_unavailable", str(exc), **retry)
        return JSONResponse({"event_id": event.event_id, "reward_id": reward_id, "status": event.status},
                            status_code=202)

    return router
