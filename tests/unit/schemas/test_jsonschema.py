"""The JSON Schema files the mobile and shop teams use: up to date, and they agree with the models."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from schemas.jsonschema_export import SCHEMA_DIR, generate, stale
from tests.unit.schemas.factories import VALID, event, full


def test_committed_schema_files_are_up_to_date():
    assert stale() == [], "run `referrals schemas export` and commit schemas/jsonschema/"


def test_stale_notices_a_changed_file(tmp_path):
    for name, text in generate().items():
        (tmp_path / name).write_text(text)
    assert stale(tmp_path) == []
    (tmp_path / "order.json").write_text("{}")
    (tmp_path / "share.json").unlink()
    assert sorted(stale(tmp_path)) == ["order.json", "share.json"]


def validator(kind: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{kind}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.mark.parametrize("kind", list(VALID))
def test_valid_events_pass_the_json_schema(kind):
    assert list(validator(kind).iter_errors(event(kind))) == []
    assert list(validator(kind).iter_errors(full(kind))) == []


@pytest.mark.parametrize(("kind", "changes"), [
    ("share", {"colour": "blue"}),
    ("share", {"channel": "fax"}),
    ("share", {"event_id": ""}),
    ("share", {"referrer_id": "a\nb"}),
    ("share", {"occurred_at": "2026-05-01T11:00:00"}),
    ("click", {"visitor_id": 5}),
    ("signup", {"customer_id": ...}),
    ("order", {"currency": "eur"}),
    ("order", {"amount": "-5"}),
    ("order", {"amount": 0}),
])
def test_json_schema_rejects_what_the_models_reject(kind, changes):
    assert list(validator(kind).iter_errors(event(kind, **changes))) != []
