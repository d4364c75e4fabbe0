"""HL7's FHIR R4 JSON Schema (`../shared/fhir/fhir.schema.json`), for checking what we emit."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from jsonschema import Draft6Validator

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "shared" / "fhir" / "fhir.schema.json"
"""HL7's `fhir.schema.json` (version 4.0), shipped beside the repository."""


@functools.cache
def _schema() -> dict:
    if not SCHEMA_PATH.is_file():
        pytest.skip(f"the FHIR R4 JSON Schema is not at {SCHEMA_PATH}")
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@functools.cache
def _validator(resource_type: str | None) -> Draft6Validator:
    schema = dict(_schema())
    if resource_type is not None:
        # Against one definition the messages name the element; against the whole schema
        # they only say that no branch of its resourceType `oneOf` matched.
        schema.pop("oneOf", None)
        schema["$ref"] = f"#/definitions/{resource_type}"
    return Draft6Validator(schema)


def fhir_errors(resource: dict) -> list[str]:
    """Why `resource` is not valid FHIR R4 JSON (empty when it is)."""
    if not list(_validator(None).iter_errors(resource)):
        return []
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    errors = _validator(kind if isinstance(kind, str) else None).iter_errors(resource)
    found = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors]
    return found or ["not valid against the schema's resourceType oneOf"]


def assert_fhir(resource: dict) -> dict:
    """Assert that `resource` validates against the FHIR R4 JSON Schema; returns it."""
    assert fhir_errors(resource) == []
    return resource
