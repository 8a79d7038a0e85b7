"""The read API: where a customer's referrals and points stand, and why; campaign funnels and
leaderboards. Mounted in the gateway (``referrals api``), behind the same API keys: a key
needs ``read: true``.

Everything is read from the live Redis view the worker writes (``streams.redis_layout``),
so an answer reflects an event as soon as the worker has processed it. Other customers
appear only as pseudonyms (``referrals.privacy``); withheld rewards and rejected
referrals carry their reason code.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import anyio
import redis
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from kafka.errors import KafkaError

from consumers import live_counters
from consumers.statement import Period, PeriodError, statement_csv
from consumers.story_texts import language_of
from consumers.story_view import story_page
from consumers.webhooks.reward_book import fulfilment_view, read_entries
from referrals.code_registry import CodeRegistry
from referrals.http_auth import KeyRing
from referrals.http_errors import error
from referrals.privacy import pseudonym
from referrals.settings import Settings
from schemas.derived import RewardRole
from schemas.referral_codes import normalize
from streams import erasure_registry, redis_views
from streams.inbound import DEFAULT_CAMPAIGN
from streams.referee_ledger import make_referral_id
from streams.referrer_rewards import own_reward_id

FUNNEL_RATES = (("click_per_share", "click", "share"), ("signup_per_click", "signup", "click"),
                ("conversion_per_signup", "conversion", "signup"))


def _referrer_reward_id(referrer_id: str, referral: dict[str, Any]) -> str:
    """The id of a referral's referrer reward, as the worker names it (and its webhooks carry it)."""
    return own_reward_id(make_referral_id(referral["campaign_id"], referrer_id, referral["referee_id"]),
                         RewardRole.REFERRER)


def _errors(status: int, rule: str, message: str, field: str = "path", **headers: str) -> JSONResponse:
    return JSONResponse({"errors": [error(None, field, rule, message)]}, status_code=status,
                        headers=headers or None)


