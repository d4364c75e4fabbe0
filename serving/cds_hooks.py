"""CDS Hooks 2.0: discovery, the NET embolotherapy prognosis service and its feedback.

`GET /cds-services` lists two services: `net-embolotherapy-prognosis` for the `patient-view`
hook and `net-embolotherapy-prognosis-order` for `order-select`, whose draft embolization
order (its selected ServiceRequest) sets the planned modality. Each asks the EHR to prefetch
what `data/fhir_mapping.yaml` reads; what the prefetch lacks is fetched from the EHR's FHIR
server, or the call answered 412 (serving/prefetch_fetch.py).
The prefetched resources are validated and mapped by `serving.fhir`, and the answer is one
card: the median OS and HPFS (hepatic progression or death) for the planned modality in its
summary, the modality comparison, the cumulative incidence of hepatic progression (death as a
competing event) at 12 and 24 months, the warnings, the observational caveat and the
disclaimer in its detail, and a link to
the clinician form filled in with the patient. A request that lacks what the model needs is
answered with a card that says what is missing, never with an error.

Auth: with `NETPROG_CDS_CLIENTS_FILE`, every call needs the CDS Hooks 2.0 client JWT, verified
by serving/cds_auth.py; without it, when bearer tokens are configured
(`NETPROG_API_TOKEN_HASHES`), these routes need one, exactly as `/v1` does.

Feedback (`POST /cds-services/{id}/feedback`) is written to the audit log as a `feedback`
record keyed by the card's uuid, which is the prediction's id: the outcome, the modality the
clinician recorded (an accepted suggestion) and the coded override reason are kept in clear,
the free-text comment only as a keyed digest.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import anyio.to_thread
import bentoml
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model
from starlette.responses import JSONResponse, Response

from model.schema import MODALITIES, Patient
from serving.audit import AuditEntry, caller_id
from serving.exceptions import AuditIntegrityError, AuditWriteError
from serving.fhir import (
    FhirBundleIncomplete,
    FhirInputError,
    FhirIssue,
    FhirMapping,
    FhirResource,
    FhirValidationError,
    MappedPatient,
    audited_prognosis,
    default_mapping,
    map_patient,
    media_type_rejection,
    plans_embolization,
    read_json,
    validate_resources,
)
from serving.prefetch_fetch import (
    PrefetchUnavailable,
    complete_prefetch,
    plan_for,
    precondition_outcome,
)
from serving.record_rules import apply_record_rules
from serving.risk_assessment import FHIR_JSON, risk_assessment_suggestion
from serving.security import CALLER_STATE_KEY, CDS_CLIENT_STATE_KEY

__all__ = [
    "FEEDBACK_OUTCOMES",
    "HOOKS",
    "LOCAL_SYSTEM",
    "ORDER_SERVICE_ID",
    "OVERRIDE_REASONS",
    "PREFETCH_KEYS",
    "ROUTE_DISCOVERY",
    "SERVICE_ID",
    "CdsRequestError",
    "HookRequest",
    "cds_app",
    "discovery",
    "feedback_entries",
    "missing_card",
    "parse_hook_request",
    "prefetch_resources",
    "prognosis_card",
    "suggestion_uuid",
]

logger = logging.getLogger(__name__)

ROUTE_DISCOVERY = "/cds-services"
SERVICE_ID = "net-embolotherapy-prognosis"
ORDER_SERVICE_ID = "net-embolotherapy-prognosis-order"
HOOKS = {SERVICE_ID: "patient-view", ORDER_SERVICE_ID: "order-select"}
"""Service id -> the hook it answers."""
LOCAL_SYSTEM = "urn:netprognosis:codes"
FEEDBACK_OUTCOMES = ("accepted", "overridden")
SUMMARY_MAX = 139
"""CDS Hooks 2.0: the summary is a "<140-character" sentence."""
PREFETCH_KEYS = (
    "patient",
    "conditions",
    "observations",
    "procedures",
    "serviceRequests",
    "medicationStatements",
    "medicationRequests",
)
_NEEDED_PREFETCH = ("patient", "conditions", "observations")
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
_SUGGESTION_NAMESPACE = uuid.UUID("6f1c9d2e-3b4a-5c6d-8e7f-0a1b2c3d4e5f")
_TOKEN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_UUID = re.compile(r"^(urn:uuid:)?[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_CARD_WARNING_CODES = ("modality_extrapolated", "models_disagree")


class CdsRequestError(ValueError):
    """A CDS Hooks request or feedback that does not follow the specification (400)."""


# --- HTTP bodies, as the OpenAPI document shows them ---------------------------------------------
# The handlers check requests by hand (`parse_hook_request`, `feedback_entries`) so that no
# message quotes a value; these models only document what those checks accept, with the same
# patterns, and what the routes answer.


class CdsService(BaseModel):
    """One CDS service of the discovery document."""

    hook: str
    id: str
    title: str
    description: str
    prefetch: dict[str, str]
    usageRequirements: str | None = None


class CdsDiscovery(BaseModel):
    """The CDS Hooks 2.0 discovery document."""

    services: list[CdsService]


class CdsCard(BaseModel):
    """A CDS Hooks 2.0 card: the prognosis, or what the request lacked."""

    model_config = ConfigDict(extra="allow")

    uuid: str
    summary: Annotated[str, Field(max_length=SUMMARY_MAX)]
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: dict[str, Any]
    suggestions: list[dict[str, Any]] | None = None
    selectionBehavior: str | None = None
    overrideReasons: list[dict[str, Any]] | None = None
    links: list[dict[str, Any]] | None = None


class CdsCards(BaseModel):
    """A CDS service's answer: one card, or none for an order that is not an embolization."""

    cards: Annotated[list[CdsCard], Field(max_length=1)]


