"""FHIR R4 input: a Bundle (or CDS Hooks prefetch) mapped to the one `Patient`, field by field.

The package's parts, in the order a request meets them: `codes` (the code table of
`data/fhir_mapping.yaml`), `parsing` (validation with fhir.resources), `mapper` and one module
per resource type (the patient and where each field came from), `errors` (one issue per
problem, never quoting a value); the route `POST /v1/fhir/prognosis` is `serving.fhir.routes`,
imported from there (this package's names are the mapping's only, so that the record layer
under the route can use them without importing the route back). Written by hand
because no library maps clinical FHIR resources to a model's features; the parsing and
validation are fhir.resources'.
"""

from __future__ import annotations

from serving.fhir.codes import MAPPING_PATH, FhirMapping, default_mapping, mapping_table
from serving.fhir.errors import FhirBundleIncomplete, FhirInputError, FhirIssue, FhirValidationError
from serving.fhir.mapper import MappedPatient, map_patient, patient_from_bundle
from serving.fhir.parsing import (
    FHIR_VERSION,
    READ_RESOURCE_TYPES,
    FhirResource,
    parse_bundle,
    read_json,
    validate_resources,
)
from serving.fhir.plans import plans_embolization

__all__ = [
    "FHIR_VERSION",
    "MAPPING_PATH",
    "READ_RESOURCE_TYPES",
    "FhirBundleIncomplete",
    "FhirInputError",
    "FhirIssue",
    "FhirMapping",
    "FhirResource",
    "FhirValidationError",
    "MappedPatient",
    "default_mapping",
    "map_patient",
    "mapping_table",
    "parse_bundle",
    "patient_from_bundle",
    "plans_embolization",
    "read_json",
    "validate_resources",
]
