"""FHIR R4 resources mapped to the one `Patient`, each field with the resource it came from.

Resources are parsed and validated first (`serving.fhir.parsing`); each resource type is read
by its own module (`patient_resource`, `conditions`, `observations`, `procedures`, `plans`,
`medications`) into one `MappingRun`.

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
  corrected Observation of each; with no grade (nor Ki-67) or no burden, the field is unknown
  and the prognosis integrates over it.
- **prior_hepatic_treatment**, **primary_resected**: a completed Procedure on or before the
  reference date (a Procedure "not-done" records that it was not); resection of the primary
  unknown when none is recorded.
- **planned_modality**: the embolotherapy a Procedure in preparation or a draft or active
  ServiceRequest plans.
- **somatostatin_analog**, **biologic_therapy**, **cytotoxic_chemotherapy**: a
  MedicationStatement or MedicationRequest (or the Medication it references) in a status that
  means taken or prescribed; a MedicationStatement "not-taken" records that it was not.

A boolean predictor no resource records is False under the mapping's `absent_booleans:
assume_none` (the default) and unknown under `impute` (`serving.fhir.run.unrecorded`).

Written by hand because no library maps clinical FHIR resources to a model's features; the
parsing and validation are fhir.resources'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from pydantic import ValidationError

from model.schema import Patient
from serving.fhir import conditions, medications, observations, patient_resource, plans, procedures
from serving.fhir.codes import FhirMapping, default_mapping
from serving.fhir.errors import FhirBundleIncomplete
from serving.fhir.parsing import FhirResource, parse_bundle
from serving.fhir.run import MappingRun

__all__ = ["MappedPatient", "map_patient", "patient_from_bundle"]


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
    run = MappingRun(
        resources, mapping or default_mapping(), today or datetime.now(UTC).date(), planned
    )
    return _read(run)


def _read(run: MappingRun) -> MappedPatient:
    """Read every field, resource type by resource type, then check the patient as a whole."""
    planned = plans.read_planned_modality(run)
    reference_date = plans.reference_date(run, planned)
    patient_resource.read_patient(run, reference_date)
    conditions.read_conditions(run)
    observations.read_observations(run)
    procedures.read_procedures(run, reference_date)
    medications.read_medications(run)
    if run.issues:
        raise FhirBundleIncomplete(run.issues)
    try:
        patient = Patient(**run.fields)
    except ValidationError as error:
        raise FhirBundleIncomplete(run.patient_issues(error)) from None
    return MappedPatient(patient, run.provenance, reference_date)
