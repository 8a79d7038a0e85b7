"""Referral codes: short, unguessable, easy to type, with a check character.

A code is 9 random characters and 1 check character from an alphabet without
look-alikes (no 0/O, 1/I/L): 31^9 ≈ 2.6·10^13 codes, so guessing one is hopeless
behind the gateway's rate limit. The check character (a weighted sum modulo 31, a
prime) catches every single mistyped character and every swap of two neighbours, so
a typo is recognised as malformed without asking Redis.

Pure functions: randomness is passed in. Issuing and resolving (the registry, in Redis)
live in ``referrals/code_registry.py``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


@dataclass(frozen=True, slots=True)
class CodeOwner:
    """Whose a code is: the referrer and the campaign it was issued for."""

    referrer_id: str
    campaign_id: str


BODY_LENGTH = 9
CODE_LENGTH = BODY_LENGTH + 1
_INDEX = {ch: i for i, ch in enumerate(ALPHABET)}


def check_character(body: str) -> str:
    total = sum((position + 1) * _INDEX[ch] for position, ch in enumerate(body))
    return ALPHABET[total % len(ALPHABET)]


def new_code(randbelow: Callable[[int], int] = secrets.randbelow) -> str:
    body = "".join(ALPHABET[randbelow(len(ALPHABET))] for _ in range(BODY_LENGTH))
    return body + check_character(body)


def normalize(text: str) -> str:
    """What a customer typed, as a code: upper case, without spaces or dashes."""
    return text.strip().upper().replace("-", "").replace(" ", "")


def is_well_formed(code: str) -> bool:
    return (
        len(code) == CODE_LENGTH
        and all(ch in _INDEX for ch in code)
        and check_character(code[:BODY_LENGTH]) == code[BODY_LENGTH]
    )