def read_router(settings: Settings, keys: KeyRing, client: redis.Redis) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["read"])
    registry = CodeRegistry(client, settings.redis.key_prefix)
    key_prefix, partitions = settings.redis.key_prefix, settings.kafka.partitions
    secret = settings.privacy.pseudonym_key.get_secret_value()
    public_url = settings.gateway.public_url.rstrip("/")
    unavailable = {"Retry-After": str(settings.gateway.retry_after_s)}

    def denied(request: Request) -> JSONResponse | None:
        principal = keys.authenticate(request.headers.get("authorization"))
        if principal is None:
            return _errors(401, "unknown_key" if request.headers.get("authorization") else "missing_credentials",
                           "send Authorization: Bearer <key>", "Authorization", **{"WWW-Authenticate": "Bearer"})
        if not principal.read:
            return _errors(403, "not_allowed", "this key may not use the read API", "Authorization")
        return None

    async def read(request: Request, call):
        """(refusal, None) for a caller who may not read or when Redis is down; else (None, what ``call`` read)."""
        if (refused := denied(request)) is not None:
            return refused, None
        try:
            return None, await anyio.to_thread.run_sync(call)
        except redis.RedisError:
            return _errors(503, "redis_unavailable", "the live view is unavailable", "body", **unavailable), None

    def layout():
        return redis_views.active_layout(client, key_prefix, partitions)

    errors_doc = {401: {"description": "no valid key"}, 403: {"description": "the key may not read"},
                  503: {"description": "Redis unavailable; retry after Retry-After"}}

    @router.get("/referrers/{customer_id}", summary="A customer's code, counts, points and referrals",
                responses={**errors_doc, 404: {"description": "no such referrer (with issue=false)"},
                           410: {"description": "the customer was erased (referrals erase)"}})
    async def get_referrer(request: Request, customer_id: str,
                           campaign: Annotated[str, Query(max_length=128)] = DEFAULT_CAMPAIGN,
                           issue: bool = True) -> Any:
        """The customer's referral code for ``campaign`` is issued on the first request (``issue=false``:
        never issued here, and a customer with neither a code nor any referral activity is a 404)."""
        if not customer_id or len(customer_id) > 128:
            return _errors(422, "invalid_id", "customer_id must be 1 to 128 characters")

        def code_and_view() -> tuple[str | None, live_counters.ReferrerView, dict[str, dict[str, str]]] | None:
            if client.sismember(erasure_registry.erased_key(key_prefix), pseudonym(secret, customer_id)):
                return None  # erased: no code is issued again, nothing is shown
            code = registry.issue(customer_id, campaign).code if issue else registry.code_of(customer_id, campaign)
            view = live_counters.referrer_view(client, layout(), customer_id)
            ids = [w["reward_id"] for w in view.welcome] + [_referrer_reward_id(customer_id, r)
                                                              for r in view.referrals if r["reward_status"]]
            return code, view, dict(zip(ids, read_entries(client, key_prefix, secret, ids), strict=True))

        refused, found = await read(request, code_and_view)
        if refused is not None:
            return refused
        if found is None:
            return _errors(410, "erased", "this customer was erased")
        code, view, book = found
        if code is None and view.empty:
            return _errors(404, "unknown_referrer", "no referral code and no referral activity for this customer")

        def reward(reward_id: str, shown: dict[str, Any]) -> dict[str, Any]:
            # the reward id itself is not shown: it names the referrer and the referee, and the read API shows other
            # customers only as pseudonyms (the shop has the id from the webhooks)
            return {**shown, "fulfilment": fulfilment_view(book.get(reward_id, {}))}

        return {
            "customer_id": customer_id,
            "campaign_id": campaign,
            "referral_code": code,
            "share_url": f"{public_url}/r/{normalize(code)}" if code else None,
            "counts": {"shares": view.shares, "clicks": view.clicks, "signups": view.signups,
                       "conversions": view.conversions},
            "points": view.points,
            "rewards_as_referee": [reward(w["reward_id"], {"campaign_id": w["campaign_id"], "status": w["status"],
                                                           "points": w["points"], "reason": w["reason"]})
                                   for w in view.welcome],
            "referrals": [{
                "referee": pseudonym(secret, r["referee_id"]), "campaign_id": r["campaign_id"],
                "status": r["status"], "reason": r["reason"], "channel": r["channel"],
                "attributed_at": r["attributed_at"],
                "reward": reward(_referrer_reward_id(customer_id, r), {
                    "status": r["reward_status"], "points": r["reward_points"], "reason": r["reward_reason"]})
                if r["reward_status"] else None,
            } for r in view.referrals],
        }

    @router.get("/customers/{customer_id}/story", summary="Everything about a customer's referrals, in words",
                responses={**errors_doc, 410: {"description": "the customer was erased (referrals erase)"},
                           422: {"description": "a bad limit or cursor"}})
    async def get_story(request: Request, customer_id: str, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                        cursor: Annotated[str | None, Query(pattern=r"^\d{1,15}:\d{1,9}$")] = None) -> Any:
        """The customer's referral story, as referrer and as referee, in event-time order: each referral with
        every decision and its cause, each reward's status history and the shop's fulfilment, their shares and
        the clicks on their links per day and channel; each step in a sentence with its values, in English or
        German (``Accept-Language``). Other customers as pseudonyms. Paged: ``next_cursor`` is the next page's
        ``cursor``; ``earlier`` counts the steps folded out of a long story (docs/operations.md)."""
        if not customer_id or len(customer_id) > 128:
            return _errors(422, "invalid_id", "customer_id must be 1 to 128 characters")
        language = language_of(request.headers.get("accept-language"))
        refused, page = await read(request, lambda: story_page(client, settings, customer_id, limit=limit,
                                                               cursor=cursor, language=language))
        if refused is not None:
            return refused
        if page is None:
            return _errors(410, "erased", "this customer was erased")
        return JSONResponse(page, headers={"Content-Language": language})

    @router.get("/campaigns/{campaign_id}/funnel", summary="A campaign's funnel by stage and channel",
                responses=errors_doc)
    async def get_funnel(request: Request, campaign_id: str,
                         day: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")] = None) -> Any:
        """Shares, clicks, signups and conversions (first qualifying purchases), in total and per channel, and
        each stage's rate to the one before. ``day`` (UTC, YYYY-MM-DD): that day's events only."""
        refused, counts = await read(request, lambda: live_counters.funnel(client, layout(), campaign_id, day))
        if refused is not None:
            return refused
        stages = live_counters.funnel_by_stage(counts)
        totals = {stage: sum(by_channel.values()) for stage, by_channel in stages.items()}
        return {
            "campaign_id": campaign_id, "day": day,
            "stages": {stage: {"total": totals[stage], "by_channel": stages[stage]}
                       for stage in live_counters.FUNNEL_STAGES},
            "rates": {name: (round(totals[num] / totals[den], 4) if totals[den] else None)
                      for name, num, den in FUNNEL_RATES},
        }

    @router.get("/campaigns/{campaign_id}/leaderboard", summary="Referrers with the most confirmed referrals",
                responses=errors_doc)
    async def get_leaderboard(request: Request, campaign_id: str,
                              limit: Annotated[int, Query(ge=1, le=100)] = 10) -> Any:
        """Referrers (as pseudonyms) ranked by confirmed referrals; ties in a stable order."""
        refused, top = await read(request, lambda: live_counters.leaderboard(client, layout(), campaign_id, limit))
        if refused is not None:
            return refused
        return {"campaign_id": campaign_id, "entries": [
            {"rank": i + 1, "referrer": pseudonym(secret, referrer_id), "confirmed_referrals": n}
            for i, (referrer_id, n) in enumerate(top)]}

    @router.get("/campaigns/{campaign_id}/rewards", summary="A campaign's rewards and points by role and status",
                responses=errors_doc)
    async def get_rewards(request: Request, campaign_id: str) -> Any:
        """The campaign's ledger: per role and status, how many rewards reached it and their points (each reward
        once per status, with the points it had when it first reached it), and the referrals withheld per
        reason code. The statement's closing rows over all time say the same."""
        refused, ledger = await read(request, lambda: live_counters.summed(client, layout().all_ledgers(campaign_id)))
        if refused is not None:
            return refused
        rewards: dict[str, dict[str, dict[str, int]]] = {}
        for name, n in sorted(ledger.items()):
            kind, *rest = name.split(":")
            if kind in ("rewards", "points") and len(rest) == 2:
                rewards.setdefault(rest[0], {}).setdefault(rest[1], {"rewards": 0, "points": 0})[kind] = n
        return {"campaign_id": campaign_id, "by_role": rewards,
                "rejections": {name.split(":", 1)[1]: n for name, n in sorted(ledger.items())
                               if name.startswith("rejections:")}}

    @router.get("/campaigns/{campaign_id}/statement.csv", summary="Every reward change of a period, as CSV",
                response_class=StreamingResponse,
                responses={**errors_doc, 200: {"content": {"text/csv": {}}, "description": "the statement"},
                           422: {"description": "from or to is not a date or a time, or the period is empty"},
                           503: {"description": "Kafka or Redis unavailable; retry after Retry-After"}})
    async def get_statement(request: Request, campaign_id: str,
                            start: Annotated[str | None, Query(alias="from", max_length=64)] = None,
                            end: Annotated[str | None, Query(alias="to", max_length=64)] = None) -> Any:
        """Every change of the campaign's rewards whose event time is in ``from <= occurred_at < to`` (dates,
        ``YYYY-MM-DD``, are midnight UTC; or RFC 3339 times), from the reward log, each change once; then a
        ``total`` row per status. Streamed: a statement that ends without its ``total`` rows was cut short."""
        if (refused := denied(request)) is not None:
            return refused  # before the query is looked at: without a key, every route answers 401
        if start is None or end is None:
            return _errors(422, "invalid_period", "from and to are required (from <= occurred_at < to)", "query")
        try:
            period = Period.parse(start, end)
        except PeriodError as exc:
            return _errors(422, "invalid_period", str(exc), "query")
        try:
            chunks = await anyio.to_thread.run_sync(lambda: statement_csv(settings, client, campaign_id, period))
        except (KafkaError, redis.RedisError) as exc:
            name = "kafka" if isinstance(exc, KafkaError) else "redis"
            return _errors(503, f"{name}_unavailable", f"{name.capitalize()} is unavailable", "body", **unavailable)
        filename = re.sub(r"[^A-Za-z0-9._-]", "_", f"statement-{campaign_id}-{start[:10]}-{end[:10]}.csv")
        return StreamingResponse(chunks, media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    return router
