"""Issuing and resolving referral codes, in Redis.

Where issuing lives: here. A code is issued on first request per (customer, campaign),
by the read API (``GET /v1/referrers/{customer_id}``), by `referrals codes issue`, or by
the simulator, and then never changes. Redis (AOF, fsync every second) holds both
directions:

- ``<prefix>code:<CODE>`` -> hash ``referrer_id``, ``campaign_id``: how the gateway's
  ``/r/<code>`` and the stream agents resolve a code to its referrer;
- ``<prefix>referrer:<customer_id>:codes`` -> hash ``campaign_id`` -> code: what makes
  a code stable per customer and campaign.

Issuing is one Lua script, so two concurrent requests for the same customer get the same
code, and two customers never get the same code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis

from referrals.redis_client import redis_client
from referrals.settings import Settings
from schemas.referral_codes import CodeOwner, is_well_formed, new_code, normalize

DEFAULT_CAMPAIGN = "default"

# KEYS[1] referrer hash, KEYS[2] candidate code key; ARGV: campaign, referrer, code
_ISSUE = """
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return {existing, 0} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {false, 0} end
redis.call('HSET', KEYS[2], 'referrer_id', ARGV[2], 'campaign_id', ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return {ARGV[3], 1}
"""


@dataclass(frozen=True, slots=True)
class IssuedCode:
    code: str
    referrer_id: str
    campaign_id: str
    new: bool


class CodeRegistry:
    def __init__(self, client: redis.Redis, key_prefix: str = "rp:"):
        self.client = client
        self.prefix = key_prefix
        self._issue = client.register_script(_ISSUE)

    @classmethod
    def from_settings(cls, settings: Settings) -> CodeRegistry:
        return cls(redis_client(settings), settings.redis.key_prefix)

    def _code_key(self, code: str) -> str:
        return f"{self.prefix}code:{code}"

    def _referrer_key(self, referrer_id: str) -> str:
        return f"{self.prefix}referrer:{referrer_id}:codes"

    def issue(self, referrer_id: str, campaign_id: str | None = None) -> IssuedCode:
        """The customer's code for the campaign, issued now if they have none."""
        campaign = campaign_id or DEFAULT_CAMPAIGN
        for _ in range(20):
            candidate = new_code()
            code, created = self._issue(
                keys=[self._referrer_key(referrer_id), self._code_key(candidate)],
                args=[campaign, referrer_id, candidate],
            )
            if code:
                return IssuedCode(code.decode(), referrer_id, campaign, bool(created))
        raise RuntimeError("could not find a free referral code in 20 tries")  # 31^9 codes: practically never

    def claim(self, referrer_id: str, code: str, campaign_id: str | None = None) -> IssuedCode:
        """Issue a given, well-formed code (the simulator's deterministic codes). If the customer already
        has a code for the campaign, or the code belongs to someone else, the existing state wins."""
        campaign = campaign_id or DEFAULT_CAMPAIGN
        if not is_well_formed(code):
            raise ValueError("not a well-formed referral code")
        got, created = self._issue(keys=[self._referrer_key(referrer_id), self._code_key(code)],
                                   args=[campaign, referrer_id, code])
        if not got:
            raise ValueError("that code belongs to another customer")
        return IssuedCode(got.decode(), referrer_id, campaign, bool(created))

    def claim_many(self, claims: list[tuple[str, str, str | None]]) -> list[IssuedCode]:
        """``claim`` for many (referrer_id, code, campaign_id) at once: one pipeline, one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for referrer_id, code, campaign_id in claims:
            if not is_well_formed(code):
                raise ValueError("not a well-formed referral code")
            self._issue(keys=[self._referrer_key(referrer_id), self._code_key(code)],
                        args=[campaign_id or DEFAULT_CAMPAIGN, referrer_id, code], client=pipe)
        issued = []
        for (referrer_id, _code, campaign_id), (got, created) in zip(claims, pipe.execute(), strict=True):
            if not got:
                raise ValueError("that code belongs to another customer")
            issued.append(IssuedCode(got.decode(), referrer_id, campaign_id or DEFAULT_CAMPAIGN, bool(created)))
        return issued

    def code_of(self, referrer_id: str, campaign_id: str | None = None) -> str | None:
        """The customer's code for the campaign, if one was issued (never issues one)."""
        found = self.client.hget(self._referrer_key(referrer_id), campaign_id or DEFAULT_CAMPAIGN)
        return found.decode() if isinstance(found, bytes) else found

    def resolve(self, code: str) -> CodeOwner | None:
        """Who owns the code; None for a malformed or unknown code."""
        code = normalize(code)
        if not is_well_formed(code):
            return None
        found = self.client.hmget(self._code_key(code), "referrer_id", "campaign_id")
        if found[0] is None:
            return None
        return CodeOwner(found[0].decode(), found[1].decode())

    def resolve_many(self, codes: Iterable[str]) -> dict[str, CodeOwner | None]:
        """``resolve`` for many codes at once: one pipeline, one round trip; every code given is a key."""
        asked = {code: normalize(code) for code in codes}
        wanted = sorted({n for n in asked.values() if is_well_formed(n)})
        pipe = self.client.pipeline(transaction=False)
        for code in wanted:
            pipe.hmget(self._code_key(code), "referrer_id", "campaign_id")
        found = {code: CodeOwner(f[0].decode(), f[1].decode()) if f[0] is not None else None
                 for code, f in zip(wanted, pipe.execute() if wanted else [], strict=True)}
        return {code: found.get(n) for code, n in asked.items()}

    def forget(self, referrer_id: str) -> int:
        """Remove every code of a customer (erasure). Returns how many codes were removed."""
        codes = self.client.hgetall(self._referrer_key(referrer_id))
        if codes:
            self.client.delete(*(self._code_key(c.decode()) for c in codes.values()))
        self.client.delete(self._referrer_key(referrer_id))
        return len(codes)
