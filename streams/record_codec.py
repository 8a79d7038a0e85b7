"""The worker's own bytes: its tables' changelogs and its stages' topics, as MessagePack (msgspec).

Every value is an envelope ``[format, tag, body]``:

- ``format`` is ``FORMAT`` (1). A value of another format is refused (``UnreadableRecord``,
  reason ``other_format``), never guessed at.
- ``tag`` names the record type (``TYPES``). Tags are part of the format: never reused or
  renamed. A tag that is not a record type is refused (``unknown_record``): nothing is built
  from a name a value carries, so no value can make the worker run code (what the restricted
  unpickler guarded against before: no pickle is read anywhere now).
- ``body`` is the record as msgspec encodes a dataclass (a map by field name), decoded into
  that type and checked against its fields' types (``damaged_record`` if it does not fit).

**Reading values of an older version** (the rule for changing a record type): within format 1 a
field may only be *added*, with a default. A value written before the field existed reads with
the default; a value with a field this version does not know reads without it. Any other change
(a field renamed, retyped or removed without a default, a tag's meaning changed) bumps
``FORMAT`` and keeps a reader for the format before. Values written by the versions that pickled
their records (before #17) are not read: there is no migration; start the worker's state fresh
(docs/worker.md: records of an older format).

Three record types hold what msgspec cannot type by field alone, and go through a wire form
(``_WIRE``): a ``Versioned`` fact's ``fact`` and an ``AdoptPart``'s ``value`` (envelopes of their own), an ``Adopt``'s
``record`` (a referrer record) and a customer record's outputs (referrals and the profile, kept in
one map: split by type on the wire).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from streams.erasure import Adopt, AdoptPart, Continue, Erase, Forget
from streams.referee_ledger import CustomerState, Order, Profile, Referral, Refund, Signup
from streams.referrer_parts import Counted, Folded, Member, ReferralPart
from streams.referrer_rewards import Tick
from streams.stages import (
    ClickCounted,
    CustomerErasure,
    CustomerRecord,
    Named,
    ReferrerRecord,
    Share,
    Versioned,
    VisitorRecord,
)
from streams.visitor_attribution import Candidate, VisitorSignup

FORMAT = 1

# tag -> record type: what the stages send each other, the facts inside a ``Versioned``, the tables' values
TYPES: dict[str, type] = {
    # the stages' topics
    "tick": Tick,
    "share": Share,
    "versioned": Versioned,
    "visitor_signup": VisitorSignup,
    "erase": Erase,
    "forget": Forget,
    "continue": Continue,
    "adopt": Adopt,
    "adopt_part": AdoptPart,
    # the facts a ``Versioned`` carries
    "candidate": Candidate,
    "click_counted": ClickCounted,
    "referral": Referral,
    "profile": Profile,
    "named": Named,
    # the tables (a referrer's record is a header and parts: ``streams.referrer_parts``)
    "visitor_record": VisitorRecord,
    "customer_record": CustomerRecord,
    "referrer_record": ReferrerRecord,
    "referral_part": ReferralPart,
    "counted": Counted,
    "member": Member,
    "folded": Folded,
}
_TAGS: dict[type, str] = {cls: tag for tag, cls in TYPES.items()}


class UnreadableRecord(ValueError):
    """A value that is not a record this version reads; ``reason`` says why (a dead letter's reason code)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# -- wire forms of the types msgspec cannot type by field alone ---------------------------------------------

@dataclass(slots=True)
class _VersionedWire:
    fact_id: str
    version: int
    fact: msgspec.Raw  # an envelope of its own
    caused_at: datetime | None = None


@dataclass(slots=True)
class _AdoptWire:
    erasure_id: str
    record: ReferrerRecord
    parts: int | None = None


@dataclass(slots=True)
class _AdoptPartWire:
    erasure_id: str
    part_id: str
    value: msgspec.Raw  # an envelope of its own (a part of ``streams.referrer_parts``)


@dataclass(slots=True)
class _CustomerWire:
    signups: dict[str, Signup] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    candidates: dict[str, Candidate] = field(default_factory=dict)
    referral_outputs: dict[str, Referral] = field(default_factory=dict)
    profile_outputs: dict[str, Profile] = field(default_factory=dict)
    seq: int = 0
    seen: dict[str, int] = field(default_factory=dict)
    sent_referrals: dict[str, Referral] = field(default_factory=dict)
    sent_profiles: dict[str, Profile] = field(default_factory=dict)
    erasure: CustomerErasure | None = None
    named: tuple[str, ...] = ()


def _by_type(outputs: dict[str, Referral | Profile]) -> tuple[dict[str, Referral], dict[str, Profile]]:
    referrals: dict[str, Referral] = {}
    profiles: dict[str, Profile] = {}
    for key, output in outputs.items():
        (profiles if isinstance(output, Profile) else referrals)[key] = output  # type: ignore[index]
    return referrals, profiles


def _customer_to_wire(record: CustomerRecord) -> _CustomerWire:
    core = record.core
    outputs = _by_type(core.outputs)
    sent = _by_type(record.sent)
    return _CustomerWire(core.signups, core.orders, core.refunds, core.candidates, *outputs,
                         record.seq, record.seen, *sent, record.erasure, record.named)


def _customer_from_wire(wire: _CustomerWire) -> CustomerRecord:
    core = CustomerState(wire.signups, wire.orders, wire.refunds, wire.candidates,
                         {**wire.referral_outputs, **wire.profile_outputs})
    return CustomerRecord(core, wire.seq, wire.seen, {**wire.sent_referrals, **wire.sent_profiles}, wire.erasure,
                          wire.named)


# record type -> (to its wire form, the wire type, back from it)
_WIRE: dict[type, tuple[Callable[[Any], Any], type, Callable[[Any], Any]]] = {
    Versioned: (lambda v: _VersionedWire(v.fact_id, v.version, msgspec.Raw(encode(v.fact)), v.caused_at),
                _VersionedWire,
                lambda w: Versioned(w.fact_id, w.version, decode(bytes(w.fact)), w.caused_at)),
    Adopt: (lambda a: _AdoptWire(a.erasure_id, a.record, a.parts), _AdoptWire,
            lambda w: Adopt(w.erasure_id, w.record, w.parts)),
    AdoptPart: (lambda a: _AdoptPartWire(a.erasure_id, a.part_id, msgspec.Raw(encode(a.value))), _AdoptPartWire,
                lambda w: AdoptPart(w.erasure_id, w.part_id, decode(bytes(w.value)))),
    CustomerRecord: (_customer_to_wire, _CustomerWire, _customer_from_wire),
}

_encoder = msgspec.msgpack.Encoder()
_envelope = msgspec.msgpack.Decoder(tuple[int, str, msgspec.Raw])
_bodies: dict[str, msgspec.msgpack.Decoder] = {
    tag: msgspec.msgpack.Decoder(_WIRE[cls][1] if cls in _WIRE else cls) for tag, cls in TYPES.items()
}


def encode(record: Any) -> bytes:
    """A record or fact as its envelope (``TypeError`` for anything that is not a record type)."""
    cls = type(record)
    tag = _TAGS.get(cls)
    if tag is None:
        raise TypeError(f"{cls.__qualname__} is not a record type of streams.record_codec")
    wire = _WIRE.get(cls)
    return _encoder.encode((FORMAT, tag, record if wire is None else wire[0](record)))


def decode_or_unread(data: bytes) -> Any:
    """The record, or ``Unread`` with the reason it is none."""
    try:
        return decode(data)
    except UnreadableRecord as exc:
        return Unread(exc.reason, str(exc))


def decode(data: bytes) -> Any:
    """The record an envelope holds; ``UnreadableRecord`` if it holds none this version reads."""
    try:
        version, tag, body = _envelope.decode(data)
    except (msgspec.DecodeError, TypeError) as exc:
        raise UnreadableRecord("damaged_record", f"not a record envelope: {exc}") from None
    if version != FORMAT:
        raise UnreadableRecord("other_format", f"a record of format {version}; this version reads format {FORMAT} "
                                               "(docs/worker.md: records of an older format)")
    decoder = _bodies.get(tag)
    if decoder is None:
        raise UnreadableRecord("unknown_record", f"{tag[:60]!r} is not a record type")
    try:
        value = decoder.decode(body)
    except (msgspec.DecodeError, TypeError, ValueError) as exc:
        raise UnreadableRecord("damaged_record", f"a {tag} that does not fit its type: {exc}") from None
    wire = _WIRE.get(TYPES[tag])
    return value if wire is None else wire[2](value)


@dataclass(frozen=True, slots=True)
class Unread:
    """What the tables' codec (``streams.app``) gives for a changelog value it cannot read: Faust's recovery
    only logs an exception and then never finishes, so the table is handed this instead and stops the worker
    (``streams.app.RecordTable``)."""

    reason: str
    message: str
