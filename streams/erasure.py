"""Erasing a customer (GDPR): the facts and the renaming each stage applies. Pure.

The customer's id ``X`` appears in the worker's records as a key and inside ids
(``<campaign>:<referrer>:<referee>`` referral ids, reward ids, fact ids). Erasure
replaces it everywhere by its pseudonym ``P`` (``referrals.privacy``), drops the e-mail
hash and device id that came with it, and deletes the records that were the customer's
own (their changelog keys get tombstones). Nothing is counted differently: funnels and
ledgers hold no ids, and every reward, referral and point is kept, under ``P``.

How it spreads (``streams.stages``), each step an ordinary fact on the stages' topics, so
it is exact under at-least-once delivery like any other:

1. ``referrals erase`` sends ``Erase`` to the referrer stage, key ``X``.
2. Referrer stage, key ``X``: the record is kept with a marker; the renamed record goes to key
   ``P`` (``AdoptPart`` for each part of it, then ``Adopt`` with its header), so what ``X``
   earned stays in the books; then (``Continue``, once the adoption is on Kafka) ``Erase`` goes
   to the customer stage (key ``X``), to ``X``'s referees and to the visitors who clicked
   ``X``'s links, so that everything renamed reaches ``P`` after the adopted record (the
   customer stage's own renaming sent ``P`` renamed clicks and referrals: before the adoption,
   they made ``P``'s record look adopted already, and the adoption was lost); and a ``Forget``
   to itself, which deletes the marker. A repeated ``Erase`` finds the marker and sends the
   adoption again. With no referrer record, ``Erase`` goes straight on to the customer stage.
3. Customer stage, key ``X``: the record is renamed and kept as a marker; ``Erase`` goes on
   to the visitor records of ``X``'s browser and to every referrer holding one of ``X``'s
   referrals, and a ``Forget`` to itself, which deletes the marker. A repeated ``Erase``
   finds the marker and sends all of it again; ``Forget`` is processed only after the batch
   that sent it has had everything acknowledged, so once the marker is gone nothing is missing.
4. Any other record that mentions ``X`` is renamed in place (the customer stage sends the
   renamed referrals on to ``P``).
5. A fact for ``X`` that arrives after its erasure: the referrer stage forwards it, renamed,
   to ``P``; the customer stage drops it (the shop must not send events of an erased
   customer; see docs/operations.md, erasure).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

PERSONAL_FIELDS = ("email_hash", "device_id", "referee_email_hash", "referee_device_id")


@dataclass(frozen=True, slots=True)
class Erase:
    """Erase ``customer_id``, replacing it by ``pseudonym`` wherever it must be kept."""

    customer_id: str
    pseudonym: str
    erasure_id: str
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class Adopt:
    """The referrer record of an erased customer, renamed: the pseudonym's key keeps it. Over Kafka it holds only
    the record's header, after one ``AdoptPart`` per part (``streams.stage_runner``), and how many parts there
    are: a crash can lose some of them, and the adoption waits until the erasure sends them all again."""

    erasure_id: str
    record: Any
    parts: int | None = None  # None: ``record`` is the whole record


@dataclass(frozen=True, slots=True)
class AdoptPart:
    """One part of an adopted referrer record (``streams.referrer_parts``), sent before the ``Adopt`` that ends it."""

    erasure_id: str
    part_id: str
    value: Any


@dataclass(frozen=True, slots=True)
class Continue:
    """Sent by an erased referrer's marker to itself with the ``Adopt``: processed only after the batch that
    sent both is acknowledged, so everything the rest of the erasure causes reaches the pseudonym's
    partition after the adopted record."""

    erasure_id: str


@dataclass(frozen=True, slots=True)
class Forget:
    """Delete the marker an ``Erase`` left under the erased customer's key."""

    erasure_id: str


def _pattern(customer_id: str) -> re.Pattern[str]:
    return re.compile(r"(?<![^:])" + re.escape(customer_id) + r"(?![^:])")  # whole ':'-separated parts


def rename(value: Any, old: str, new: str) -> Any:
    """``value`` with every id part equal to ``old`` replaced by ``new``, at any depth; the e-mail hash and
    device id on records of ``old`` (its profile, its signups, referrals of it as a referee) dropped."""
    pattern = _pattern(old)
    replacement = new.replace("\\", "\\\\")

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return pattern.sub(replacement, v) if old in v else v
        if isinstance(v, dict):
            return {walk(k): walk(x) for k, x in v.items()}
        if isinstance(v, tuple):
            return tuple(walk(x) for x in v)
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, frozenset):
            return frozenset(walk(x) for x in v)
        if isinstance(v, set):
            return {walk(x) for x in v}
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            changes = {f.name: walk(getattr(v, f.name)) for f in dataclasses.fields(v)}
            if any(getattr(v, name, None) == old for name in ("customer_id", "referee_id")):
                changes.update({name: None for name in PERSONAL_FIELDS if name in changes})
            return replace(v, **changes)
        return v

    return walk(value)


def mentions(value: Any, customer_id: str) -> bool:
    """Whether ``customer_id`` is still anywhere in ``value`` as an id part, at any depth."""
    pattern = _pattern(customer_id)

    def walk(v: Any) -> bool:
        if isinstance(v, str):
            return customer_id in v and bool(pattern.search(v))
        if isinstance(v, dict):
            return any(walk(k) or walk(x) for k, x in v.items())
        if isinstance(v, tuple | list | frozenset | set):
            return any(walk(x) for x in v)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return any(walk(getattr(v, f.name)) for f in dataclasses.fields(v))
        return False

    return walk(value)
