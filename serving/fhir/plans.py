"""Procedure in preparation and ServiceRequest: the planned embolotherapy and its date."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from serving.fhir.codes import (
    ConceptMatch,
    FhirMapping,
    default_mapping,
)
from serving.fhir.errors import FhirIssue
from serving.fhir.parsing import REQUIRED_BINDINGS, FhirResource
from serving.fhir.procedures import procedure_date
from serving.fhir.run import ABSENT_NOTES, MappingRun, as_date

__all__ = ["plans_embolization", "read_planned_modality", "reference_date"]

_PLANNED_PROCEDURE_STATUSES = ("preparation",)
_PLANNED_REQUEST_STATUSES = ("draft", "active")
_PLANNED_REQUEST_INTENTS = REQUIRED_BINDINGS["ServiceRequest", "intent"][:-1]


Plan = tuple[str | None, FhirResource, date | None]
"""The planned modality (None: an embolization of unknown modality), its resource and date."""


def read_planned_modality(run: MappingRun) -> Plan | None:
    plans: dict[str, tuple[FhirResource, ConceptMatch]] = {}
    unspecified = None
    for resource in run.planned_candidates:
        if not _is_planned(resource):
            continue
        modalities = {
            name: match
            for name, concept in run.mapping.modalities.items()
            if (match := concept.match_code([resource.model.code]))
        } or {
            name: match
            for name, concept in run.mapping.modalities.items()
            if (match := concept.match_text([resource.model.code]))
        }
        if len(modalities) > 1:
            _conflicting_plans(run, [resource])
        elif modalities:
            name, match = next(iter(modalities.items()))
            plans.setdefault(name, (resource, match))
        elif run.mapping.unspecified_embolization.match(resource.model.code):
            unspecified = unspecified or resource
    if len(plans) > 1:
        _conflicting_plans(run, [resource for resource, _ in plans.values()])
        plans = {}
    if plans:
        name, (resource, match) = next(iter(plans.items()))
        run.set(
            "planned_modality",
            name,
            {"source": "resource", **resource.reference("code"), **match.provenance()},
        )
        return name, resource, _planned_date(resource)
    note = ABSENT_NOTES["planned_modality"]
    if unspecified is not None:
        note = (
            f"{unspecified.label} plans an embolization whose modality (TACE, TAE or SIRT) "
            "its code does not tell"
        )
    if unspecified is None:
        run.set("planned_modality", None, {"source": "absent", "note": note})
        return None
    provenance = {"source": "absent", **unspecified.reference("code"), "note": note}
    run.set("planned_modality", None, provenance)
    return None, unspecified, _planned_date(unspecified)


def _conflicting_plans(run: MappingRun, resources: list[FhirResource]) -> None:
    run.issues.append(
        FhirIssue(
            "conflict",
            "planned_modality: the planned embolotherapy must be one modality, but "
            f"{', '.join(r.label for r in resources)} plan(s) more than one; revoke or "
            "cancel the orders that no longer hold",
            field="planned_modality",
            expression="ServiceRequest",
        )
    )


def reference_date(run: MappingRun, planned: Plan | None) -> date:
    if planned is not None and planned[2] is not None:
        resource = planned[1]
        element = "performed[x]" if resource.resource_type == "Procedure" else "occurrence[x]"
        run.reference_date_from = resource.reference(element)
        return planned[2]
    run.reference_date_from = "the request date (UTC): no planned embolotherapy has a date"
    return run.today


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


def _planned_date(resource: FhirResource) -> date | None:
    model = resource.model
    if resource.resource_type == "Procedure":
        return procedure_date(model)
    period = model.occurrencePeriod
    return as_date(model.occurrenceDateTime) or as_date(getattr(period, "start", None))