class CdsPrefetchedResource(BaseModel):
    """A prefetched FHIR resource (validated as FHIR R4 when of a type the mapping reads)."""

    model_config = ConfigDict(extra="allow")

    resourceType: str


class CdsSearchEntry(BaseModel):
    """An entry of a prefetched search; `search.mode` outcome entries are passed over."""

    model_config = ConfigDict(extra="allow")

    fullUrl: str | None = None
    resource: CdsPrefetchedResource


class CdsSearchBundle(BaseModel):
    """A prefetched search, or the draft orders of order-select: a Bundle of entries."""

    model_config = ConfigDict(extra="allow")

    resourceType: Literal["Bundle"]
    entry: list[CdsSearchEntry] | None = None


_Prefetched = Annotated[
    CdsSearchBundle | CdsPrefetchedResource | None,
    Field(description="A resource or a search Bundle; absent or null: the EHR could not fetch it."),
]
CdsPrefetch = create_model(
    "CdsPrefetch",
    __config__=ConfigDict(extra="allow"),
    __doc__="The prefetched data, one member per prefetch key of the discovery document.",
    **dict.fromkeys(PREFETCH_KEYS, (_Prefetched, None)),
)


class CdsPatientViewContext(BaseModel):
    """The context of patient-view: the patient in view."""

    model_config = ConfigDict(extra="allow")

    patientId: Annotated[str, Field(pattern=_TOKEN.pattern)]


class CdsOrderSelectContext(CdsPatientViewContext):
    """The context of order-select: the patient, the draft orders and those selected."""

    selections: Annotated[list[str], Field(min_length=1)]
    draftOrders: CdsSearchBundle


class CdsPatientViewRequest(BaseModel):
    """A patient-view request (service net-embolotherapy-prognosis)."""

    model_config = ConfigDict(extra="allow")

    hook: Literal["patient-view"]
    hookInstance: Annotated[str, Field(min_length=1)]
    context: CdsPatientViewContext
    prefetch: CdsPrefetch | None = None  # type: ignore[valid-type]


