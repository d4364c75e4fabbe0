"""Observation: Ki-67, WHO grade and hepatic tumour burden, the latest final one each."""

from __future__ import annotations

from typing import Any

from serving.fhir.codes import (
    ConceptMatch,
    ObservationConcept,
)
from serving.fhir.errors import FhirIssue
from serving.fhir.parsing import FhirResource
from serving.fhir.run import ABSENT_NOTES, Found, MappingRun, TextOnly, date_key

__all__ = ["read_observations"]

_OBSERVATION_STATUSES = ("final", "amended", "corrected")


def read_observations(run: MappingRun) -> None:
    observations = run.of_type("Observation")
    concepts = run.mapping.observations
    found = {name: _latest(run, observations, concept) for name, concept in concepts.items()}
    ki67, grade, burden = (
        found["ki67_percent"],
        found["who_grade"],
        found["tumor_burden_percent"],
    )
    for name, value in (("ki67_percent", ki67), ("who_grade", grade)):
        if value is None:
            run.set(name, None, {"source": "absent", "note": ABSENT_NOTES[name]})
        else:
            run.set(name, value.value, value.provenance)
    if burden is None:
        run.set(
            "tumor_burden_percent",
            None,
            {"source": "absent", "note": ABSENT_NOTES["tumor_burden_percent"]},
        )
    else:
        run.set("tumor_burden_percent", burden.value, burden.provenance)


def _latest(
    run: MappingRun, observations: list[FhirResource], concept: ObservationConcept
) -> Found | None:
    candidates = []
    for position, observation in enumerate(observations):
        match = concept.match(observation.model.code)
        if match is None:
            continue
        if observation.model.status not in _OBSERVATION_STATUSES:
            run.ignore(
                concept.name, f"{observation.label} (status not final, amended or corrected)"
            )
            continue
        value = _observation_value(run, observation, concept)
        if value is not None:
            provenance = {
                "source": "resource",
                **observation.reference(value[1]),
                **match.provenance(),
                **value[2],
            }
            candidates.append(
                (
                    date_key(_observation_date(observation.model)),
                    position,
                    Found(value[0], provenance),
                )
            )
    return max(candidates, key=lambda c: c[:2])[2] if candidates else None


def _observation_value(
    run: MappingRun, observation: FhirResource, concept: ObservationConcept
) -> tuple[Any, str, dict] | None:
    model = observation.model
    if concept.values:
        value = model.valueCodeableConcept
        for grade, value_concept in concept.values.items():
            if value is not None and (value_match := value_concept.match(value)):
                return grade, "valueCodeableConcept", _value_provenance(value_match)
            if model.valueString and value_concept.match_text([TextOnly(model.valueString)]):
                return grade, "valueString", {"value_match": "text"}
        run.ignore(concept.name, f"{observation.label} (no G1, G2 or G3 value)")
        return None
    quantity = model.valueQuantity
    if quantity is None or quantity.value is None:
        run.ignore(concept.name, f"{observation.label} (no valueQuantity)")
        return None
    unit = quantity.code or quantity.unit
    if concept.unit is not None and unit is not None and unit != concept.unit:
        run.issues.append(
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


def _value_provenance(match: ConceptMatch) -> dict:
    if match.kind == "text":
        return {"value_match": "text"}
    return {"value_system": match.system, "value_code": match.code, "value_display": match.display}


def _observation_date(model: Any) -> Any:
    period = model.effectivePeriod
    return model.effectiveDateTime or getattr(period, "start", None) or model.issued
