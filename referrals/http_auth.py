"""Who is calling: API keys (Bearer) and signed webhooks (X-Signature). Pure, constant-time.

Keys and secrets are compared as SHA-256 digests with ``hmac.compare_digest`` against
*every* configured key, so neither the position of a match nor a key's length shows in
the timing. Nothing here logs a key, a secret or a signature.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from dataclasses import dataclass, field

from referrals.settings import ApiKey, WebhookSecret


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    types: frozenset[str]  # event types it may send
    read: bool = False  # may use the read API
    fulfil: bool = False  # may confirm rewards' fulfilment
    publishable: bool = False  # inside an app or a page: customer tokens, origins (``referrals.customer_tokens``)
    token_secret: str | None = field(default=None, repr=False)
    origins: frozenset[str] = frozenset()


def _digest(value: str | bytes) -> bytes:
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).digest()


class KeyRing:
    def __init__(self, keys: list[ApiKey]):
        self._keys = [(_digest(k.key.get_secret_value()), Principal(
            k.name, frozenset(k.types), k.read, k.fulfil, k.publishable,
            k.token_secret.get_secret_value() if k.token_secret else None, frozenset(k.origins))) for k in keys]

    def authenticate(self, authorization: str | None) -> Principal | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        given = _digest(authorization[len("Bearer "):].strip())
        found = None
        for digest, principal in self._keys:
            if hmac.compare_digest(digest, given) and found is None:
                found = principal
        return found


class SignatureProblem(Exception):
    """Why a signed request is refused: malformed, stale, bad (tampered or wrong secret), replayed."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule
        self.message = message


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Signature header a shop sends (also what its SDK or our tests compute)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp, macs = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            macs.append(value.lower())
    if timestamp is None or not macs:
        raise SignatureProblem("signature_malformed", "X-Signature must look like t=<unix seconds>,v1=<hex>")
    return timestamp, macs


class ReplayGuard:
    """Remembers accepted signatures for the tolerance window: the same signed request twice is refused."""

    def __init__(self, window_s: int, max_entries: int = 1_000_000):
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, mac: str, now: float) -> bool:
        while self._seen and (next(iter(self._seen.values())) <= now or len(self._seen) > self.max_entries):
            self._seen.popitem(last=False)
        if mac in self._seen:
            return False
        self._seen[mac] = now + self.window_s
        return True


class WebhookVerifier:
    def __init__(self, secrets: list[WebhookSecret], tolerance_s: int):
        self._secrets = [(s.secret.get_secret_value().encode(), Principal(s.name, frozenset(s.types)))
                         for s in secrets]
        self.tolerance_s = tolerance_s
        self.replays = ReplayGuard(2 * tolerance_s)

    def verify(self, header: str, body: bytes, now: float) -> Principal:
        timestamp, macs = _parse(header)
        if abs(now - timestamp) > self.tolerance_s:
            raise SignatureProblem(
                "signature_stale", f"X-Signature timestamp is more than {self.tolerance_s} s from now"
            )
        signed = f"{timestamp}.".encode() + body
        found = None
        for secret, principal in self._secrets:
            expected = hmac.new(secret, signed, hashlib.sha256).hexdigest()
            for mac in macs:
                if hmac.compare_digest(expected, mac) and found is None:
                    found = (principal, mac)
        if found is None:
            raise SignatureProblem("signature_invalid", "X-Signature does not match the body")
        if not self.replays.first_time(found[1], now):
            raise SignatureProblem("signature_replayed", "this signed request was already accepted")
        return found[0]