class CdsOrderSelectRequest(CdsPatientViewRequest):
    """An order-select request (service net-embolotherapy-prognosis-order)."""

    hook: Literal["order-select"]  # type: ignore[assignment]
    context: CdsOrderSelectContext


class CdsHookRequest(RootModel):
    """A CDS Hooks 2.0 request; each service answers one hook, and a request for the other
    hook is refused (400)."""

    root: Annotated[CdsPatientViewRequest | CdsOrderSelectRequest, Field(discriminator="hook")]


class CdsFeedbackEntry(BaseModel):
    """Feedback on one card: accepted (with the suggestion taken) or overridden (why)."""

    model_config = ConfigDict(extra="allow")

    card: Annotated[str, Field(pattern=_UUID.pattern)]
    outcome: Literal["accepted", "overridden"]
    outcomeTimestamp: str
    acceptedSuggestions: list[dict[str, Any]] | None = None
    overrideReason: dict[str, Any] | None = None


class CdsFeedbackRequest(BaseModel):
    """CDS Hooks 2.0 feedback: one entry per card acted on."""

    model_config = ConfigDict(extra="allow")

    feedback: Annotated[list[CdsFeedbackEntry], Field(min_length=1)]


# --- discovery ---------------------------------------------------------------------------------


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


# --- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HookRequest:
    """The parts of a CDS Hooks request the service reads."""

    service_id: str
    hook: str
    hook_instance: str
    patient_id: str
    prefetch: Mapping[str, Any]
    selections: tuple[str, ...] = ()
    draft_orders: Any = None


def parse_hook_request(service_id: str, body: object) -> HookRequest:
    """Check a CDS Hooks request's envelope (never quoting its values).

    Raises
    ------
    CdsRequestError
        The body is not a request for this service's hook, or lacks its context.
    """
    if not isinstance(body, dict):
        raise CdsRequestError("the body must be a CDS Hooks request (a JSON object)")
    hook = HOOKS[service_id]
    if body.get("hook") != hook:
        raise CdsRequestError(
            f"service {service_id} answers the {hook} hook: `hook` must be {hook!r}, but is "
            "another value"
        )
    instance = body.get("hookInstance")
    if not isinstance(instance, str) or not instance:
        raise CdsRequestError("`hookInstance` (a UUID string) is required")
    context = body.get("context")
    patient_id = context.get("patientId") if isinstance(context, dict) else None
    if not isinstance(patient_id, str) or not _TOKEN.match(patient_id):
        raise CdsRequestError("`context.patientId` (a FHIR id) is required")
    prefetch = body.get("prefetch")
    if prefetch is None:
        prefetch = {}
    elif not isinstance(prefetch, dict):
        raise CdsRequestError("`prefetch` must be an object of prefetch keys")
    selections: tuple[str, ...] = ()
    draft_orders = None
    if hook == "order-select":
        chosen = context.get("selections")
        draft_orders = context.get("draftOrders")
        if not (isinstance(chosen, list) and chosen and all(isinstance(s, str) for s in chosen)):
            raise CdsRequestError(
                "order-select: `context.selections` (a list of references) is required"
            )
        selections = tuple(chosen)
        if not isinstance(draft_orders, dict) or draft_orders.get("resourceType") != "Bundle":
            raise CdsRequestError("order-select: `context.draftOrders` (a Bundle) is required")
    return HookRequest(service_id, hook, instance, patient_id, prefetch, selections, draft_orders)


