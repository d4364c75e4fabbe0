"""MedicationStatement and MedicationRequest: the systemic therapies given (a
MedicationStatement "not-taken" records that one was not)."""

from __future__ import annotations

from serving.fhir.parsing import FhirResource
from serving.fhir.run import Found, MappingRun, TextOnly, unrecorded

__all__ = ["read_medications"]

_MEDICATION_STATUSES = {
    "MedicationStatement": ("active", "completed", "stopped", "on-hold", "intended"),
    "MedicationRequest": ("active", "completed", "stopped", "on-hold"),
}


def read_medications(run: MappingRun) -> None:
    statements = run.of_type("MedicationStatement", "MedicationRequest")
    for name, concept in run.mapping.medications.items():
        found = not_taken = None
        for statement in statements:
            codes, element = _medication_codes(run, statement)
            match = concept.match(*codes)
            if match is None:
                continue
            provenance = {"source": "resource", **statement.reference(element)}
            provenance |= match.provenance()
            status = statement.model.status
            if statement.resource_type == "MedicationStatement" and status == "not-taken":
                # Recorded absence, like a Procedure "not-done" or a refuted Condition.
                not_taken = not_taken or Found(False, {**provenance, "status": "not-taken"})
            elif status not in _MEDICATION_STATUSES[statement.resource_type]:
                run.ignore(name, f"{statement.label} (status not taken or prescribed)")
            else:
                found = Found(True, provenance)
                break
        found = found or not_taken
        if found is None:
            found = unrecorded(
                name,
                f"MedicationStatement or MedicationRequest for {concept.label}",
                run.mapping.absent_booleans,
            )
        run.set(name, found.value, found.provenance)


def _medication_codes(run: MappingRun, statement: FhirResource) -> tuple[list, str]:
    model = statement.model
    if model.medicationCodeableConcept is not None:
        return [model.medicationCodeableConcept], "medicationCodeableConcept"
    reference = getattr(model.medicationReference, "reference", None)
    medication = None
    if reference and reference.startswith("#"):
        medication = next((c for c in model.contained or [] if c.id == reference[1:]), None)
    elif reference:
        target = run.by_reference.get(reference)
        medication = target.model if target is not None else None
    code = getattr(medication, "code", None) if medication is not None else None
    concepts = [code] if code is not None else []
    if model.medicationReference is not None and getattr(
        model.medicationReference, "display", None
    ):
        concepts.append(TextOnly(model.medicationReference.display))
    return concepts, "medicationReference"
