"""A whole patient record in, the mapped patient and what the conflict rules decided out.

The composition the FHIR route uses (serving/fhir/routes.py): the record cut down to what the
mapping reads (serving/record_filter.py), validated, the conflict rules applied
(serving/record_rules.py), mapped, and every location given back as the entry's place in
the record the caller sent.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import date
from typing import Any

from serving.fhir.errors import FhirInputError
from serving.fhir.mapper import MappedPatient, map_patient
from serving.fhir.parsing import parse_bundle
from serving.record_filter import read_record, relevant_entries, restore_locations
from serving.record_rules import RuleOutcome, apply_record_rules, observation_notes

__all__ = ["answer_fields", "map_record", "read_record"]

logger = logging.getLogger(__name__)


def map_record(raw: object, *, today: date | None = None) -> tuple[MappedPatient, RuleOutcome]:
    """The patient of a FHIR Bundle of any size, and the rules' warnings and set-asides.

    Raises
    ------
    FhirValidationError, FhirBundleIncomplete
        As `serving.fhir.patient_from_bundle`, with locations in the record as sent.
    """
    kept, dropped, positions = relevant_entries(raw)
    if dropped:
        logger.info(
            "FHIR record: %d resource(s) the mapping does not read were passed over",
            sum(dropped.values()),
        )
    try:
        ruled = apply_record_rules(parse_bundle(kept), today=today)
        mapped = map_patient(ruled.resources, today=today)
    except FhirInputError as error:
        issues = [
            dataclasses.replace(
                issue,
                message=restore_locations(issue.message, positions),
                expression=restore_locations(issue.expression, positions),
            )
            for issue in error.issues
        ]
        raise type(error)(issues) from None
    notes = observation_notes(ruled.resources, mapped.provenance)
    ruled.set_aside = restore_locations(ruled.set_aside + notes.set_aside, positions)
    ruled.warnings = restore_locations(ruled.warnings + notes.warnings, positions)
    provenance = restore_locations(mapped.provenance, positions)
    return dataclasses.replace(mapped, provenance=provenance), ruled


def answer_fields(result: Mapping[str, Any], ruled: RuleOutcome) -> dict:
    """The answer's `warnings` with the rules' added, and `set_aside`: what was not used."""
    return {
        "warnings": [*result.get("warnings", []), *ruled.warnings],
        "set_aside": list(ruled.set_aside),
    }
