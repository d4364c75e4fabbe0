"""Realistic whole-patient FHIR records: an example NET Bundle inside thousands of resources of
many types (encounters, claims, immunisations, vital signs and labs, other diagnoses and
medicines), as an EHR export or a Synthea run gives them."""

from __future__ import annotations

import copy
import json
import random
from datetime import date, timedelta
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples" / "fhir"
SNOMED, LOINC, RXNORM = (
    "http://snomed.info/sct",
    "http://loinc.org",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
)
OTHER_DIAGNOSES = (
    ("38341003", "Hypertension"),
    ("44054006", "Type 2 diabetes mellitus"),
    ("195967001", "Asthma"),
    ("55822004", "Hyperlipidaemia"),
    ("40055000", "Chronic sinusitis"),
)
LABS = (
    ("8867-4", "Heart rate", "/min", 72),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 128),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 82),
    ("2339-0", "Glucose", "mg/dL", 98),
    ("718-7", "Hemoglobin", "g/dL", 13.4),
    ("29463-7", "Body weight", "kg", 74.0),
)
MEDICINES = (
    ("860975", "Metformin 500 MG"),
    ("314076", "Lisinopril 10 MG"),
    ("197361", "Amlodipine 5 MG"),
)


def _coding(system: str, code: str, display: str) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _observation(ident: str, subject: dict, when: str, rng: random.Random) -> dict:
    code, name, unit, mean = rng.choice(LABS)
    return {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "category": [
            _coding(
                "http://terminology.hl7.org/CodeSystem/observation-category",
                "vital-signs",
                "Vital signs",
            )
        ],
        "code": _coding(LOINC, code, name),
        "subject": subject,
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": round(mean * rng.uniform(0.8, 1.2), 1),
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def _condition(ident: str, subject: dict, when: str, rng: random.Random) -> dict:
    code, name = rng.choice(OTHER_DIAGNOSES)
    return {
        "resourceType": "Condition",
        "id": ident,
        "subject": subject,
        "code": _coding(SNOMED, code, name),
        "clinicalStatus": _coding(
            "http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"
        ),
        "verificationStatus": _coding(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "confirmed",
            "Confirmed",
        ),
        "onsetDateTime": when,
    }


def _medicationrequest(ident: str, subject: dict, when: str, rng: random.Random) -> dict:
    code, name = rng.choice(MEDICINES)
    return {
        "resourceType": "MedicationRequest",
        "id": ident,
        "status": "completed",
        "intent": "order",
        "medicationCodeableConcept": _coding(RXNORM, code, name),
        "subject": subject,
        "authoredOn": when,
    }


def _immunization(ident: str, subject: dict, when: str, rng: random.Random) -> dict:
    return {
        "resourceType": "Immunization",
        "id": ident,
        "status": "completed",
        "patient": subject,
        "vaccineCode": _coding("http://hl7.org/fhir/sid/cvx", "140", "Influenza, seasonal"),
        "occurrenceDateTime": when,
    }


def _claim(ident: str, subject: dict, when: str, rng: random.Random) -> dict:
    return {
        "resourceType": "Claim",
        "id": ident,
        "status": "active",
        "use": "claim",
        "patient": subject,
        "created": when,
        "type": _coding(
            "http://terminology.hl7.org/CodeSystem/claim-type", "professional", "Professional"
        ),
        "provider": {"display": "General Hospital"},
        "priority": _coding(
            "http://terminology.hl7.org/CodeSystem/processpriority", "normal", "Normal"
        ),
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Health insurer"}}],
        "item": [
            {
                "sequence": n + 1,
                "productOrService": _coding(SNOMED, "185349003", "Encounter for check up"),
                "net": {"value": round(rng.uniform(50, 900), 2), "currency": "EUR"},
            }
            for n in range(3)
        ],
        "total": {"value": 1200.0, "currency": "EUR"},
    }


def _encounter(ident: str, subject: dict, when: str, rng: random.Random) -> dict:
    return {
        "resourceType": "Encounter",
        "id": ident,
        "status": "finished",
        "subject": subject,
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB",
            "display": "ambulatory",
        },
        "type": [_coding(SNOMED, "185349003", "Encounter for check up")],
        "period": {"start": when, "end": when},
        "serviceProvider": {"display": "General Hospital"},
    }


_MAKERS = {
    "Observation": _observation,
    "Condition": _condition,
    "MedicationRequest": _medicationrequest,
    "Immunization": _immunization,
    "Claim": _claim,
    "Encounter": _encounter,
}


def _filler(kind: str, index: int, patient: str, day: date, rng: random.Random) -> dict:
    """One resource of `kind` about `patient`, dated `day`."""
    when = f"{day.isoformat()}T09:{index % 60:02d}:00+00:00"
    subject = {"reference": f"Patient/{patient}"}
    return _MAKERS[kind](f"{kind.lower()}-{index}", subject, when, rng)


KINDS = (
    "Encounter",
    "Claim",
    "Observation",
    "Observation",
    "Immunization",
    "Condition",
    "MedicationRequest",
    "Encounter",
)


def realistic_record(
    target_bytes: int = 10_000_000, *, base: str = "g2_pancreas_sirt.bundle.json", seed: int = 0
) -> dict:
    """The example Bundle `base` with filler resources until its JSON is about `target_bytes`."""
    record = json.loads((EXAMPLES / base).read_text(encoding="utf-8"))
    patient = next(
        e["resource"]["id"] for e in record["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    rng = random.Random(seed)
    size = len(json.dumps(record))
    entries, index, first = [], 0, date(2005, 1, 1)
    while size < target_bytes:
        kind = KINDS[index % len(KINDS)]
        resource = _filler(kind, index, patient, first + timedelta(days=index // 3), rng)
        entry = {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{index:012d}", "resource": resource}
        size += len(json.dumps(entry)) + 2
        entries.append(entry)
        index += 1
    record = copy.deepcopy(record)
    record["entry"] = entries[: len(entries) // 2] + record["entry"] + entries[len(entries) // 2 :]
    return record


def record_bytes(record: dict) -> bytes:
    return json.dumps(record).encode("utf-8")


def with_other_cancer(record: dict, *, condition_id: str = "colon-adenocarcinoma") -> dict:
    """The record with a confirmed, active diagnosis of another cancer (colon adenocarcinoma,
    a gut site) added."""
    patient = next(
        e["resource"]["id"] for e in record["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    cancer = {
        "resourceType": "Condition",
        "id": condition_id,
        "clinicalStatus": _coding(
            "http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"
        ),
        "verificationStatus": _coding(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"
        ),
        "code": _coding(
            "http://hl7.org/fhir/sid/icd-10-cm", "C18.7", "Malignant neoplasm of sigmoid colon"
        ),
        "bodySite": [_coding(SNOMED, "60184004", "Sigmoid colon structure")],
        "subject": {"reference": f"Patient/{patient}"},
        "recordedDate": "2025-06-01",
    }
    return {
        **record,
        "entry": [*record["entry"], {"fullUrl": f"urn:uuid:{condition_id}", "resource": cancer}],
    }
