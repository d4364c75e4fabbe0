"""FHIR R4 resources parsed and validated with fhir.resources (R4B models), values unquoted.

fhir.resources 8 ships R5 (default), R4B and STU3 but no longer R4. R4B (FHIR 4.3) leaves the
resources read here (Patient, Condition, Observation, Procedure, ServiceRequest,
MedicationStatement, MedicationRequest, Medication) as they are in R4 (4.0.1), so an R4 Bundle
validates unchanged; resources of any other type are passed over without validation, so that
an R4-only type elsewhere in a Bundle does not reject it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from serving.fhir.errors import FhirIssue, FhirValidationError

__all__ = [
    "FHIR_VERSION",
    "READ_RESOURCE_TYPES",
    "REQUIRED_BINDINGS",
    "FhirResource",
    "parse_bundle",
    "read_json",
    "validate_resources",
]

FHIR_VERSION = "4.0.1"
"""The FHIR release the input follows (validated with fhir.resources' R4B models)."""
READ_RESOURCE_TYPES = (
    "Patient",
    "Condition",
    "Observation",
    "Procedure",
    "ServiceRequest",
    "MedicationStatement",
    "MedicationRequest",
    "Medication",
)
"""The resource types the mapping reads, and so validates."""

# Required bindings (FHIR R4) of the coded elements the mapping reads: fhir.resources checks
# their type but not their value set, and a misspelt status would silently drop a resource.
REQUIRED_BINDINGS = {
    ("Patient", "gender"): ("male", "female", "other", "unknown"),
    ("Observation", "status"): tuple(
        "registered preliminary final amended corrected cancelled entered-in-error unknown".split()
    ),
    ("Procedure", "status"): tuple(
        "preparation in-progress not-done on-hold stopped completed entered-in-error "
        "unknown".split()
    ),
    ("ServiceRequest", "status"): tuple(
        "draft active on-hold revoked completed entered-in-error unknown".split()
    ),
    ("ServiceRequest", "intent"): tuple(
        "proposal plan directive order original-order reflex-order filler-order "
        "instance-order option".split()
    ),
    ("MedicationStatement", "status"): tuple(
        "active completed entered-in-error intended stopped on-hold unknown not-taken".split()
    ),
    ("MedicationRequest", "status"): tuple(
        "active on-hold cancelled completed entered-in-error stopped draft unknown".split()
    ),
}
_QUOTING_ERRORS = ("fhir-validation-wrong-resource-type",)


@dataclass(frozen=True)
class FhirResource:
    """A validated resource and where it was in the input."""

    model: Any
    location: str
    full_url: str | None = None

    @property
    def resource_type(self) -> str:
        return self.model.get_resource_type()

    @property
    def id(self) -> str | None:
        return self.model.id

    @property
    def label(self) -> str:
        """``Type/id`` or, without an id, the type and where it was."""
        if self.id:
            return f"{self.resource_type}/{self.id}"
        return f"{self.resource_type} at {self.location}"

    def reference(self, element: str | None = None) -> dict:
        """Where a value came from: type, id, location and element."""
        ref = {"resourceType": self.resource_type, "id": self.id, "location": self.location}
        if element is not None:
            ref["element"] = element
        return ref


def read_json(body: bytes) -> object:
    """The body as JSON; raises FhirValidationError (without quoting the body) otherwise."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FhirValidationError(
            [FhirIssue("structure", "the body must be JSON, but it could not be parsed")]
        ) from None


def parse_bundle(raw: object) -> list[FhirResource]:
    """Validate a FHIR R4 Bundle (JSON already parsed) and return the resources read.

    Raises
    ------
    FhirValidationError
        The input is not a Bundle, or the Bundle or a resource read is invalid; one issue per
        invalid element, naming the resource (type, id, entry) and the element.
    """
    if not isinstance(raw, dict) or raw.get("resourceType") != "Bundle":
        raise FhirValidationError(
            [
                FhirIssue(
                    "structure",
                    "the body must be a FHIR Bundle (a JSON object with resourceType "
                    "'Bundle'), but it is not; send the patient's resources as the entries "
                    "of one Bundle (type collection)",
                    expression="Bundle",
                )
            ]
        )
    entries = raw.get("entry")
    envelope = {key: value for key, value in raw.items() if key != "entry"}
    issues = _validated(get_fhir_model_class("Bundle"), envelope, "Bundle", "Bundle")[1]
    items = []
    if entries is not None and not isinstance(entries, list):
        issues.append(_issue("structure", "Bundle.entry", "Bundle.entry", "must be a list"))
        entries = []
    for index, entry in enumerate(entries or []):
        where = f"Bundle.entry[{index}]"
        if not isinstance(entry, dict):
            issues.append(_issue("structure", f"entry {index}", where, "must be an object"))
            continue
        entry_fields = {key: value for key, value in entry.items() if key != "resource"}
        issues += _validated(
            get_fhir_model_class("BundleEntry"), entry_fields, f"entry {index}", where
        )[1]
        if "resource" in entry:
            items.append((f"{where}.resource", entry["resource"], entry.get("fullUrl")))
    try:
        resources = validate_resources(items)
    except FhirValidationError as error:
        issues += error.issues
        resources = []
    if issues:
        raise FhirValidationError(issues)
    return resources


def validate_resources(items: Iterable[tuple[str, object, str | None]]) -> list[FhirResource]:
    """Validate resources with fhir.resources' R4B models.

    Parameters
    ----------
    items : iterable of (location, resource JSON, fullUrl or None)
        The resources and where they were (for messages and provenance).

    Returns
    -------
    list of FhirResource
        The resources of the types the mapping reads; others are passed over.

    Raises
    ------
    FhirValidationError
        One issue per invalid element, for every invalid resource.
    """
    resources, issues = [], []
    for location, raw, full_url in items:
        if not isinstance(raw, dict) or not isinstance(raw.get("resourceType"), str):
            issues.append(
                _issue("structure", location, location, "must be a resource with a resourceType")
            )
            continue
        kind = raw["resourceType"]
        if kind not in READ_RESOURCE_TYPES:
            continue
        name = _resource_name(kind, raw, location)
        model, found = _validated(get_fhir_model_class(kind), raw, name, location)
        if found:
            issues += found
            continue
        resource = FhirResource(model, location, full_url)
        binding_issues = _binding_issues(resource, name)
        if binding_issues:
            issues += binding_issues
            continue
        resources.append(resource)
    if issues:
        raise FhirValidationError(issues)
    return resources


def _resource_name(kind: str, raw: Mapping[str, Any], location: str) -> str:
    identifier = raw.get("id")
    if isinstance(identifier, str) and re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", identifier):
        return f"{kind}/{identifier} ({location})"
    return f"{kind} ({location})"


def _validated(model_class, raw: Mapping[str, Any], name: str, location: str) -> tuple:
    """The validated model, or None and its errors as issues (without the input values)."""
    try:
        return model_class.model_validate(raw), []
    except ValidationError as error:
        return None, [
            _issue(
                "invalid",
                name,
                _path(location, e["loc"]),
                _safe_message(e),
                element=_element(e["loc"]),
            )
            for e in error.errors(include_url=False)
        ]
    except (ValueError, TypeError, KeyError):
        # fhir.resources raises plain errors for a few malformed nestings (e.g. an unknown
        # resourceType inside `contained`); their text may quote the input.
        return None, [_issue("structure", name, location, "is not a valid FHIR R4 resource")]


def _binding_issues(resource: FhirResource, name: str) -> list[FhirIssue]:
    issues = []
    for (kind, element), allowed in REQUIRED_BINDINGS.items():
        if kind != resource.resource_type:
            continue
        value = getattr(resource.model, element, None)
        if value is not None and value not in allowed:
            issues.append(
                _issue(
                    "code-invalid",
                    name,
                    f"{resource.location}.{element}",
                    f"must be one of {', '.join(allowed)} (FHIR R4 required binding), but "
                    "is another code",
                    element=element,
                )
            )
    return issues


def _issue(code: str, name: str, where: str, must: str, element: str | None = None) -> FhirIssue:
    subject = f"{name}: element {element}" if element else name
    return FhirIssue(code, f"{subject} {must}", expression=where)


def _element(loc: Sequence[Any]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int) and parts:
            parts[-1] += f"[{part}]"
        else:
            parts.append(str(part))
    return ".".join(parts) or "(the resource itself)"


def _path(location: str, loc: Sequence[Any]) -> str:
    element = _element(loc)
    return location if element.startswith("(") else f"{location}.{element}"


def _safe_message(error: Mapping[str, Any]) -> str:
    """pydantic's message for one error, unless it might quote the input.

    pydantic keeps the input out of its own messages; fhir.resources' custom errors may not
    (the wrong-resource-type one quotes the type given), so those, and any message that
    contains the input, are replaced by the error's type.
    """
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    value = error.get("input")
    generic = f"is not valid ({error.get('type', 'invalid')})"
    if error.get("type") in _QUOTING_ERRORS:
        message = generic
    elif isinstance(value, str | int | float | Decimal) and not isinstance(value, bool):
        text = str(value)
        if text and text in message:
            message = generic
    return f"must be valid FHIR R4: {message[:1].lower()}{message[1:]}"
