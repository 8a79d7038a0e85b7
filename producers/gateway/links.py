"""Referral links: where `/r/{code}` sends the visitor, and the visitor cookie. Pure."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
COOKIE_MAX_AGE_S = 30 * 24 * 3600


def with_ref(landing_url: str, code: str | None) -> str:
    """The landing URL with ``ref=<code>`` in its query (replacing any ref already there)."""
    if code is None:
        return landing_url
    parts = urlsplit(landing_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "ref"]
    query.append(("ref", code))
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(query), parts.fragment))


def valid_visitor_id(value: str | None) -> bool:
    return bool(value) and _VISITOR_ID.match(value) is not None
