"""Patient: the age at the reference date and the sex."""

from __future__ import annotations

from datetime import date
from typing import Any

from serving.fhir.errors import FhirIssue
from serving.fhir.run import MappingRun

__all__ = ["read_patient"]


def read_patient(run: MappingRun, reference_date: date) -> None:
    patient = run.patient
    birth = getattr(patient.model, "birthDate", None) if patient else None
    if birth is None:
        run.issues.append(
            FhirIssue(
                "required",
                "age_years: the input must hold a Patient resource with a birthDate, but "
                + ("has no Patient" if patient is None else f"{patient.label} has none")
                + "; add Patient.birthDate (the age is computed at the reference date)",
                field="age_years",
                expression="Patient.birthDate",
            )
        )
    elif patient is not None:
        born, partial = _birth_date(birth)
        provenance = {
            "source": "derived",
            **patient.reference("birthDate"),
            "derivation": "completed years from birthDate to the reference date",
            "reference_date": reference_date.isoformat(),
            "reference_date_from": run.reference_date_from,
        }
        if partial:
            provenance["note"] = "birthDate is partial: taken at the middle of its period"
        run.set("age_years", _completed_years(born, reference_date), provenance)
    gender = getattr(patient.model, "gender", None) if patient else None
    if patient is not None and gender in ("female", "male"):
        run.set("sex", gender, {"source": "resource", **patient.reference("gender")})
    else:
        run.set("sex", None, {"source": "absent", "note": "Patient.gender is not male or female"})


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
