"""Pickling of the stages' records and facts (the changelogs and internal topics carry them): faster
to write, and read back only as the record types they are.

A frozen dataclass with ``slots=True`` pickles through ``dataclasses``' own ``__getstate__``,
which calls ``fields()`` for every object. Registered here instead (``copyreg``), each class
pickles as its constructor and its field values, about a quarter faster, and loads with the
constructor. Pickles written before load as they always did (their format names the old way).

Reading: plain ``pickle.loads`` runs whatever callable a pickle names, so whoever can write to a
topic the worker reads pickles from could run code in the worker. ``loads`` builds only the
classes allowed here (the record modules' dataclasses and enums, the reward enums, ``datetime``
and ``Decimal``) and refuses any other (``RefusedClass``). The ``records`` codec
(Faust's ``pickle`` format, pickle and base64, read with ``loads``) is what the tables use.

Importing this module registers and allows the record modules (``RECORD_MODULES``).
"""

from __future__ import annotations

import copyreg
import dataclasses
import datetime
import decimal
import enum
import io
import pickle
from collections.abc import Callable
from types import ModuleType
from typing import Any

from faust.serializers import codecs

from schemas import derived
from streams import erasure, referee_ledger, referrer_parts, referrer_rewards, stages, visitor_attribution

# module -> name -> class: what ``loads`` may build (``allow`` adds to it)
ALLOWED: dict[str, dict[str, type]] = {
    "datetime": {"datetime": datetime.datetime, "date": datetime.date, "timedelta": datetime.timedelta,
                 "timezone": datetime.timezone},
    "decimal": {"Decimal": decimal.Decimal},
}


def _reducer(names: tuple[str, ...]) -> Callable[[Any], tuple[type, tuple[Any, ...]]]:
    def reduce(obj: Any) -> tuple[type, tuple[Any, ...]]:
        return type(obj), tuple([getattr(obj, name) for name in names])
    return reduce


def register(*modules: ModuleType) -> list[type]:
    """Register every dataclass defined in ``modules`` whose fields all go to its constructor."""
    done = []
    for module in modules:
        for cls in vars(module).values():
            if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__):
                continue
            fields = dataclasses.fields(cls)
            if any(not f.init or f.kw_only for f in fields):
                continue
            copyreg.pickle(cls, _reducer(tuple(f.name for f in fields)))
            done.append(cls)
    return done


def allow(*modules: ModuleType) -> list[type]:
    """Let ``loads`` build the dataclasses and enums defined in ``modules`` (and nothing else of them)."""
    done = []
    for module in modules:
        for name, cls in vars(module).items():
            if (isinstance(cls, type) and cls.__module__ == module.__name__ and cls.__qualname__ == name
                    and (dataclasses.is_dataclass(cls) or issubclass(cls, enum.Enum))):
                ALLOWED.setdefault(module.__name__, {})[name] = cls
                done.append(cls)
    return done


class RefusedClass(pickle.UnpicklingError):
    """The pickle names a class (or function) that is not a record type: nothing was built."""


class _RecordUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        cls = ALLOWED.get(module, {}).get(name)
        if cls is None:
            raise RefusedClass(f"refused to build {module}.{name}: not a record type")
        return cls


def loads(data: bytes) -> Any:
    """A pickled record or fact, built only from the allowed classes (``RefusedClass`` if it names any other;
    a damaged pickle raises ``pickle.UnpicklingError`` or about any other error)."""
    return _RecordUnpickler(io.BytesIO(data)).load()


class _RawRecords(codecs.Codec):
    def _loads(self, s: bytes) -> Any:
        return loads(s)

    def _dumps(self, obj: Any) -> bytes:
        return pickle.dumps(obj)


RECORDS_CODEC = "records"
codecs.register(RECORDS_CODEC, _RawRecords() | codecs.binary())


RECORD_MODULES = (stages, referee_ledger, referrer_rewards, referrer_parts, visitor_attribution, erasure)
register(*RECORD_MODULES)
allow(*RECORD_MODULES, derived)  # the records hold the reward enums of ``schemas.derived``