def prefetch_resources(request: HookRequest) -> tuple[list[FhirResource], list[str]]:
    """The prefetched resources, validated, and the prefetch keys the EHR did not send.

    A key that is absent or null is missing (CDS Hooks 2.0: the EHR could not fetch it).

    Raises
    ------
    FhirValidationError
        A prefetched resource is not valid FHIR R4, or the prefetched Patient is not the
        context's patient.
    """
    items, missing = [], []
    for key in PREFETCH_KEYS:
        value = request.prefetch.get(key)
        if value is None:
            missing.append(key)
            continue
        location = f"prefetch.{key}"
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            for where, entry in _bundle_entries(value, location):
                if _is_match(entry):
                    items.append((f"{where}.resource", entry["resource"], entry.get("fullUrl")))
        else:
            items.append((location, value, None))
    resources = validate_resources(items)
    patients = [r for r in resources if r.resource_type == "Patient"]
    if any(p.id != request.patient_id for p in patients):
        raise FhirValidationError(
            [
                FhirIssue(
                    "invalid",
                    "prefetch.patient must be the Patient of context.patientId, but is "
                    "another patient",
                    expression="prefetch.patient",
                )
            ]
        )
    return resources, missing


def _bundle_entries(bundle: Mapping[str, Any], location: str) -> list[tuple[str, dict]]:
    """The entries of a prefetched or draft-orders Bundle, each with where it is.

    Raises
    ------
    FhirValidationError
        `entry` is not a list, or an entry is not an object holding a `resource` object (and
        a string `fullUrl`, if it has one).
    """
    entries = bundle.get("entry")
    if entries is None:
        return []
    if not isinstance(entries, list):
        where = f"{location}.entry"
        issue = FhirIssue("structure", f"{where} must be a list", expression=where)
        raise FhirValidationError([issue])
    found, issues = [], []
    for index, entry in enumerate(entries):
        where = f"{location}.entry[{index}]"
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("resource"), dict)
            and (entry.get("fullUrl") is None or isinstance(entry["fullUrl"], str))
        ):
            found.append((where, entry))
        else:
            issues.append(
                FhirIssue(
                    "structure",
                    f"{where} must be an object with a resource (and a fullUrl string, if any)",
                    expression=where,
                )
            )
    if issues:
        raise FhirValidationError(issues)
    return found


def _is_match(entry: Mapping[str, Any]) -> bool:
    """Whether a searchset entry is a result (not an OperationOutcome of the search)."""
    search = entry.get("search")
    return not isinstance(search, dict) or search.get("mode") in (None, "match", "include")


def selected_orders(request: HookRequest) -> list[FhirResource]:
    """The selected draft orders of an order-select request, validated."""
    wanted = set(request.selections)
    items = []
    for where, entry in _bundle_entries(request.draft_orders, "context.draftOrders"):
        resource = entry["resource"]
        reference = f"{resource.get('resourceType')}/{resource.get('id')}"
        if reference in wanted or entry.get("fullUrl") in wanted:
            items.append((f"{where}.resource", resource, None))
    return validate_resources(items)


# --- cards -------------------------------------------------------------------------------------


def suggestion_uuid(card_uuid: str, modality: str) -> str:
    """The uuid of the suggestion that records `modality` on a card: derived, not stored."""
    return str(uuid.uuid5(_SUGGESTION_NAMESPACE, f"{card_uuid.lower()}:{modality}"))


INCIDENCE_CARD_MONTHS = ("12", "24")
"""Months at which the card gives the cumulative incidence of hepatic progression."""


def _months(median: Mapping[str, Any]) -> str:
    if median.get("value") is None:
        return "not reached"
    return f"{median['value']:.1f} mo"


def _interval(median: Mapping[str, Any]) -> str:
    if median.get("value") is None:
        return "not reached"
    lower, upper = median.get("lower"), median.get("upper")
    bounds = "" if lower is None or upper is None else f" ({lower:.1f}–{upper:.1f})"
    return f"{median['value']:.1f}{bounds}"


def card_summary(prognosis: Mapping[str, Any]) -> str:
    """The summary: the medians of the prognosis's modality, under 140 characters."""
    modality = prognosis["os"]["modality"]
    given = prognosis.get("patient_summary", {}).get("planned_modality_given", True)
    lead = f"{modality} planned" if given else f"{modality} (reference; none planned)"
    summary = (
        f"{lead}: median OS {_months(prognosis['os']['median_months'])}, "
        f"HPFS {_months(prognosis['hpfs']['median_months'])}"
    )
    if prognosis.get("model", {}).get("trained_on", "synthetic") != "real":
        summary += " (synthetic-data model, not for clinical use)"
    return summary if len(summary) <= SUMMARY_MAX else summary[: SUMMARY_MAX - 1] + "…"


