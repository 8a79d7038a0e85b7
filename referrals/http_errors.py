"""The shape of one problem in an HTTP error answer, the same on every route (events in, the read API):
which event of a batch (``index``, None for the request as a whole), which field, which rule, and a message
for people."""

from __future__ import annotations

from typing import Any


def error(index: int | None, field: str, rule: str, message: str) -> dict[str, Any]:
    return {"index": index, "field": field, "rule": rule, "message": message}
