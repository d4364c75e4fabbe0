"""CDS Hooks discovery: the two services, their hooks, prefetch templates and coded reasons."""

from __future__ import annotations

import re

from serving.fhir import FhirMapping, default_mapping

__all__ = [
    "CARD_UUID",
    "FEEDBACK_OUTCOMES",
    "FHIR_ID",
    "HOOKS",
    "LOCAL_SYSTEM",
    "NEEDED_PREFETCH",
    "ORDER_SERVICE_ID",
    "OVERRIDE_REASONS",
    "PREFETCH_KEYS",
    "ROUTE_DISCOVERY",
    "SERVICE_ID",
    "discovery",
    "prefetch_templates",
]

ROUTE_DISCOVERY = "/cds-services"
SERVICE_ID = "net-embolotherapy-prognosis"
ORDER_SERVICE_ID = "net-embolotherapy-prognosis-order"
HOOKS = {SERVICE_ID: "patient-view", ORDER_SERVICE_ID: "order-select"}
"""Service id -> the hook it answers."""
LOCAL_SYSTEM = "urn:netprognosis:codes"
FEEDBACK_OUTCOMES = ("accepted", "overridden")
PREFETCH_KEYS = (
    "patient",
    "conditions",
    "observations",
    "procedures",
    "serviceRequests",
    "medicationStatements",
    "medicationRequests",
)
NEEDED_PREFETCH = ("patient", "conditions", "observations")
"""Prefetch without which no patient can be mapped; the others only fill defaults."""
OVERRIDE_REASONS = (
    {"system": LOCAL_SYSTEM, "code": "no-embolotherapy", "display": "Embolotherapy not pursued"},
    {
        "system": LOCAL_SYSTEM,
        "code": "estimate-not-credible",
        "display": "Estimate not credible for this patient",
    },
    {
        "system": LOCAL_SYSTEM,
        "code": "data-incorrect",
        "display": "Patient data in the record incomplete or wrong",
    },
)
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
CARD_UUID = re.compile(r"^(urn:uuid:)?[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def prefetch_templates(mapping: FhirMapping | None = None) -> dict[str, str]:
    """The prefetch templates: the patient and the resources the mapping reads.

    Observations are narrowed to the codes of the table; the other searches are not, because
    ICD-10-CM classes and free-text matches cannot be written as FHIR token searches.
    """
    mapping = mapping or default_mapping()
    patient = "{{context.patientId}}"
    codes = sorted(
        {
            f"{rule.system}|{rule.code}"
            for concept in mapping.observations.values()
            for rule in concept.codes
        }
    )
    return {
        "patient": f"Patient/{patient}",
        "conditions": f"Condition?patient={patient}",
        "observations": f"Observation?patient={patient}&code={','.join(codes)}",
        "procedures": f"Procedure?patient={patient}",
        "serviceRequests": f"ServiceRequest?patient={patient}&status=draft,active",
        "medicationStatements": f"MedicationStatement?patient={patient}"
        "&_include=MedicationStatement:medication",
        "medicationRequests": f"MedicationRequest?patient={patient}"
        "&_include=MedicationRequest:medication",
    }


def discovery(mapping: FhirMapping | None = None) -> dict:
    """The discovery document (`GET /cds-services`)."""
    prefetch = prefetch_templates(mapping)
    usage = (
        "Adults with liver metastases of a neuroendocrine tumour considered for TACE, TAE or "
        "SIRT. Needs the prefetch; what it lacks is fetched from fhirServer when that server "
        "is allow-listed for the EHR, else the call is answered 412. The default "
        "models are trained on synthetic data and are not for clinical use."
    )
    return {
        "services": [
            {
                "hook": "patient-view",
                "id": SERVICE_ID,
                "title": "NET liver metastases: prognosis before embolotherapy",
                "description": "Median overall and hepatic progression-free survival "
                "(progression or death) for the planned TACE, TAE or SIRT, with an "
                "observational comparison of the three.",
                "prefetch": prefetch,
                "usageRequirements": usage,
            },
            {
                "hook": "order-select",
                "id": ORDER_SERVICE_ID,
                "title": "NET liver metastases: prognosis for the embolotherapy being ordered",
                "description": "When a TACE, TAE or SIRT order is selected, the median overall "
                "and hepatic progression-free survival (progression or death) for it, "
                "compared with the other two.",
                "prefetch": prefetch,
                "usageRequirements": usage,
            },
        ]
    }