def _comparison_table(prognosis: Mapping[str, Any]) -> list[str]:
    hpfs = {m["modality"]: m for m in prognosis["hpfs"]["modalities"]}
    overall = {m["modality"]: m for m in prognosis["os"]["modalities"]}
    rows = [
        "| Modality | Median HPFS (progression or death), months (95 % CI) | "
        "Median OS, months (95 % CI) | "
        "Support in the training data |",
        "|---|---|---|---|",
    ]
    for modality in MODALITIES:
        h, o = hpfs[modality], overall[modality]
        support = o["support"]
        note = (
            f"propensity {support['propensity']:.2f}, {support['similar_treated']} similar "
            "patients treated"
        )
        if support.get("extrapolation"):
            note += " — **extrapolation**"
        name = f"**{modality}** (planned)" if o.get("planned") else modality
        rows.append(
            f"| {name} | {_interval(h['median_months'])} | {_interval(o['median_months'])} | "
            f"{note} |"
        )
    return rows


def incidence_line(prognosis: Mapping[str, Any]) -> str | None:
    """The cumulative incidence of hepatic progression at 12 and 24 months, or None if absent.

    HPFS ends at progression or death; the incidence counts progression only, with death as a
    competing event, so it is not 1 - HPFS.
    """
    incidence = prognosis.get("hepatic_progression")
    if not incidence:
        return None
    parts = []
    for month in INCIDENCE_CARD_MONTHS:
        at = incidence["cumulative_incidence_at"][month]
        flag = ", extrapolated" if at.get("extrapolated") else ""
        parts.append(
            f"{month} months {at['value'] * 100:.0f} % "
            f"(95 % CI {at['lower'] * 100:.0f}–{at['upper'] * 100:.0f} %{flag})"
        )
    return (
        f"Cumulative incidence of hepatic progression (death as a competing event) under "
        f"{incidence['modality']}: {'; '.join(parts)}."
    )


def card_detail(prognosis: Mapping[str, Any], mapped: MappedPatient, missing: Sequence[str]) -> str:
    """The detail (markdown): comparison, incidence, warnings, defaults, caveat, disclaimer."""
    lines = [
        f"**Prognosis after {prognosis['os']['modality']}** — model `{prognosis['model']['tag']}`"
        f", trained on {prognosis['model']['trained_on']} data. HPFS ends at hepatic "
        "progression or death, whichever comes first.",
        "",
        *_comparison_table(prognosis),
    ]
    incidence = incidence_line(prognosis)
    if incidence is not None:
        lines += ["", incidence]
    warnings = [
        w["message"]
        for w in prognosis.get("warnings", [])
        if w["code"] != "synthetic_training_data"
    ]
    if warnings:
        lines += ["", "**Warnings**", *[f"- {message}" for message in warnings]]
    assumed = [
        f"- {name.replace('_', ' ')}: {source['note']}"
        for name, source in mapped.provenance.items()
        if source.get("source") == "default"
    ]
    if missing:
        assumed.insert(
            0,
            f"- not sent by the EHR (prefetch): {', '.join(missing)}; what they hold was "
            "assumed absent",
        )
    if assumed:
        lines += ["", "**Assumed, not recorded**", *assumed]
    caveat = prognosis["os"]["modalities"][0]["caveat"]
    lines += ["", f"_{caveat}_", "", f"**{prognosis['disclaimer']}**"]
    return "\n".join(lines)


