"""Condition: the primary site, liver and extrahepatic metastases."""

from __future__ import annotations

from serving.fhir.codes import (
    Concept,
    ConceptMatch,
    status_code,
)
from serving.fhir.errors import FhirIssue
from serving.fhir.parsing import FhirResource
from serving.fhir.run import Found, MappingRun, unrecorded

__all__ = ["read_conditions"]

_PRESENT_CLINICAL = (None, "active", "recurrence", "relapse")
_CONFIRMED = (None, "confirmed")


def read_conditions(run: MappingRun) -> None:
    conditions = run.of_type("Condition")
    concepts = run.mapping.conditions
    diagnoses = [
        (c, m) for c in conditions if (m := _diagnosis_match(run, c, concepts["net_diagnosis"]))
    ]
    if not diagnoses:
        run.missing(
            "primary_site",
            "the input must hold a Condition coding a neuroendocrine tumour diagnosis (the "
            "primary site is read from it), but has none",
            concepts["net_diagnosis"].codings(),
            "net_diagnosis",
        )
    else:
        _primary_site(run, diagnoses)
    liver = _metastases(run, conditions, concepts["liver_metastases"])
    if liver is None or liver.value is not True:
        run.missing(
            "liver_metastases",
            "the model is for liver metastases of a neuroendocrine tumour: the input must "
            "hold a confirmed, active Condition coding them, but has none",
            concepts["liver_metastases"].codings(),
            "liver_metastases",
        )
    extrahepatic = _metastases(run, conditions, concepts["extrahepatic_metastases"])
    if extrahepatic is None:
        label = concepts["extrahepatic_metastases"].label
        extrahepatic = unrecorded(
            "extrahepatic_metastases", f"Condition codes {label}", run.mapping.absent_booleans
        )
    run.set("extrahepatic_metastases", extrahepatic.value, extrahepatic.provenance)


def _diagnosis_match(
    run: MappingRun, condition: FhirResource, concept: Concept
) -> ConceptMatch | None:
    match = concept.match(condition.model.code)
    if match is None:
        return None
    verification = status_code(condition.model.verificationStatus)
    if verification in ("refuted", "entered-in-error"):
        run.ignore("net_diagnosis", f"{condition.label} (verification status {verification})")
        return None
    return match


def _primary_site(run: MappingRun, diagnoses: list[tuple[FhirResource, ConceptMatch]]) -> None:
    sites: dict[str, Found] = {}
    for condition, _ in diagnoses:
        found = _site_of(run, condition)
        if found is not None:
            sites.setdefault(found.value, found)
    if len(sites) > 1:
        where = ", ".join(
            f"{f.provenance['resourceType']}/{f.provenance['id']}" for f in sites.values()
        )
        run.issues.append(
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
        run.set("primary_site", found.value, found.provenance)
        return
    condition, match = diagnoses[0]
    run.set(
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


def _site_of(run: MappingRun, condition: FhirResource) -> Found | None:
    body_sites = condition.model.bodySite or []
    code = condition.model.code
    attempts = (
        (run.mapping.site_body, "match_code", body_sites, "bodySite"),
        (run.mapping.site_diagnosis, "match_code", [code], "code"),
        (run.mapping.site_text, "match_text", body_sites, "bodySite"),
        (run.mapping.site_text, "match_text", [code], "code"),
    )
    for table, method, concepts, element in attempts:
        present = [c for c in concepts if c is not None]
        for site, concept in table.items():
            match = getattr(concept, method)(present)
            if match is not None:
                provenance = {"source": "resource", **condition.reference(element)}
                return Found(site, {**provenance, **match.provenance()})
    return None


def _metastases(run: MappingRun, conditions: list[FhirResource], concept: Concept) -> Found | None:
    """True from a present Condition, False from a refuted one, None when none codes it."""
    refuted = None
    for condition in conditions:
        match = concept.match(condition.model.code)
        if match is None:
            continue
        verification = status_code(condition.model.verificationStatus)
        clinical = status_code(condition.model.clinicalStatus)
        provenance = {"source": "resource", **condition.reference("code"), **match.provenance()}
        if verification == "refuted":
            refuted = refuted or Found(False, {**provenance, "verificationStatus": "refuted"})
        elif verification not in _CONFIRMED:
            run.ignore(concept.name, f"{condition.label} (not confirmed)")
        elif clinical not in _PRESENT_CLINICAL:
            run.ignore(concept.name, f"{condition.label} (clinical status not active)")
        else:
            return Found(True, provenance)
    return refuted
