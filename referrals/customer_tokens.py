"""Customer tokens: the shop's backend vouches for who the customer of an app or a web page is. Pure.

A publishable key is compiled into an app or a page, so anyone can take it out and use it. The events that
name a customer (a share names its referrer, a signup its customer) are only accepted with it together with a
token that the shop's backend issues for one customer, for a short time, with a secret the backend shares with
the gateway (``ApiKey.token_secret``), never with the app. The format (docs/security.md has it with a Python
and a JavaScript snippet)::

    v1.<expiry: unix seconds>.<customer id: base64url, no padding>.<mac: base64url, no padding>

    mac = HMAC-SHA256(token_secret, "v1.<key name>.<expiry>.<customer id>")

The key's name is inside the MAC, not the token: a token made for one publishable key is refused with another
(its MAC does not match). Nothing here logs a token, a customer id or a secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

VERSION = "v1"


class TokenProblem(Exception):
    """Why a customer token is refused: ``token_malformed``, ``token_invalid`` (forged, or made for another key
    or with another secret), ``token_expired``, ``token_too_long_lived`` (its expiry further ahead than the
    gateway allows)."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule
        self.message = message


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """base64url without padding, strictly: a character outside the alphabet is an error, not skipped."""
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _mac(secret: str, key_name: str, expires: int, customer_id: str) -> bytes:
    message = f"{VERSION}.{key_name}.{expires}.{customer_id}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def issue(secret: str, key_name: str, customer_id: str, expires: int) -> str:
    """The token for ``customer_id`` with the publishable key ``key_name``, valid until ``expires`` (unix s)."""
    return ".".join((VERSION, str(expires), _b64(customer_id.encode()), _b64(_mac(secret, key_name, expires,
                                                                                   customer_id))))


def verify(token: str, *, secret: str, key_name: str, now: float, max_ttl_s: int) -> str:
    """The customer id ``token`` vouches for, or ``TokenProblem``. Constant-time in the MAC."""
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != VERSION or not parts[1].isdigit() or len(parts[1]) > 12:
        raise TokenProblem("token_malformed", "X-Customer-Token must look like v1.<expiry>.<customer>.<mac>")
    expires = int(parts[1])
    try:
        customer_id = _unb64(parts[2]).decode()
        given = _unb64(parts[3])
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise TokenProblem("token_malformed", "X-Customer-Token is not base64url where it must be") from None
    if not customer_id or not hmac.compare_digest(given, _mac(secret, key_name, expires, customer_id)):
        raise TokenProblem("token_invalid", "X-Customer-Token was not issued for this key")
    if expires <= now:
        raise TokenProblem("token_expired", "X-Customer-Token has expired: ask the shop's backend for a new one")
    if expires > now + max_ttl_s:
        raise TokenProblem("token_too_long_lived",
                           f"X-Customer-Token expires more than {max_ttl_s} s from now: issue shorter-lived tokens")
    return customer_id