def form_url(base_url: str, patient: Patient) -> str:
    """The clinician form (`/`) filled in with the patient: one query parameter per Patient
    field, named as the field; empty fields are left out, booleans are true/false."""
    params = {}
    for name, value in patient.model_dump(mode="json").items():
        if value is None:
            continue
        params[name] = ("true" if value else "false") if isinstance(value, bool) else value
    return f"{base_url.rstrip('/')}/?{urlencode(params)}"


def _source(base_url: str, prognosis: Mapping[str, Any] | None) -> dict:
    tag = prognosis["model"]["tag"] if prognosis else None
    return {
        "label": f"NetPrognosis model {tag}" if tag else "NetPrognosis",
        "url": f"{base_url.rstrip('/')}/v1/model",
        "topic": {
            "system": LOCAL_SYSTEM,
            "code": SERVICE_ID,
            "display": "NET embolotherapy prognosis",
        },
    }


def prognosis_card(
    prognosis: Mapping[str, Any],
    mapped: MappedPatient,
    *,
    base_url: str,
    missing_prefetch: Sequence[str] = (),
) -> dict:
    """The card of a prognosis; its uuid is the prediction's id (feedback refers to it)."""
    codes = {w["code"] for w in prognosis.get("warnings", [])}
    warn = bool(codes & set(_CARD_WARNING_CODES)) or bool(missing_prefetch)
    card_uuid = prognosis["prediction_id"]
    return {
        "uuid": card_uuid,
        "summary": card_summary(prognosis),
        "detail": card_detail(prognosis, mapped, missing_prefetch),
        "indicator": "warning" if warn else "info",
        "source": _source(base_url, prognosis),
        "suggestions": [
            {
                "label": f"Record the decision: {modality}",
                "uuid": suggestion_uuid(card_uuid, modality),
                "isRecommended": False,
            }
            for modality in MODALITIES
        ],
        "selectionBehavior": "at-most-one",
        "overrideReasons": [dict(reason) for reason in OVERRIDE_REASONS],
        "links": [
            {
                "label": "Open in the NetPrognosis form",
                "url": form_url(base_url, mapped.patient),
                "type": "absolute",
            }
        ],
    }


def missing_card(
    issues: Sequence[FhirIssue], missing_prefetch: Sequence[str], *, base_url: str
) -> dict:
    """The card of a request that lacks what the model needs: one line per missing item."""
    needed = [key for key in _NEEDED_PREFETCH if key in missing_prefetch]
    lines = ["The prognosis needs data this request did not carry:", ""]
    if missing_prefetch:
        lines.append(
            f"- not sent by the EHR (prefetch): {', '.join(missing_prefetch)}"
            + (" — without these no prognosis is possible" if needed else "")
        )
    lines += [f"- {issue.message}" for issue in issues]
    return {
        "uuid": str(uuid.uuid4()),
        "summary": f"No prognosis: {len(issues)} item(s) the model needs are missing (see details)",
        "detail": "\n".join(lines),
        "indicator": "info",
        "source": _source(base_url, None),
    }


# --- feedback ----------------------------------------------------------------------------------


def feedback_entries(service_id: str, body: object) -> list[dict]:
    """The feedback entries of a CDS Hooks feedback request, checked.

    Returns
    -------
    list of dict
        One per entry: ``card`` (the prediction id), ``outcome``, ``chosen_modality`` (from an
        accepted suggestion, else None), ``override_reason`` (system and code, else None) and
        ``entry`` (the whole entry, to be digested, never stored).

    Raises
    ------
    CdsRequestError
        The body does not follow CDS Hooks 2.0 feedback.
    """
    entries = body.get("feedback") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CdsRequestError('the body must be {"feedback": [...]} with at least one entry')
    return [_feedback_entry(service_id, index, entry) for index, entry in enumerate(entries)]


