"""Procedure: prior hepatic treatment and resection of the primary, by the reference date."""

from __future__ import annotations

from datetime import date
from typing import Any

from serving.fhir.codes import (
    Concept,
)
from serving.fhir.run import Found, MappingRun, as_date, unrecorded

__all__ = ["procedure_date", "read_procedures"]


def read_procedures(run: MappingRun, reference_date: date) -> None:
    procedures = run.of_type("Procedure")
    for name, concept in run.mapping.procedures.items():
        found = _procedure(run, procedures, name, concept, reference_date)
        if found is None:
            found = unrecorded(
                name, f"completed Procedure of {concept.label}", run.mapping.absent_booleans
            )
        run.set(name, found.value, found.provenance)


def _procedure(run: MappingRun, procedures, name: str, concept: Concept, reference_date: date):
    """True from a completed Procedure, False from one recorded as not done, else None."""
    not_done = None
    for procedure in procedures:
        match = concept.match(procedure.model.code)
        if match is None:
            continue
        provenance = {"source": "resource", **procedure.reference("code"), **match.provenance()}
        status = procedure.model.status
        performed = procedure_date(procedure.model)
        if status == "not-done":
            not_done = not_done or Found(False, {**provenance, "status": "not-done"})
        elif status != "completed":
            run.ignore(name, f"{procedure.label} (status not completed)")
        elif performed is not None and performed > reference_date:
            run.ignore(name, f"{procedure.label} (after the reference date)")
        else:
            return Found(True, provenance)
    return not_done


def procedure_date(model: Any) -> date | None:
    period = model.performedPeriod
    return as_date(model.performedDateTime) or as_date(getattr(period, "start", None))
