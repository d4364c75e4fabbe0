"""FHIR R4 input: a Bundle mapped to the one `Patient`, each field with the resource it came from.

Resources are parsed and validated with `fhir.resources` — its ``R4B`` models, because
fhir.resources 8 ships R5 (default), R4B and STU3 but no longer R4. R4B (FHIR 4.3) leaves the
resources read here (Patient, Condition, Observation, Procedure, ServiceRequest,
MedicationStatement, MedicationRequest, Medication) as they are in R4 (4.0.1), so an R4 Bundle
validates unchanged; resources of any other type are passed over without validation, so that
an R4-only type elsewhere in a Bundle does not reject it.

The codes that supply each patient field are data (`data/fhir_mapping.yaml`). How a Bundle
becomes a patient (docs/ehr-integration.md tells the same):

- **age_years**: completed years from `Patient.birthDate` to the *reference date*: the date of
  the planned embolotherapy (`Procedure.performed[x]`, `ServiceRequest.occurrence[x]`) when it
  has one, else the request date (UTC). A partial birth date (year, or year and month) is
  taken at the middle of its period.
- **sex**: `Patient.gender` male or female; other and unknown leave it empty.
- **primary_site**: from the NET diagnosis Condition (required): its body site, else its code,
  else the text of either; a diagnosis with no recognisable site is an unknown primary, which
  the model counts as "other".
- **liver metastases** (required, the model's population) and **extrahepatic_metastases**:
  Conditions that are confirmed (or carry no verification status) and active; a refuted
  Condition is recorded evidence of absence. No Condition: no extrahepatic metastases.
- **ki67_percent**, **who_grade**, **tumor_burden_percent**: the most recent final, amended or
  corrected Observation of each; Ki-67 or the grade is required, and the burden.
- **prior_hepatic_treatment**, **primary_resected**: a completed Procedure on or before the
  reference date; none: no prior hepatic treatment, and resection of the primary unknown.
- **planned_modality**: the embolotherapy a Procedure in preparation or a draft or active
  ServiceRequest plans.
- **somatostatin_analog**, **biologic_therapy**, **cytotoxic_chemotherapy**: a
  MedicationStatement or MedicationRequest (or the Medication it references) in a status that
  means taken or prescribed; none: not given.

Written by hand because no library maps clinical FHIR resources to a model's features; the
parsing and validation are fhir.resources'.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import anyio.to_thread
import bentoml
import yaml
from fastapi import Depends, FastAPI, Request
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.operationoutcome import OperationOutcome
from pydantic import ValidationError
from starlette.responses import JSONResponse, Response

from model.exceptions import ModelError
from model.schema import Patient
from serving.exceptions import ServingError
from serving.risk_assessment import prognosis_bundle, wants_fhir

__all__ = [
    "EXAMPLE_BUNDLE",
    "FHIR_MEDIA_TYPES",
    "FHIR_VERSION",
    "MAPPING_PATH",
    "READ_RESOURCE_TYPES",
    "ROUTE_FHIR_PROGNOSIS",
    "FhirBundleIncomplete",
    "FhirInputError",
    "FhirIssue",
    "FhirMapping",
    "FhirResource",
    "FhirValidationError",
    "MappedPatient",
    "audit_payload",
    "audited_prognosis",
    "default_mapping",
    "fhir_app",
    "map_patient",
    "mapping_table",
    "parse_bundle",
    "patient_from_bundle",
    "plans_embolization",
    "validate_resources",
]

logger = logging.getLogger(__name__)

FHIR_VERSION = "4.0.1"
"""The FHIR release the input follows (validated with fhir.resources' R4B models)."""
MAPPING_PATH = Path(__file__).resolve().parents[1] / "data" / "fhir_mapping.yaml"
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
_REQUIRED_BINDINGS = {
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
_OBSERVATION_STATUSES = ("final", "amended", "corrected")
_PLANNED_PROCEDURE_STATUSES = ("preparation",)
_PLANNED_REQUEST_STATUSES = ("draft", "active")
_PLANNED_REQUEST_INTENTS = _REQUIRED_BINDINGS["ServiceRequest", "intent"][:-1]
_MEDICATION_STATUSES = {
    "MedicationStatement": ("active", "completed", "stopped", "on-hold", "intended"),
    "MedicationRequest": ("active", "completed", "stopped", "on-hold"),
}
_QUOTING_ERRORS = ("fhir-validation-wrong-resource-type",)
_PRESENT_CLINICAL = (None, "active", "recurrence", "relapse")
_CONFIRMED = (None, "confirmed")
_SUBJECT_TYPES = tuple(t for t in READ_RESOURCE_TYPES if t not in ("Patient", "Medication"))
"""The read resource types that refer to the patient through `subject`."""


# --- errors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FhirIssue:
    """One problem with a FHIR input, worded without any of its values.

    Attributes
    ----------
    code : str
        The OperationOutcome issue type: structure, invalid, value, required, code-invalid
        or conflict.
    message : str
        What must hold, what was found (never a value) and what would fix it.
    field : str, optional
        The patient field concerned.
    expression : str, optional
        Where, as a FHIRPath-like location (``Bundle.entry[3].resource.valueQuantity``).
    codes : tuple of dict
        For a missing item, the codings that would supply it (``system``, ``code``,
        ``display``).
    """

    code: str
    message: str
    field: str | None = None
    expression: str | None = None
    codes: tuple[dict, ...] = ()

    def outcome_issue(self) -> dict:
        """The issue as an OperationOutcome.issue element."""
        issue: dict[str, Any] = {
            "severity": "error",
            "code": self.code,
            "diagnostics": self.message,
        }
        details: dict[str, Any] = {}
        if self.field is not None:
            details["text"] = self.field
        if self.codes:
            details["coding"] = [dict(c) for c in self.codes]
        if details:
            issue["details"] = details
        if self.expression is not None:
            issue["expression"] = [self.expression]
        return issue


class FhirInputError(ServingError):
    """A FHIR input the service cannot turn into a patient; `issues` says why, item by item."""

    status_code = 400
    summary = "the FHIR input is invalid"

    def __init__(self, issues: Sequence[FhirIssue]):
        self.issues = tuple(issues)
        super().__init__(
            f"{self.summary} ({len(self.issues)} issue(s)): "
            + "; ".join(issue.message for issue in self.issues)
        )

    def operation_outcome(self) -> dict:
        """The issues as a FHIR OperationOutcome (validated with fhir.resources)."""
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [issue.outcome_issue() for issue in self.issues],
        }
        return OperationOutcome.model_validate(outcome).model_dump(mode="json", exclude_none=True)

    def kinds(self) -> str:
        """The issue types, for a log line that holds no value."""
        return ", ".join(sorted({issue.code for issue in self.issues}))


class FhirValidationError(FhirInputError):
    """Resources that are not valid FHIR R4: each issue names the resource and the element."""

    status_code = 400
    summary = "the FHIR resources are not valid FHIR R4"


class FhirBundleIncomplete(FhirInputError):
    """Valid FHIR that lacks, contradicts or exceeds what the patient needs (one issue each)."""

    status_code = 422
    summary = "the FHIR resources do not describe a patient the model can answer for"


# --- the code table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeRule:
    """One code of the table: a coding matches when its system and code agree."""

    system: str
    code: str
    display: str
    prefix: bool = False
    dotless: bool = False

    def matches(self, system: str | None, code: str | None) -> bool:
        if system != self.system or not code:
            return False
        wanted, given = self.code, code.strip()
        if self.dotless:
            wanted, given = wanted.replace(".", "").upper(), given.replace(".", "").upper()
        return given.startswith(wanted) if self.prefix else given == wanted

    def coding(self) -> dict:
        """The code as a FHIR Coding (for messages and docs)."""
        return {"system": self.system, "code": self.code, "display": self.display}


@dataclass(frozen=True)
class ConceptMatch:
    """How a CodeableConcept matched a concept: by which coding, or by its text."""

    kind: str
    system: str | None = None
    code: str | None = None
    display: str | None = None

    def provenance(self) -> dict:
        if self.kind == "text":
            return {"match": "text"}
        return {"match": "code", "system": self.system, "code": self.code, "display": self.display}


@dataclass(frozen=True)
class Concept:
    """A concept of the table: the codes and text patterns that supply it."""

    name: str
    label: str
    codes: tuple[CodeRule, ...]
    text: tuple[re.Pattern, ...] = ()

    def match_code(self, concepts: Iterable[Any]) -> ConceptMatch | None:
        """The first coding of `concepts` (CodeableConcepts) that a code of the table matches."""
        for concept in concepts:
            for coding in _codings(concept):
                for rule in self.codes:
                    if rule.matches(coding.system, coding.code):
                        return ConceptMatch("code", coding.system, coding.code, rule.display)
        return None

    def match_text(self, concepts: Iterable[Any]) -> ConceptMatch | None:
        """A match of the text patterns on the concepts' text or codings' display."""
        for concept in concepts:
            for text in _texts(concept):
                if any(pattern.search(text) for pattern in self.text):
                    return ConceptMatch("text")
        return None

    def match(self, *concepts: Any) -> ConceptMatch | None:
        """A code match if any, else a text match, else None."""
        present = [c for c in concepts if c is not None]
        return self.match_code(present) or self.match_text(present)

    def codings(self) -> tuple[dict, ...]:
        return tuple(rule.coding() for rule in self.codes)


@dataclass(frozen=True)
class ObservationConcept(Concept):
    """An Observation concept, with its unit and (for the grade) the codes of its values."""

    unit: str | None = None
    values: Mapping[str, Concept] = field(default_factory=dict)


class FhirMapping:
    """The code table of `data/fhir_mapping.yaml`, compiled.

    Parameters
    ----------
    document : dict
        The parsed YAML document.
    """

    def __init__(self, document: Mapping[str, Any]):
        self.systems: dict[str, str] = dict(document["systems"])
        self.dotless = frozenset(self.systems[key] for key in document.get("dotless_systems", ()))
        self.conditions = {
            name: self._concept(name, spec) for name, spec in document["conditions"].items()
        }
        sites = document["primary_site"]
        self.site_body = {
            site: self._concept(site, {"codes": codes})
            for site, codes in sites["body_site"].items()
        }
        self.site_diagnosis = {
            site: self._concept(site, {"codes": codes})
            for site, codes in sites["diagnosis"].items()
        }
        self.site_text = {
            site: self._concept(site, {"text": patterns})
            for site, patterns in sites["text"].items()
        }
        self.observations = {
            name: self._observation(name, spec) for name, spec in document["observations"].items()
        }
        procedures = dict(document["procedures"])
        planned = procedures.pop("planned_modality")
        self.procedures = {name: self._concept(name, spec) for name, spec in procedures.items()}
        self.modalities = {
            name: self._concept(name, spec) for name, spec in planned["modalities"].items()
        }
        self.unspecified_embolization = self._concept("embolization", planned["unspecified"])
        self.medications = {
            name: self._concept(name, spec) for name, spec in document["medications"].items()
        }

    @classmethod
    def load(cls, path: Path = MAPPING_PATH) -> FhirMapping:
        """Read and compile a mapping file."""
        return cls(yaml.safe_load(Path(path).read_text(encoding="utf-8")))

    def _rule(self, spec: Mapping[str, Any]) -> CodeRule:
        system = self.systems[spec["system"]]
        return CodeRule(
            system=system,
            code=str(spec["code"]),
            display=str(spec["display"]),
            prefix=bool(spec.get("prefix", False)),
            dotless=system in self.dotless,
        )

    def _concept(self, name: str, spec: Mapping[str, Any]) -> Concept:
        rules = [self._rule(s) for s in spec.get("codes", ())]
        return Concept(
            name=name,
            label=str(spec.get("label", name)),
            # exact codes first, so that a coding is credited to its own row, not to a class
            codes=tuple(sorted(rules, key=lambda rule: rule.prefix)),
            text=tuple(re.compile(p, re.IGNORECASE) for p in spec.get("text", ())),
        )

    def _observation(self, name: str, spec: Mapping[str, Any]) -> ObservationConcept:
        base = self._concept(name, spec)
        value_text = spec.get("value_text", {})
        values = {
            value: self._concept(value, {"codes": codes, "text": value_text.get(value, ())})
            for value, codes in spec.get("values", {}).items()
        }
        return ObservationConcept(
            name=base.name,
            label=base.label,
            codes=base.codes,
            text=base.text,
            unit=spec.get("unit"),
            values=values,
        )

    def rows(self) -> list[dict]:
        """Every code of the table, one row each: what it supplies, from which resource."""
        rows = []

        def add(supplies: str, resource: str, concept: Concept) -> None:
            rows.extend(
                {"supplies": supplies, "resource": resource, **rule.coding(), "prefix": rule.prefix}
                for rule in concept.codes
            )

        for name, concept in self.conditions.items():
            add(name, "Condition.code", concept)
        for site, concept in self.site_body.items():
            add(f"primary_site = {site}", "Condition.bodySite", concept)
        for site, concept in self.site_diagnosis.items():
            add(f"primary_site = {site}", "Condition.code", concept)
        for name, concept in self.observations.items():
            add(name, "Observation.code", concept)
            for value, value_concept in concept.values.items():
                add(f"{name} = {value}", "Observation.valueCodeableConcept", value_concept)
        for name, concept in self.procedures.items():
            add(name, "Procedure.code", concept)
        for modality, concept in self.modalities.items():
            add(f"planned_modality = {modality}", "Procedure.code / ServiceRequest.code", concept)
        add(
            "planned embolization, modality unknown",
            "Procedure.code / ServiceRequest.code",
            self.unspecified_embolization,
        )
        for name, concept in self.medications.items():
            add(name, "MedicationStatement / MedicationRequest / Medication .code", concept)
        return rows


def mapping_table(mapping: FhirMapping | None = None) -> str:
    """The code table as the markdown table of docs/ehr-integration.md (a test compares them);
    a code ending in ``*`` matches every code that starts with it.

    Regenerate the documentation's table with
    ``python -c "from serving.fhir import mapping_table; print(mapping_table())"``.
    """
    rows = (mapping or default_mapping()).rows()
    lines = ["| supplies | FHIR element | system | code | display |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['supplies']} | {r['resource']} | {_system_name(r['system'])} | "
        f"`{r['code']}{'*' if r['prefix'] else ''}` | "
        f"{r['display']} |"
        for r in rows
    ]
    return "\n".join(lines)


@functools.cache
def default_mapping() -> FhirMapping:
    """The mapping of `data/fhir_mapping.yaml`, read once."""
    return FhirMapping.load()


# --- parsing and validation --------------------------------------------------------------------


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
    for (kind, element), allowed in _REQUIRED_BINDINGS.items():
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
    parts = []
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


# --- mapping -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappedPatient:
    """A patient mapped from FHIR, with the provenance of every field.

    Attributes
    ----------
    patient : Patient
        The patient.
    provenance : dict
        For every patient field, where its value came from: ``source`` is "resource" (with
        ``resourceType``, ``id``, ``location``, ``element`` and the matching ``system``/``code``
        or ``"match": "text"``), "derived" (computed from a resource), "default" (no resource
        said otherwise) or "absent" (left empty).
    reference_date : date
        The date the age is computed at.
    """

    patient: Patient
    provenance: dict[str, dict]
    reference_date: date


def patient_from_bundle(
    raw: object, *, mapping: FhirMapping | None = None, today: date | None = None
) -> MappedPatient:
    """The patient a FHIR R4 Bundle describes.

    Parameters
    ----------
    raw : object
        The Bundle as parsed JSON.
    mapping : FhirMapping, optional
        The code table; default `data/fhir_mapping.yaml`.
    today : date, optional
        The request date, the reference date when no planned embolotherapy has a date;
        default today (UTC).

    Raises
    ------
    FhirValidationError
        Invalid FHIR (400).
    FhirBundleIncomplete
        Valid FHIR lacking or contradicting what the patient needs (422), one issue per item.
    """
    return map_patient(parse_bundle(raw), mapping=mapping, today=today)


def map_patient(
    resources: Sequence[FhirResource],
    *,
    mapping: FhirMapping | None = None,
    today: date | None = None,
    planned: Sequence[FhirResource] | None = None,
) -> MappedPatient:
    """Map validated resources to the patient (see the module docstring for the rules).

    Parameters
    ----------
    resources : sequence of FhirResource
        The patient's resources.
    mapping : FhirMapping, optional
        The code table; default `data/fhir_mapping.yaml`.
    today : date, optional
        The request date; default today (UTC).
    planned : sequence of FhirResource, optional
        When given, only these resources are read for the planned embolotherapy (a CDS Hooks
        order being signed), instead of the planned Procedures and ServiceRequests among
        `resources`.

    Raises
    ------
    FhirBundleIncomplete
        One issue per missing, conflicting or out-of-range item.
    """
    mapper = _Mapper(
        resources, mapping or default_mapping(), today or datetime.now(UTC).date(), planned
    )
    return mapper.run()


def plans_embolization(
    resources: Sequence[FhirResource], mapping: FhirMapping | None = None
) -> bool:
    """Whether any of `resources` is a planned embolization (of known modality or not)."""
    mapping = mapping or default_mapping()
    concepts = [*mapping.modalities.values(), mapping.unspecified_embolization]
    return any(
        _is_planned(resource) and any(c.match(resource.model.code) for c in concepts)
        for resource in resources
    )


@dataclass
class _Found:
    """A value read from a resource, with where it came from."""

    value: Any
    provenance: dict


class _Mapper:
    """One mapping run: reads the resources field by field, collecting issues as it goes."""

    def __init__(self, resources, mapping: FhirMapping, today: date, planned) -> None:
        self.mapping = mapping
        self.today = today
        self.issues: list[FhirIssue] = []
        self.ignored: dict[str, list[str]] = {}
        self.fields: dict[str, Any] = {}
        self.provenance: dict[str, dict] = {}
        self.reference_date_from: dict | str = ""
        self.by_reference = _reference_index(resources)
        patients = [r for r in resources if r.resource_type == "Patient"]
        self.patient = self._one_patient(patients)
        self.resources = [r for r in resources if self._about_patient(r)]
        self.planned_candidates = (
            list(planned) if planned is not None else self._of_type("Procedure", "ServiceRequest")
        )

    def run(self) -> MappedPatient:
        planned = self._planned_modality()
        reference_date = self._reference_date(planned)
        self._demographics(reference_date)
        self._conditions()
        self._observations()
        self._procedures(reference_date)
        self._medications()
        if self.issues:
            raise FhirBundleIncomplete(self.issues)
        try:
            patient = Patient(**self.fields)
        except ValidationError as error:
            raise FhirBundleIncomplete(self._patient_issues(error)) from None
        return MappedPatient(patient, self.provenance, reference_date)

    # resources and references

    def _of_type(self, *kinds: str) -> list[FhirResource]:
        return [r for r in self.resources if r.resource_type in kinds]

    def _one_patient(self, patients: list[FhirResource]) -> FhirResource | None:
        if len(patients) > 1:
            self.issues.append(
                FhirIssue(
                    "conflict",
                    f"the input must describe one patient, but it holds {len(patients)} "
                    f"Patient resources ({', '.join(p.label for p in patients)}); send one "
                    "patient's resources at a time",
                    field="age_years",
                    expression="Patient",
                )
            )
        return patients[0] if patients else None

    def _about_patient(self, resource: FhirResource) -> bool:
        """False for a resource whose subject is another patient (it is then ignored)."""
        if self.patient is None or resource.resource_type not in _SUBJECT_TYPES:
            return True
        subject = getattr(resource.model, "subject", None)
        reference = getattr(subject, "reference", None)
        if not reference:
            return True
        names = {self.patient.full_url} if self.patient.full_url else set()
        if self.patient.id:
            names.add(f"Patient/{self.patient.id}")
        if (
            not names
            or reference in names
            or any(reference.endswith("/" + n) for n in names if n.startswith("Patient/"))
        ):
            return True
        self._ignore("subject", f"{resource.label} (its subject is another patient)")
        return False

    def _ignore(self, concept: str, why: str) -> None:
        self.ignored.setdefault(concept, []).append(why)

    def _ignored_text(self, *concepts: str) -> str:
        notes = [note for c in concepts for note in self.ignored.get(c, ())]
        notes += self.ignored.get("subject", [])
        return f" (ignored: {'; '.join(notes)})" if notes else ""

    def _missing(self, field_name: str, what: str, codes: Iterable[dict], *concepts: str) -> None:
        if any(issue.field in concepts for issue in self.issues):
            return  # a resource that would supply it has a value issue, which says more
        codes = tuple(codes)
        listed = ", ".join(
            f"{_system_name(c['system'])} {c['code']} ({c['display']})" for c in codes
        )
        self.issues.append(
            FhirIssue(
                "required",
                f"{field_name}: {what}{self._ignored_text(*concepts)}; codes that supply it: "
                f"{listed}",
                field=field_name,
                expression="Bundle",
                codes=codes,
            )
        )

    def _set(self, name: str, value: Any, provenance: dict) -> None:
        self.fields[name] = value
        self.provenance[name] = provenance

    # Patient

    def _demographics(self, reference_date: date) -> None:
        patient = self.patient
        birth = getattr(patient.model, "birthDate", None) if patient else None
        if birth is None:
            self.issues.append(
                FhirIssue(
                    "required",
                    "age_years: the input must hold a Patient resource with a birthDate, but "
                    + ("has no Patient" if patient is None else f"{patient.label} has none")
                    + "; add Patient.birthDate (the age is computed at the reference date)",
                    field="age_years",
                    expression="Patient.birthDate",
                )
            )
        else:
            born, partial = _birth_date(birth)
            provenance = {
                "source": "derived",
                **patient.reference("birthDate"),
                "derivation": "completed years from birthDate to the reference date",
                "reference_date": reference_date.isoformat(),
                "reference_date_from": self.reference_date_from,
            }
            if partial:
                provenance["note"] = "birthDate is partial: taken at the middle of its period"
            self._set("age_years", _completed_years(born, reference_date), provenance)
        gender = getattr(patient.model, "gender", None) if patient else None
        if gender in ("female", "male"):
            self._set("sex", gender, {"source": "resource", **patient.reference("gender")})
        else:
            self._set(
                "sex", None, {"source": "absent", "note": "Patient.gender is not male or female"}
            )

    # Condition

    def _conditions(self) -> None:
        conditions = self._of_type("Condition")
        concepts = self.mapping.conditions
        diagnoses = [
            (c, m) for c in conditions if (m := self._diagnosis_match(c, concepts["net_diagnosis"]))
        ]
        if not diagnoses:
            self._missing(
                "primary_site",
                "the input must hold a Condition coding a neuroendocrine tumour diagnosis (the "
                "primary site is read from it), but has none",
                concepts["net_diagnosis"].codings(),
                "net_diagnosis",
            )
        else:
            self._primary_site(diagnoses)
        liver = self._metastases(conditions, concepts["liver_metastases"])
        if liver is None or liver.value is not True:
            self._missing(
                "liver_metastases",
                "the model is for liver metastases of a neuroendocrine tumour: the input must "
                "hold a confirmed, active Condition coding them, but has none",
                concepts["liver_metastases"].codings(),
                "liver_metastases",
            )
        extrahepatic = self._metastases(conditions, concepts["extrahepatic_metastases"])
        if extrahepatic is None:
            extrahepatic = _Found(
                False,
                {
                    "source": "default",
                    "note": "no Condition codes extrahepatic metastases: assumed none",
                },
            )
        self._set("extrahepatic_metastases", extrahepatic.value, extrahepatic.provenance)

    def _diagnosis_match(self, condition: FhirResource, concept: Concept) -> ConceptMatch | None:
        match = concept.match(condition.model.code)
        if match is None:
            return None
        verification = _status_code(condition.model.verificationStatus)
        if verification in ("refuted", "entered-in-error"):
            self._ignore("net_diagnosis", f"{condition.label} (verification status {verification})")
            return None
        return match

    def _primary_site(self, diagnoses: list[tuple[FhirResource, ConceptMatch]]) -> None:
        sites = {}
        for condition, _ in diagnoses:
            found = self._site_of(condition)
            if found is not None:
                sites.setdefault(found.value, found)
        if len(sites) > 1:
            where = ", ".join(
                f"{f.provenance['resourceType']}/{f.provenance['id']}" for f in sites.values()
            )
            self.issues.append(
                FhirIssue(
                    "conflict",
                    "primary_site: the neuroendocrine tumour diagnoses must agree on one "
                    f"primary site, but {len(sites)} different sites are coded (in "
                    f"{where}); "
                    "mark the wrong ones entered-in-error or refuted",
                    field="primary_site",
                    expression="Condition",
                )
            )
            return
        if sites:
            found = next(iter(sites.values()))
            self._set("primary_site", found.value, found.provenance)
            return
        condition, match = diagnoses[0]
        self._set(
            "primary_site",
            "other",
            {
                "source": "derived",
                **condition.reference("code"),
                **match.provenance(),
                "note": "the diagnosis records no recognisable primary site: an unknown "
                "primary counts as other",
            },
        )

    def _site_of(self, condition: FhirResource) -> _Found | None:
        body_sites = condition.model.bodySite or []
        code = condition.model.code
        attempts = (
            (self.mapping.site_body, "match_code", body_sites, "bodySite"),
            (self.mapping.site_diagnosis, "match_code", [code], "code"),
            (self.mapping.site_text, "match_text", body_sites, "bodySite"),
            (self.mapping.site_text, "match_text", [code], "code"),
        )
        for table, method, concepts, element in attempts:
            present = [c for c in concepts if c is not None]
            for site, concept in table.items():
                match = getattr(concept, method)(present)
                if match is not None:
                    provenance = {"source": "resource", **condition.reference(element)}
                    return _Found(site, {**provenance, **match.provenance()})
        return None

    def _metastases(self, conditions: list[FhirResource], concept: Concept) -> _Found | None:
        """True from a present Condition, False from a refuted one, None when none codes it."""
        refuted = None
        for condition in conditions:
            match = concept.match(condition.model.code)
            if match is None:
                continue
            verification = _status_code(condition.model.verificationStatus)
            clinical = _status_code(condition.model.clinicalStatus)
            provenance = {"source": "resource", **condition.reference("code"), **match.provenance()}
            if verification == "refuted":
                refuted = refuted or _Found(False, {**provenance, "verificationStatus": "refuted"})
            elif verification not in _CONFIRMED:
                self._ignore(concept.name, f"{condition.label} (not confirmed)")
            elif clinical not in _PRESENT_CLINICAL:
                self._ignore(concept.name, f"{condition.label} (clinical status not active)")
            else:
                return _Found(True, provenance)
        return refuted

    # Observation

    def _observations(self) -> None:
        observations = self._of_type("Observation")
        concepts = self.mapping.observations
        found = {name: self._latest(observations, concept) for name, concept in concepts.items()}
        ki67, grade, burden = (
            found["ki67_percent"],
            found["who_grade"],
            found["tumor_burden_percent"],
        )
        if ki67 is None and grade is None:
            self._missing(
                "who_grade or ki67_percent",
                "the input must hold a final Observation of the Ki-67 index or of the WHO grade, "
                "but has neither",
                (*concepts["ki67_percent"].codings(), *concepts["who_grade"].codings()),
                "ki67_percent",
                "who_grade",
            )
        if burden is None:
            self._missing(
                "tumor_burden_percent",
                "the input must hold a final Observation of the hepatic tumour burden (% of "
                "liver volume), but has none",
                concepts["tumor_burden_percent"].codings(),
                "tumor_burden_percent",
            )
        for name, value in (("ki67_percent", ki67), ("who_grade", grade)):
            if value is None:
                self._set(name, None, {"source": "absent", "note": _ABSENT_NOTES[name]})
            else:
                self._set(name, value.value, value.provenance)
        if burden is not None:
            self._set("tumor_burden_percent", burden.value, burden.provenance)

    def _latest(
        self, observations: list[FhirResource], concept: ObservationConcept
    ) -> _Found | None:
        candidates = []
        for position, observation in enumerate(observations):
            match = concept.match(observation.model.code)
            if match is None:
                continue
            if observation.model.status not in _OBSERVATION_STATUSES:
                self._ignore(
                    concept.name, f"{observation.label} (status not final, amended or corrected)"
                )
                continue
            value = self._observation_value(observation, concept)
            if value is not None:
                provenance = {
                    "source": "resource",
                    **observation.reference(value[1]),
                    **match.provenance(),
                    **value[2],
                }
                candidates.append(
                    (
                        _date_key(_observation_date(observation.model)),
                        position,
                        _Found(value[0], provenance),
                    )
                )
        return max(candidates, key=lambda c: c[:2])[2] if candidates else None

    def _observation_value(
        self, observation: FhirResource, concept: ObservationConcept
    ) -> tuple[Any, str, dict] | None:
        model = observation.model
        if concept.values:
            value = model.valueCodeableConcept
            for grade, value_concept in concept.values.items():
                if value is not None and (value_match := value_concept.match(value)):
                    return grade, "valueCodeableConcept", _value_provenance(value_match)
                if model.valueString and value_concept.match_text([_TextOnly(model.valueString)]):
                    return grade, "valueString", {"value_match": "text"}
            self._ignore(concept.name, f"{observation.label} (no G1, G2 or G3 value)")
            return None
        quantity = model.valueQuantity
        if quantity is None or quantity.value is None:
            self._ignore(concept.name, f"{observation.label} (no valueQuantity)")
            return None
        unit = quantity.code or quantity.unit
        if concept.unit is not None and unit is not None and unit != concept.unit:
            self.issues.append(
                FhirIssue(
                    "value",
                    f"{concept.name}: {observation.label} valueQuantity must be in "
                    f"{concept.unit!r} (UCUM), but has another unit; convert it or send the "
                    "value in per cent",
                    field=concept.name,
                    expression=f"{observation.location}.valueQuantity",
                )
            )
            return None
        return float(quantity.value), "valueQuantity", {}

    # Procedure and ServiceRequest

    def _procedures(self, reference_date: date) -> None:
        procedures = self._of_type("Procedure")
        for name, concept in self.mapping.procedures.items():
            found = self._procedure(procedures, name, concept, reference_date)
            if found is None:
                default = False if name == "prior_hepatic_treatment" else None
                source = "absent" if default is None else "default"
                found = _Found(default, {"source": source, "note": _ABSENT_NOTES[name]})
            self._set(name, found.value, found.provenance)

    def _procedure(self, procedures, name: str, concept: Concept, reference_date: date):
        """True from a completed Procedure, False from one recorded as not done, else None."""
        not_done = None
        for procedure in procedures:
            match = concept.match(procedure.model.code)
            if match is None:
                continue
            provenance = {"source": "resource", **procedure.reference("code"), **match.provenance()}
            status = procedure.model.status
            performed = _procedure_date(procedure.model)
            if status == "not-done":
                not_done = not_done or _Found(False, {**provenance, "status": "not-done"})
            elif status != "completed":
                self._ignore(name, f"{procedure.label} (status not completed)")
            elif performed is not None and performed > reference_date:
                self._ignore(name, f"{procedure.label} (after the reference date)")
            else:
                return _Found(True, provenance)
        return not_done

    def _planned_modality(self) -> tuple[str, FhirResource, date | None] | None:
        plans: dict[str, tuple[FhirResource, ConceptMatch]] = {}
        unspecified = None
        for resource in self.planned_candidates:
            if not _is_planned(resource):
                continue
            modalities = {
                name: match
                for name, concept in self.mapping.modalities.items()
                if (match := concept.match_code([resource.model.code]))
            } or {
                name: match
                for name, concept in self.mapping.modalities.items()
                if (match := concept.match_text([resource.model.code]))
            }
            if len(modalities) > 1:
                self._conflicting_plans([resource])
            elif modalities:
                name, match = next(iter(modalities.items()))
                plans.setdefault(name, (resource, match))
            elif self.mapping.unspecified_embolization.match(resource.model.code):
                unspecified = unspecified or resource
        if len(plans) > 1:
            self._conflicting_plans([resource for resource, _ in plans.values()])
            plans = {}
        if plans:
            name, (resource, match) = next(iter(plans.items()))
            self._set(
                "planned_modality",
                name,
                {"source": "resource", **resource.reference("code"), **match.provenance()},
            )
            return name, resource, _planned_date(resource)
        note = _ABSENT_NOTES["planned_modality"]
        if unspecified is not None:
            note = (
                f"{unspecified.label} plans an embolization whose modality (TACE, TAE or SIRT) "
                "its code does not tell"
            )
        if unspecified is None:
            self._set("planned_modality", None, {"source": "absent", "note": note})
            return None
        provenance = {"source": "absent", **unspecified.reference("code"), "note": note}
        self._set("planned_modality", None, provenance)
        return None, unspecified, _planned_date(unspecified)

    def _conflicting_plans(self, resources: list[FhirResource]) -> None:
        self.issues.append(
            FhirIssue(
                "conflict",
                "planned_modality: the planned embolotherapy must be one modality, but "
                f"{', '.join(r.label for r in resources)} plan(s) more than one; revoke or "
                "cancel the orders that no longer hold",
                field="planned_modality",
                expression="ServiceRequest",
            )
        )

    def _reference_date(self, planned) -> date:
        if planned is not None and planned[2] is not None:
            resource = planned[1]
            element = "performed[x]" if resource.resource_type == "Procedure" else "occurrence[x]"
            self.reference_date_from = resource.reference(element)
            return planned[2]
        self.reference_date_from = "the request date (UTC): no planned embolotherapy has a date"
        return self.today

    # MedicationStatement and MedicationRequest

    def _medications(self) -> None:
        statements = self._of_type("MedicationStatement", "MedicationRequest")
        for name, concept in self.mapping.medications.items():
            found = None
            for statement in statements:
                codes, element = self._medication_codes(statement)
                match = concept.match(*codes)
                if match is None:
                    continue
                if statement.model.status not in _MEDICATION_STATUSES[statement.resource_type]:
                    self._ignore(name, f"{statement.label} (status not taken or prescribed)")
                    continue
                found = _Found(
                    True,
                    {"source": "resource", **statement.reference(element), **match.provenance()},
                )
                break
            if found is None:
                found = _Found(False, {"source": "default", "note": _ABSENT_NOTES[name]})
            self._set(name, found.value, found.provenance)

    def _medication_codes(self, statement: FhirResource) -> tuple[list, str]:
        model = statement.model
        if model.medicationCodeableConcept is not None:
            return [model.medicationCodeableConcept], "medicationCodeableConcept"
        reference = getattr(model.medicationReference, "reference", None)
        medication = None
        if reference and reference.startswith("#"):
            medication = next((c for c in model.contained or [] if c.id == reference[1:]), None)
        elif reference:
            target = self.by_reference.get(reference)
            medication = target.model if target is not None else None
        code = getattr(medication, "code", None) if medication is not None else None
        concepts = [code] if code is not None else []
        if model.medicationReference is not None and getattr(
            model.medicationReference, "display", None
        ):
            concepts.append(_TextOnly(model.medicationReference.display))
        return concepts, "medicationReference"

    # final validation

    def _patient_issues(self, error: ValidationError) -> list[FhirIssue]:
        issues = []
        for e in error.errors(include_url=False, include_input=False):
            name = str(e["loc"][0]) if e["loc"] else "patient"
            source = self.provenance.get(name, {})
            where = (
                f"{source['resourceType']}/{source['id']}"
                if source.get("resourceType") and source.get("id")
                else source.get("location", "the input")
            )
            issues.append(
                FhirIssue(
                    "value",
                    f"{name} (from {where}) is outside what the model accepts: {e['msg']}; "
                    "check the recorded value",
                    field=name,
                    expression=source.get("location"),
                )
            )
        return issues


_ABSENT_NOTES = {
    "ki67_percent": "no final Ki-67 Observation",
    "who_grade": "no final WHO grade Observation: the model derives the grade from Ki-67 "
    "(WHO 2010: <3 % G1, 3-20 % G2, >20 % G3)",
    "prior_hepatic_treatment": "no completed hepatic resection or ablation Procedure: assumed none",
    "primary_resected": "no completed resection of the primary: unknown",
    "planned_modality": "no planned embolotherapy (Procedure in preparation or draft/active "
    "ServiceRequest): the prognosis is shown for TACE, the reference, and all three are compared",
    "somatostatin_analog": "no MedicationStatement or MedicationRequest for a somatostatin "
    "analogue: assumed none",
    "biologic_therapy": "no MedicationStatement or MedicationRequest for a biologic: assumed none",
    "cytotoxic_chemotherapy": "no MedicationStatement or MedicationRequest for cytotoxic "
    "chemotherapy: assumed none",
}


@dataclass(frozen=True)
class _TextOnly:
    """A bare text posing as a CodeableConcept (valueString, a reference's display)."""

    text: str
    coding: tuple = ()


def _value_provenance(match: ConceptMatch) -> dict:
    if match.kind == "text":
        return {"value_match": "text"}
    return {"value_system": match.system, "value_code": match.code, "value_display": match.display}


def _codings(concept: Any) -> list:
    return [c for c in (getattr(concept, "coding", None) or []) if c is not None]


def _texts(concept: Any) -> list[str]:
    texts = [getattr(concept, "text", None)]
    texts += [c.display for c in _codings(concept)]
    return [t for t in texts if t]


def _status_code(concept: Any) -> str | None:
    codings = _codings(concept)
    return codings[0].code if codings else None


def _system_name(system: str) -> str:
    names = {
        "http://snomed.info/sct": "SNOMED CT",
        "http://loinc.org": "LOINC",
        "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
        "http://www.whocc.no/atc": "ATC",
        "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
        "http://www.ama-assn.org/go/cpt": "CPT",
    }
    return names.get(system, system)


def _reference_index(resources: Sequence[FhirResource]) -> dict[str, FhirResource]:
    index = {}
    for resource in resources:
        if resource.id:
            index[f"{resource.resource_type}/{resource.id}"] = resource
        if resource.full_url:
            index[resource.full_url] = resource
    return index


def _is_planned(resource: FhirResource) -> bool:
    model = resource.model
    if resource.resource_type == "Procedure":
        return model.status in _PLANNED_PROCEDURE_STATUSES
    if resource.resource_type == "ServiceRequest":
        return (
            model.status in _PLANNED_REQUEST_STATUSES
            and model.intent in _PLANNED_REQUEST_INTENTS
            and not model.doNotPerform
        )
    return False


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return None


def _planned_date(resource: FhirResource) -> date | None:
    model = resource.model
    if resource.resource_type == "Procedure":
        return _procedure_date(model)
    period = model.occurrencePeriod
    return _as_date(model.occurrenceDateTime) or _as_date(getattr(period, "start", None))


def _procedure_date(model: Any) -> date | None:
    period = model.performedPeriod
    return _as_date(model.performedDateTime) or _as_date(getattr(period, "start", None))


def _observation_date(model: Any) -> Any:
    period = model.effectivePeriod
    return model.effectiveDateTime or getattr(period, "start", None) or model.issued


def _date_key(value: Any) -> str:
    """A sortable key of a FHIR date or dateTime (partial ones included); none sorts first."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    return value.isoformat() if isinstance(value, date) else str(value)


def _birth_date(value: Any) -> tuple[date, bool]:
    """The birth date, and whether it was partial (then taken at the middle of its period)."""
    if isinstance(value, date):
        return value, False
    parts = [int(p) for p in str(value).split("-")]
    if len(parts) == 1:
        return date(parts[0], 7, 1), True
    return date(parts[0], parts[1], 15), True


def _completed_years(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


# --- HTTP: POST /v1/fhir/prognosis ---------------------------------------------------------------

ROUTE_FHIR_PROGNOSIS = "/v1/fhir/prognosis"
FHIR_MEDIA_TYPES = ("application/json", "application/fhir+json")
_FHIR_JSON = "application/fhir+json"

fhir_app = FastAPI(title="NetPrognosis FHIR input", docs_url=None, redoc_url=None, openapi_url=None)
"""Mounted at `/v1` by the service; its one route reads a Bundle and answers the prognosis."""


@dataclass(frozen=True)
class RouteContext:
    """What the service's audited answer path reads of a `bentoml.Context`, for a route of a
    mounted FastAPI app (which gets a Starlette request, not a BentoML context)."""

    request: Request
    response: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(status_code=200))


def audit_payload(patient: Patient) -> dict:
    """What a prediction's input digest covers: exactly what `/v1/prognosis` digests for the
    same patient, so that one patient has one digest whichever route asked."""
    return {"patient": patient.model_dump(mode="json"), "months_since_treatment": None}


def audited_prognosis(service: Any, request: Request, route: str, mapped: MappedPatient, extra):
    """The prognosis of a mapped patient, audited as the JSON API audits its answers.

    `extra(result)` returns the answer's body without its `prediction_id`; the service's
    `_audited` adds the id, writes the audit record and refuses (503) when it cannot.
    """
    try:
        result = service.predictor.prognosis(mapped.patient)
    except ModelError as error:
        return _outcome(422, [FhirIssue("processing", str(error))])
    return service._audited(
        RouteContext(request), route, [audit_payload(mapped.patient)], [extra(result)], single=True
    )


def media_type_rejection(request: Request, allowed: Sequence[str]) -> JSONResponse | None:
    """A 415 answer when the body's media type is not one of `allowed` (none given is JSON)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and media_type not in allowed:
        return JSONResponse(
            {"error": f"Content-Type must be one of {', '.join(allowed)}"}, status_code=415
        )
    return None


def read_json(body: bytes) -> object:
    """The body as JSON; raises FhirValidationError (without quoting the body) otherwise."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FhirValidationError(
            [FhirIssue("structure", "the body must be JSON, but it could not be parsed")]
        ) from None


def _outcome(status: int, issues: Sequence[FhirIssue]) -> JSONResponse:
    body = FhirInputError(issues).operation_outcome()
    return JSONResponse(body, status_code=status, media_type=_FHIR_JSON)


def _fhir_answer(service: Any, request: Request, body: bytes) -> Response:
    from serving.records import answer_fields, map_record, read_record  # imports this module

    try:
        mapped, ruled = map_record(read_record(body))
    except FhirInputError as error:
        logger.info(
            "FHIR bundle refused (%d): %d issue(s) of kind %s (values are not logged)",
            error.status_code,
            len(error.issues),
            error.kinds(),
        )
        return _outcome(error.status_code, error.issues)

    def extra(result: dict) -> dict:
        patient = mapped.patient.model_dump(mode="json")
        return {
            **result,
            "patient": patient,
            "provenance": mapped.provenance,
            **answer_fields(result, ruled),
        }

    answer = audited_prognosis(service, request, ROUTE_FHIR_PROGNOSIS, mapped, extra)
    if answer.status_code == 200 and wants_fhir(
        request.headers.get("accept"), request.query_params.get("_format")
    ):
        fhir_body = prognosis_bundle(json.loads(answer.body), mapped.provenance)
        return JSONResponse(fhir_body, media_type=_FHIR_JSON)
    return answer


EXAMPLE_BUNDLE = json.loads(
    (MAPPING_PATH.parent / "examples" / "fhir" / "g2_pancreas_sirt.bundle.json").read_text(
        encoding="utf-8"
    )
)
"""The Bundle of `serving.schemas.EXAMPLE_PATIENT`, the route's documented example."""


@fhir_app.post(
    ROUTE_FHIR_PROGNOSIS.removeprefix("/v1"),
    summary="The prognosis of the patient a FHIR R4 Bundle describes",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media: {"schema": {"type": "object"}, "example": EXAMPLE_BUNDLE}
                for media in FHIR_MEDIA_TYPES
            },
        }
    },
    response_class=Response,
)
async def fhir_prognosis(
    request: Request, service: Annotated[Any, Depends(bentoml.get_current_service)]
) -> Response:
    """A FHIR R4 Bundle (type collection) of one patient's resources in, the prognosis out:
    the `/v1/prognosis` answer plus `patient` (the mapped fields) and `provenance` (for every
    field, the resource it came from, or "default", "derived" or "absent").

    Invalid FHIR is a 400 and a Bundle lacking what the model needs a 422, both answered as a
    FHIR OperationOutcome with one issue per problem (the resource and element, or the missing
    item and the codes that would supply it); values are never echoed. Audited like
    `/v1/prognosis`. A whole record up to 10 MiB is read (`set_aside` and the warnings say what
    the conflict rules set aside); with `Accept: application/fhir+json` or `_format=fhir` the
    answer is a Bundle of FHIR RiskAssessment resources (serving/risk_assessment.py).
    """
    rejection = media_type_rejection(request, FHIR_MEDIA_TYPES)
    if rejection is not None:
        return rejection
    body = await request.body()
    return await anyio.to_thread.run_sync(_fhir_answer, service, request, body)