def _feedback_entry(service_id: str, index: int, entry: object) -> dict:
    where = f"feedback[{index}]"
    if not isinstance(entry, dict):
        raise CdsRequestError(f"{where} must be an object")
    card = entry.get("card")
    if not isinstance(card, str) or not _UUID.match(card):
        raise CdsRequestError(f"{where}.card must be the uuid of a card")
    card = card.removeprefix("urn:uuid:").lower()
    outcome = entry.get("outcome")
    if outcome not in FEEDBACK_OUTCOMES:
        raise CdsRequestError(f"{where}.outcome must be accepted or overridden")
    if not isinstance(entry.get("outcomeTimestamp"), str):
        raise CdsRequestError(f"{where}.outcomeTimestamp (an ISO 8601 instant) is required")
    suggestion_ids = _suggestion_ids(entry.get("acceptedSuggestions"), where)
    override = entry.get("overrideReason")
    if override is not None and not isinstance(override, dict):
        raise CdsRequestError(f"{where}.overrideReason must be an object")
    chosen = None
    if outcome == "accepted":
        if not suggestion_ids:
            raise CdsRequestError(f"{where}: an accepted outcome needs acceptedSuggestions")
        chosen = next((m for m in MODALITIES if suggestion_uuid(card, m) in suggestion_ids), None)
    reason = None
    if outcome == "overridden" and override is not None:
        coding = override.get("reason")
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            reason = _known_reason(coding)
    return {
        "service": service_id,
        "card": card,
        "outcome": outcome,
        "chosen_modality": chosen,
        "override_reason": reason,
        "entry": entry,
    }


def _suggestion_ids(accepted: object, where: str) -> set[str]:
    """The ids of the accepted suggestions (none when absent), lower case without `urn:uuid:`."""
    if accepted is None:
        return set()
    if not isinstance(accepted, list) or not all(isinstance(s, dict) for s in accepted):
        raise CdsRequestError(f"{where}.acceptedSuggestions must be a list of objects")
    return {str(s.get("id", "")).removeprefix("urn:uuid:").lower() for s in accepted}


def _known_reason(coding: Mapping[str, Any]) -> dict:
    """An override reason in clear when it is one of ours, else only that it was another."""
    for reason in OVERRIDE_REASONS:
        if coding.get("system") == reason["system"] and coding.get("code") == reason["code"]:
            return {"system": reason["system"], "code": reason["code"]}
    # Reasons from the EHR's own list could carry free text in their code: kept as a digest.
    return {"system": "other", "code": "other"}


# --- HTTP --------------------------------------------------------------------------------------

cds_app = FastAPI(title="NetPrognosis CDS Hooks", docs_url=None, redoc_url=None, openapi_url=None)
"""Mounted at `/` by the service; it holds only the `/cds-services` routes."""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _answer_hook(service: Any, request: Request, service_id: str, body: bytes) -> Response:
    try:
        raw = read_json(body)
        hook_request = parse_hook_request(service_id, raw)
        planned = selected_orders(hook_request) if hook_request.hook == "order-select" else None
        if planned is not None and not plans_embolization(planned):
            # the order being selected is not an embolization: nothing to say, nothing to fetch
            return JSONResponse({"cards": []})
        resources, missing = prefetch_resources(hook_request)  # what was sent: 400 first
        fetched = complete_prefetch(
            hook_request.prefetch,
            templates=prefetch_templates(),
            patient_id=hook_request.patient_id,
            body=raw,
            plan=plan_for(request.scope.get("state", {}).get(CDS_CLIENT_STATE_KEY)),
        )
        if missing and fetched != hook_request.prefetch:
            hook_request = dataclasses.replace(hook_request, prefetch=fetched)
            resources, missing = prefetch_resources(hook_request)
    except PrefetchUnavailable as error:
        logger.info("CDS Hooks request refused (412): prefetch missing (%s)", error.reason)
        return JSONResponse(precondition_outcome(error), status_code=412, media_type=FHIR_JSON)
    except CdsRequestError as error:
        logger.info("CDS Hooks request refused (400): not a valid %s request", service_id)
        return _error(400, str(error))
    except FhirInputError as error:
        logger.info(
            "CDS Hooks request refused (400): %d FHIR issue(s) of kind %s (values are not logged)",
            len(error.issues),
            error.kinds(),
        )
        return JSONResponse(error.operation_outcome(), status_code=400)
    base = _base_url(request)
    ruled = apply_record_rules(resources, planned=planned)
    try:
        mapped = map_patient(ruled.resources, planned=planned)
    except FhirBundleIncomplete as error:
        logger.info(
            "CDS Hooks %s: no prognosis, %d item(s) missing (values are not logged)",
            service_id,
            len(error.issues),
        )
        return JSONResponse({"cards": [missing_card(error.issues, missing, base_url=base)]})
    answer = audited_prognosis(service, request, f"{ROUTE_DISCOVERY}/{service_id}", mapped, dict)
    if answer.status_code != 200:
        return answer
    prognosis = json.loads(answer.body)
    prognosis["warnings"] = [*prognosis.get("warnings", []), *ruled.warnings]
    card = prognosis_card(prognosis, mapped, base_url=base, missing_prefetch=missing)
    card["suggestions"].append(
        risk_assessment_suggestion(
            prognosis, mapped.provenance, patient_id=hook_request.patient_id, card_uuid=card["uuid"]
        )
    )
    return JSONResponse({"cards": [card]})


