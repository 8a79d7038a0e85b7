"""Faster pickling of the stages' records and facts (the changelogs and internal topics carry them).

A frozen dataclass with ``slots=True`` pickles through ``dataclasses``' own ``__getstate__``,
which calls ``fields()`` for every object. Registered here instead (``copyreg``), each class
pickles as its constructor and its field values, about a quarter faster, and loads with the
constructor. Pickles written before load as they always did (their format names the old way).
"""

from __future__ import annotations

import copyreg
import dataclasses
from collections.abc import Callable
from types import ModuleType
from typing import Any


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
