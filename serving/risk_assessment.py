"""FHIR R4 RiskAssessment answers: a prognosis as a Bundle the EHR can file in the chart.

One RiskAssessment per measure the prognosis holds: hepatic progression-free survival (alive
without hepatic progression), overall survival (alive) and, where present, the cumulative
incidence of hepatic progression with death as a competing event. Each `prediction` is the
probability of its outcome over the period from the embolotherapy to 12, 24, 36 and 60 months
(`whenRange`), exactly the `survival_at` (or `cumulative_incidence_at`) value of the JSON
answer, with the 95 % interval and any extrapolation in its `rationale`.

Written by hand because no library turns a model's answer into FHIR resources; the resources
are plain dicts checked by the tests against HL7's FHIR R4 JSON Schema.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "FHIR_JSON",
    "LOCAL_SYSTEM",
    "PREDICTION_MONTHS",
    "basis_references",
    "condition_reference",
    "create_suggestion",
    "prognosis_bundle",
    "risk_assessment_bundle",
    "risk_assessment_suggestion",
    "risk_assessments",
    "subject_reference",
    "wants_fhir",
]

FHIR_JSON = "application/fhir+json"
LOCAL_SYSTEM = "urn:netprognosis:codes"
UCUM = "http://unitsofmeasure.org"
PREDICTION_MONTHS = ("12", "24", "36", "60")
"""Months at which each RiskAssessment gives a probability (the JSON answer's keys)."""
_FORMAT_VALUES = ("fhir", "json+fhir", "application/fhir+json")

_MEASURES = (
    (
        "hpfs",
        "survival_at",
        "alive-without-hepatic-progression",
        "Alive without hepatic progression (hepatic progression-free survival)",
        "Hepatic progression-free survival after liver-directed embolotherapy",
    ),
    (
        "os",
        "survival_at",
        "alive",
        "Alive (overall survival)",
        "Overall survival after liver-directed embolotherapy",
    ),
    (
        "hepatic_progression",
        "cumulative_incidence_at",
        "hepatic-progression",
        "Hepatic progression (death without progression as a competing event)",
        "Cumulative incidence of hepatic progression after liver-directed embolotherapy",
    ),
)
"""(answer key, probabilities key, outcome code, outcome text, assessment text) per measure."""


def wants_fhir(accept: str | None, format_param: str | None) -> bool:
    """Whether a request asks for a FHIR answer: `_format=fhir` (or a FHIR JSON media type), or
    an `Accept` header naming `application/fhir+json` before any plain JSON."""
    if format_param is not None:
        return format_param.strip().lower() in _FORMAT_VALUES
    if not accept:
        return False
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media == FHIR_JSON:
            return True
        if media in ("application/json", "*/*", "application/*"):
            return False
    return False


def subject_reference(provenance: Mapping[str, Mapping[str, Any]], patient_id: str | None = None):
    """The Patient reference of an answer: `patient_id`, else the Patient the age came from."""
    if patient_id:
        return {"reference": f"Patient/{patient_id}"}
    for source in provenance.values():
        if source.get("resourceType") == "Patient" and source.get("id"):
            return {"reference": f"Patient/{source['id']}"}
    return {"display": "The patient of the submitted Bundle (no Patient.id was given)"}


def basis_references(provenance: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """References to the resources the answer used, once each, in field order.

    Resources without an id cannot be referenced and are left out; a field whose value was a
    default or absent used no resource.
    """
    seen: dict[str, dict] = {}
    for source in provenance.values():
        if source.get("source") not in ("resource", "derived"):
            continue
        kind, resource_id = source.get("resourceType"), source.get("id")
        if kind and resource_id and f"{kind}/{resource_id}" not in seen:
            seen[f"{kind}/{resource_id}"] = {"reference": f"{kind}/{resource_id}"}
    return list(seen.values())


def _months(value: float) -> dict:
    return {"value": value, "unit": "months", "system": UCUM, "code": "mo"}


def _rationale(at: Mapping[str, Any], month: str) -> str:
    text = (
        f"Probability over the first {month} months after the embolotherapy; 95 % interval "
        f"{at['lower']:.4f} to {at['upper']:.4f}."
    )
    if at.get("extrapolated"):
        text += " Extrapolated beyond the follow-up of the training data: read with caution."
    return text


def _predictions(probabilities: Mapping[str, Mapping[str, Any]], outcome: dict) -> list[dict]:
    return [
        {
            "outcome": outcome,
            "probabilityDecimal": probabilities[month]["value"],
            "whenRange": {"low": _months(0), "high": _months(int(month))},
            "rationale": _rationale(probabilities[month], month),
        }
        for month in PREDICTION_MONTHS
        if month in probabilities
    ]


def _notes(prognosis: Mapping[str, Any]) -> list[dict]:
    model = prognosis["model"]
    caveat = prognosis["os"]["modalities"][0]["caveat"]
    notes = [
        f"Model version {model['tag']} (data fingerprint {model.get('data_fingerprint', '?')}, "
        f"trained {model.get('trained_at', '?')}).",
        f"Training data: {model['trained_on']}.",
        prognosis["disclaimer"],
        caveat,
    ]
    return [{"text": text} for text in notes]


def _method(prognosis: Mapping[str, Any], key: str) -> dict:
    model = prognosis["model"]
    family = model.get("primary_model", {}).get("os" if key == "hepatic_progression" else key)
    family = family or "cox"
    return {
        "coding": [{"system": LOCAL_SYSTEM, "code": f"netprognosis-{family}"}],
        "text": f"NetPrognosis {family} survival model {model['tag']}",
    }


def risk_assessments(
    prognosis: Mapping[str, Any],
    *,
    subject: dict,
    basis: Sequence[dict],
    occurrence: datetime,
    condition: dict | None = None,
) -> list[dict]:
    """The RiskAssessment resources of one prognosis answer (its JSON form, `prediction_id`
    included), one per measure it holds, each with a `urn:uuid:` id derived from the answer."""
    assessments = []
    for key, probabilities_key, code, outcome_text, title in _MEASURES:
        measure = prognosis.get(key)
        if not measure:
            continue
        outcome = {"coding": [{"system": LOCAL_SYSTEM, "code": code}], "text": outcome_text}
        modality = measure.get("modality")
        resource = {
            "resourceType": "RiskAssessment",
            "id": _resource_id(prognosis["prediction_id"], key),
            "identifier": [
                {"system": f"{LOCAL_SYSTEM}:prediction", "value": prognosis["prediction_id"]}
            ],
            "status": "final",
            "method": _method(prognosis, key),
            "code": {
                "coding": [{"system": LOCAL_SYSTEM, "code": f"prognosis-{key.replace('_', '-')}"}],
                "text": f"{title}" + (f" ({modality})" if modality else ""),
            },
            "subject": dict(subject),
            "occurrenceDateTime": occurrence.isoformat(timespec="seconds"),
            "basis": [dict(reference) for reference in basis],
            "prediction": _predictions(measure[probabilities_key], outcome),
            "note": _notes(prognosis),
        }
        if condition is not None:
            resource["condition"] = dict(condition)
        if not resource["basis"]:
            del resource["basis"]
        assessments.append(resource)
    return assessments


def _resource_id(prediction_id: str, key: str) -> str:
    return str(uuid.uuid5(uuid.UUID(prediction_id), key))


def risk_assessment_bundle(assessments: Sequence[dict], *, timestamp: datetime) -> dict:
    """A Bundle (type collection) of RiskAssessment resources."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": timestamp.isoformat(timespec="seconds"),
        "entry": [
            {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}
            for resource in assessments
        ],
    }


def create_suggestion(card_uuid: str, assessments: Sequence[dict]) -> dict:
    """A CDS Hooks 2.0 suggestion creating the RiskAssessments in the EHR (one action each)."""
    return {
        "label": "File this prognosis in the chart (FHIR RiskAssessment)",
        "uuid": str(uuid.uuid5(uuid.UUID(card_uuid), "risk-assessment")),
        "isRecommended": False,
        "actions": [
            {
                "type": "create",
                "description": resource["code"]["text"],
                "resource": resource,
            }
            for resource in assessments
        ],
    }


def condition_reference(provenance: Mapping[str, Mapping[str, Any]]) -> dict | None:
    """The NET diagnosis Condition the primary site was read from, as a reference, if known."""
    source = provenance.get("primary_site", {})
    if source.get("resourceType") == "Condition" and source.get("id"):
        return {"reference": f"Condition/{source['id']}"}
    return None


def prognosis_bundle(
    prognosis: Mapping[str, Any],
    provenance: Mapping[str, Mapping[str, Any]],
    *,
    patient_id: str | None = None,
    now: datetime | None = None,
) -> dict:
    """The Bundle of RiskAssessments answering `POST /v1/fhir/prognosis` in FHIR.

    Parameters
    ----------
    prognosis : mapping
        The JSON answer (with its `prediction_id`).
    provenance : mapping
        Where each patient field came from (`serving.fhir.MappedPatient.provenance`).
    patient_id : str, optional
        The Patient's id when known from elsewhere (a CDS Hooks context).
    now : datetime, optional
        When the assessment was made; default now (UTC).
    """
    now = now or datetime.now(UTC)
    assessments = risk_assessments(
        prognosis,
        subject=subject_reference(provenance, patient_id),
        basis=basis_references(provenance),
        occurrence=now,
        condition=condition_reference(provenance),
    )
    return risk_assessment_bundle(assessments, timestamp=now)


def risk_assessment_suggestion(
    prognosis: Mapping[str, Any],
    provenance: Mapping[str, Mapping[str, Any]],
    *,
    patient_id: str,
    card_uuid: str,
) -> dict:
    """The CDS card's suggestion to file the prognosis as RiskAssessments of `patient_id`."""
    bundle = prognosis_bundle(prognosis, provenance, patient_id=patient_id)
    return create_suggestion(card_uuid, [entry["resource"] for entry in bundle["entry"]])