def _record_feedback(service: Any, request: Request, service_id: str, body: bytes) -> Response:
    try:
        entries = feedback_entries(service_id, read_json(body))
    except (CdsRequestError, FhirValidationError) as error:
        logger.info("CDS Hooks feedback refused (400): not valid CDS Hooks 2.0 feedback")
        message = str(error) if isinstance(error, CdsRequestError) else "the body must be JSON"
        return _error(400, message)
    caller = caller_id(request.scope.get("state", {}).get(CALLER_STATE_KEY))
    records = [
        AuditEntry(
            prediction_id=entry["card"],
            route=f"{ROUTE_DISCOVERY}/{service_id}/feedback",
            model_tag=service.model_tag,
            caller=caller,
            input_hmac=service.audit.input_digest(entry["entry"]),
            kind="feedback",
            feedback={
                k: entry[k] for k in ("service", "outcome", "chosen_modality", "override_reason")
            },
        )
        for entry in entries
    ]
    try:
        service.audit.append(records)
    except (AuditWriteError, AuditIntegrityError) as error:
        logger.error("feedback refused, not audited: %s", error)
        return _error(503, f"feedback refused: {error.public_message}")
    return Response(status_code=200)


Service = Annotated[Any, Depends(bentoml.get_current_service)]


async def _dispatch(handler, service: Any, request: Request, service_id: str) -> Response:
    """Check the media type and service id, then run `handler` off the event loop."""
    rejection = media_type_rejection(request, ("application/json",))
    if rejection is not None:
        return rejection
    if service_id not in HOOKS:
        return _error(404, f"no CDS service with this id; the services are {', '.join(HOOKS)}")
    body = await request.body()
    return await anyio.to_thread.run_sync(handler, service, request, service_id, body)


@cds_app.get(ROUTE_DISCOVERY, summary="CDS Hooks discovery")
def cds_discovery(request: Request) -> Response:
    """The CDS Hooks 2.0 discovery document: the services, their hooks and prefetch."""
    return JSONResponse(discovery())


@cds_app.post(ROUTE_DISCOVERY + "/{service_id}", summary="Call a CDS service")
async def cds_service(request: Request, service_id: str, service: Service) -> Response:
    """A CDS Hooks 2.0 call: `{"cards": [...]}`, one card (the prognosis, or what is missing)."""
    return await _dispatch(_answer_hook, service, request, service_id)


@cds_app.post(ROUTE_DISCOVERY + "/{service_id}/feedback", summary="Feedback on a card")
async def cds_feedback(request: Request, service_id: str, service: Service) -> Response:
    """CDS Hooks 2.0 feedback: each entry becomes a `feedback` record of the audit log."""
    return await _dispatch(_record_feedback, service, request, service_id)
