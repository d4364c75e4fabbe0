"""Whole patient records cut down to what the mapping can read, before any validation.

A record exported from an EHR holds thousands of resources the model never reads (claims,
encounters, immunisations, vital signs, other diagnoses and medicines). Validating each with
fhir.resources cost about 0.5 ms, 3.7 s for a 10 MB record of 14,000 resources; their JSON is
checked here against the mapping's codes instead, and only the entries that could supply a
field (or a conflict the rules name) are passed on to be validated and mapped, which keeps a
10 MB record under 2 s and its memory to the parsed JSON (tests/serving/test_records.py).

Kept: every Patient and ServiceRequest; Conditions, Observations, Procedures, medication
records and Medications whose code matches a concept of the mapping (by code or by its text
patterns, as the mapping itself matches), Conditions that code another cancer
(serving/record_rules.py), medication records that reference a Medication, and any entry
whose shape is not what this check can read (so that validation still reports it). Resource
types the mapping does not read are dropped, as the mapping would pass them over.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from serving.fhir.codes import FhirMapping, default_mapping
from serving.fhir.parsing import READ_RESOURCE_TYPES, read_json

__all__ = ["read_record", "relevant_entries", "restore_locations"]

_ALWAYS = ("Patient", "ServiceRequest")
_MEDICATION_RECORDS = ("MedicationStatement", "MedicationRequest")


class _Unreadable(Exception):
    """An element this check cannot read: the entry is kept for validation to judge."""


def _concept(raw: Any) -> SimpleNamespace:
    """A CodeableConcept's JSON as the attributes `Concept.match` reads."""
    if raw is None:
        return SimpleNamespace(coding=[], text=None)
    if not isinstance(raw, dict):
        raise _Unreadable
    codings = raw.get("coding") or []
    text = raw.get("text")
    if not isinstance(codings, list) or not (text is None or isinstance(text, str)):
        raise _Unreadable
    parsed = []
    for coding in codings:
        if not isinstance(coding, dict):
            raise _Unreadable
        values = [coding.get(k) for k in ("system", "code", "display")]
        if any(v is not None and not isinstance(v, str) for v in values):
            raise _Unreadable
        parsed.append(SimpleNamespace(system=values[0], code=values[1], display=values[2]))
    return SimpleNamespace(coding=parsed, text=text)


def _concepts_by_type(mapping: FhirMapping) -> dict[str, list]:
    procedures = [
        *mapping.procedures.values(),
        *mapping.modalities.values(),
        mapping.unspecified_embolization,
    ]
    medications = list(mapping.medications.values())
    return {
        "Condition": [*mapping.conditions.values(), *mapping.site_diagnosis.values()],
        "Observation": list(mapping.observations.values()),
        "Procedure": procedures,
        "MedicationStatement": medications,
        "MedicationRequest": medications,
        "Medication": medications,
    }


def _code_of(resource: Mapping[str, Any]) -> Any:
    if resource["resourceType"] in _MEDICATION_RECORDS:
        return resource.get("medicationCodeableConcept")
    return resource.get("code")


def _is_relevant(resource: Mapping[str, Any], concepts: dict[str, list], rules) -> bool:
    kind = resource["resourceType"]
    if kind in _ALWAYS:
        return True
    if kind in _MEDICATION_RECORDS and resource.get("medicationReference") is not None:
        return True
    try:
        code = _concept(_code_of(resource))
    except _Unreadable:
        return True
    if any(concept.match(code) for concept in concepts[kind]):
        return True
    return kind == "Condition" and rules.is_other_cancer(code)


def relevant_entries(
    raw: object, mapping: FhirMapping | None = None, rules=None
) -> tuple[object, Counter, list[int]]:
    """The Bundle with only the entries the mapping could read, what was dropped (by type),
    and the original position of each entry kept (see `restore_locations`).

    Anything that is not a Bundle with a list of entries is returned as it is, for the
    validation to refuse with its own messages.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("entry"), list):
        return raw, Counter(), []
    from serving.record_rules import default_rules

    mapping, rules = mapping or default_mapping(), rules or default_rules()
    concepts = _concepts_by_type(mapping)
    kept: list = []
    dropped: Counter[str] = Counter()
    positions: list = []
    for position, entry in enumerate(raw["entry"]):
        if isinstance(entry, _Dropped):
            dropped[entry.kind] += 1
            continue
        resource = entry.get("resource") if isinstance(entry, dict) else None
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        if (
            isinstance(resource, dict)
            and isinstance(kind, str)
            and (kind not in READ_RESOURCE_TYPES or not _is_relevant(resource, concepts, rules))
        ):
            dropped[kind] += 1
            continue
        kept.append(entry)
        positions.append(position)
    return {**raw, "entry": kept}, dropped, positions


class _Dropped:
    """An entry dropped while parsing: only its resource type is kept, for the count."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


def read_record(body: bytes, mapping: FhirMapping | None = None, rules=None) -> object:
    """A record's JSON, each entry the mapping cannot read dropped as soon as it is parsed.

    `json.loads` builds a JSON object only once its members are built, and hands it to the
    hook first; an entry whose resource the mapping cannot read is replaced there, so the
    memory of a whole record is never held at once: a 10 MB record peaked at about 10 MB of
    parsed objects instead of 57 MB (tests/serving/test_records.py). Invalid JSON raises
    `serving.fhir.read_json`'s FhirValidationError.
    """
    from serving.record_rules import default_rules

    concepts = _concepts_by_type(mapping or default_mapping())
    rules = rules or default_rules()

    def drop_unread(value: dict) -> object:
        resource = value.get("resource")
        if type(resource) is dict:
            kind = resource.get("resourceType")
            if type(kind) is str and (
                kind not in READ_RESOURCE_TYPES or not _is_relevant(resource, concepts, rules)
            ):
                return _Dropped(kind)
        return value

    try:
        return json.loads(body, object_hook=drop_unread)
    except (ValueError, UnicodeDecodeError):
        return read_json(body)


_LOCATION = re.compile(r"Bundle\.entry\[(\d+)\]")


def restore_locations(value: Any, positions: list[int]) -> Any:
    """`value` (provenance, issues, notes: dicts, lists, strings) with every
    `Bundle.entry[i]` of the cut-down Bundle replaced by the entry's place in the record."""
    if not positions:
        return value
    if isinstance(value, str):
        return _LOCATION.sub(lambda m: f"Bundle.entry[{positions[int(m.group(1))]}]", value)
    if isinstance(value, dict):
        return {k: restore_locations(v, positions) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(restore_locations(v, positions) for v in value)
    return value
