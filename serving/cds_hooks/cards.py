"""The cards: a prognosis's summary, comparison and caveats, or what the request lacked."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from model.schema import MODALITIES, Patient
from serving.cds_hooks.discovery import LOCAL_SYSTEM, NEEDED_PREFETCH, OVERRIDE_REASONS, SERVICE_ID
from serving.fhir import FhirIssue, MappedPatient
from serving.harms import harms_markdown

__all__ = [
    "INCIDENCE_CARD_MONTHS",
    "SUMMARY_MAX",
    "card_detail",
    "card_summary",
    "form_url",
    "incidence_line",
    "missing_card",
    "prognosis_card",
    "suggestion_uuid",
]

SUMMARY_MAX = 139
"""CDS Hooks 2.0: the summary is a "<140-character" sentence."""
_SUGGESTION_NAMESPACE = uuid.UUID("6f1c9d2e-3b4a-5c6d-8e7f-0a1b2c3d4e5f")
_CARD_WARNING_CODES = ("modality_extrapolated", "models_disagree")


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
    harms = harms_markdown(prognosis.get("procedure_harms"))
    if harms:
        lines += ["", *harms]
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
    needed = [key for key in NEEDED_PREFETCH if key in missing_prefetch]
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
