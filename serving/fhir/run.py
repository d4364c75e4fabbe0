"""One mapping run's state and the helpers every resource type's reader shares."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError

from model.schema import BOOLEAN_FIELDS, KI67_GRADES, about
from serving.fhir.codes import FhirMapping, system_name
from serving.fhir.errors import FhirIssue
from serving.fhir.parsing import READ_RESOURCE_TYPES, FhirResource

__all__ = [
    "ABSENT_NOTES",
    "Found",
    "MappingRun",
    "TextOnly",
    "as_date",
    "date_key",
    "unrecorded",
]

_SUBJECT_TYPES = tuple(t for t in READ_RESOURCE_TYPES if t not in ("Patient", "Medication"))
"""The read resource types that refer to the patient through `subject`."""

ABSENT_NOTES = {
    "ki67_percent": "no final Ki-67 Observation",
    "tumor_burden_percent": "no final hepatic tumour burden Observation: unknown, the "
    "prognosis integrates over it given the other fields (imputed)",
    "who_grade": "no final WHO grade Observation: the model derives the grade from Ki-67 "
    f"(WHO 2010: {KI67_GRADES.rule(unit=' %')}); with neither, the prognosis integrates over "
    "the grade given the other fields (imputed)",
    "planned_modality": "no planned embolotherapy (Procedure in preparation or draft/active "
    f"ServiceRequest): the prognosis is shown for {about('planned_modality').reference}, the "
    "reference, and all three are compared",
}
"""Why a non-boolean field the resources do not supply is empty (booleans: `unrecorded`)."""


def unrecorded(name: str, evidence: str, absent_booleans: str = "assume_none") -> Found:
    """A boolean field no resource records.

    With `absent_booleans` "assume_none" (`data/fhir_mapping.yaml`, the default, for EHRs that
    code every systemic therapy, procedure and metastasis they know of), a boolean predictor
    is False: absence of evidence read as absence, as stated in the answer's provenance and the
    CDS card. With "impute", it is unknown, and the prognosis integrates over it given the
    other fields (`model.unknown_fields`). A boolean that is not a predictor is unknown.

    Parameters
    ----------
    name : str
        A boolean field of `Patient`.
    evidence : str
        What would have recorded it, e.g. "MedicationStatement or MedicationRequest for
        cytotoxic chemotherapy".
    absent_booleans : {"assume_none", "impute"}
        The mapping's policy.
    """
    if name in BOOLEAN_FIELDS and absent_booleans == "assume_none":
        return Found(False, {"source": "default", "note": f"no {evidence}: assumed none"})
    if name in BOOLEAN_FIELDS:
        note = f"no {evidence}: unknown, imputed from the other fields"
        return Found(None, {"source": "absent", "note": note})
    return Found(None, {"source": "absent", "note": f"no {evidence}: unknown"})


@dataclass
class Found:
    """A value read from a resource, with where it came from."""

    value: Any
    provenance: dict


class MappingRun:
    """One mapping run: what has been read so far, and the issues found on the way.

    Each resource type's reader (`serving.fhir.conditions` and its siblings) reads its
    fields into `fields`, with their `provenance`, and appends to `issues`.

    Parameters
    ----------
    resources : sequence of FhirResource
        The patient's resources; those about another patient are ignored.
    mapping : FhirMapping
        The code table.
    today : date
        The request date.
    planned : sequence of FhirResource, optional
        The only resources to read for the planned embolotherapy, if given.
    """

    def __init__(
        self,
        resources: Sequence[FhirResource],
        mapping: FhirMapping,
        today: date,
        planned: Sequence[FhirResource] | None,
    ) -> None:
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
            list(planned) if planned is not None else self.of_type("Procedure", "ServiceRequest")
        )

    def of_type(self, *kinds: str) -> list[FhirResource]:
        """The resources of these types (about the patient)."""
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
        self.ignore("subject", f"{resource.label} (its subject is another patient)")
        return False

    def ignore(self, concept: str, why: str) -> None:
        """Note that a resource that codes `concept` was passed over, and why."""
        self.ignored.setdefault(concept, []).append(why)

    def _ignored_text(self, *concepts: str) -> str:
        notes = [note for c in concepts for note in self.ignored.get(c, ())]
        notes += self.ignored.get("subject", [])
        return f" (ignored: {'; '.join(notes)})" if notes else ""

    def missing(self, field_name: str, what: str, codes: Iterable[dict], *concepts: str) -> None:
        """Record that `field_name` is missing, with what would supply it."""
        if any(issue.field in concepts for issue in self.issues):
            return  # a resource that would supply it has a value issue, which says more
        supplying = tuple(codes)
        listed = ", ".join(
            f"{system_name(c['system'])} {c['code']} ({c['display']})" for c in supplying
        )
        self.issues.append(
            FhirIssue(
                "required",
                f"{field_name}: {what}{self._ignored_text(*concepts)}; codes that supply it: "
                f"{listed}",
                field=field_name,
                expression="Bundle",
                codes=supplying,
            )
        )

    def set(self, name: str, value: Any, provenance: dict) -> None:
        """Set a patient field and where its value came from."""
        self.fields[name] = value
        self.provenance[name] = provenance

    def patient_issues(self, error: ValidationError) -> list[FhirIssue]:
        """The Patient model's refusals of the mapped values, each naming its resource."""
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


@dataclass(frozen=True)
class TextOnly:
    """A bare text posing as a CodeableConcept (valueString, a reference's display)."""

    text: str
    coding: tuple = ()


def _reference_index(resources: Sequence[FhirResource]) -> dict[str, FhirResource]:
    index = {}
    for resource in resources:
        if resource.id:
            index[f"{resource.resource_type}/{resource.id}"] = resource
        if resource.full_url:
            index[resource.full_url] = resource
    return index


def as_date(value: Any) -> date | None:
    """A FHIR date or dateTime as a date (None for a partial date or none)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return None


def date_key(value: Any) -> str:
    """A sortable key of a FHIR date or dateTime (partial ones included); none sorts first."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    return value.isoformat() if isinstance(value, date) else str(value)
