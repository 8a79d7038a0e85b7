"""Pseudonymous ids: what the read API shows of other customers, and what erasure keeps.

A pseudonym is a keyed hash (HMAC-SHA256 with ``privacy.pseudonym_key``) of a customer
id: stable, so the same customer shows the same pseudonym everywhere, and not reversible
without the key (customer ids are often sequential: a plain hash would be guessed).
"""

from __future__ import annotations

import hashlib
import hmac


def pseudonym(key: str, customer_id: str) -> str:
    return "c_" + hmac.new(key.encode(), customer_id.encode(), hashlib.sha256).hexdigest()[:24]
