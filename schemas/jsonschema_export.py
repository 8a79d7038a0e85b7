"""JSON Schema files for every inbound event, generated from the pydantic models.

`referrals schemas export` writes them to ``schemas/jsonschema/``; a unit test fails when
the committed files differ from what the models generate.
"""

from __future__ import annotations

import json
from pathlib import Path

from schemas.events import EVENT_MODELS

SCHEMA_DIR = Path(__file__).resolve().parent / "jsonschema"
SCHEMA_ID_BASE = "https://referral-pipeline.io/schemas/"


def generate() -> dict[str, str]:
    """File name -> file text, for every inbound event type."""
    files = {}
    for kind, model in EVENT_MODELS.items():
        schema = model.model_json_schema(mode="validation")
        document = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{SCHEMA_ID_BASE}{kind}.json",
            **schema,
        }
        files[f"{kind}.json"] = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return files


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing or differ from what the models generate."""
    out = []
    for name, text in generate().items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out
