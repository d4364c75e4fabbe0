"""The model card served at `GET /v1/model`: what answers, trained on what, for what use."""

from __future__ import annotations

import json
import math
from pathlib import Path

import bentoml

from model.bundle import ModelBundle
from model.intended_use import INTENDED_USE, LIMITATIONS
from model.predictor import REAL_DISCLAIMER, SYNTHETIC_DISCLAIMER

__all__ = ["OUT_OF_SCOPE", "STORED_CARD_FILE", "build_model_card"]

STORED_CARD_FILE = "model_card.json"
"""The full TRIPOD+AI model card that training stores beside the bundle (checksummed)."""

OUT_OF_SCOPE = [
    "Any clinical use of a model whose training data is labelled 'synthetic'.",
    "Deciding treatment without clinicians: the output informs a tumour board, it does not "
    "replace it.",
    "Patients unlike the training cohort: under 18 or over 100 years, treatments other than "
    "TACE, TAE or SIRT (e.g. resection, PRRT alone), or tumours not of neuroendocrine origin.",
    "Reading the modality comparison as a randomised, causal effect.",
]
_DATA_DESCRIPTIONS = {
    "synthetic": (
        "A simulated cohort calibrated to published aggregate results (see data/README.md); "
        "it holds no patient records."
    ),
    "real": "A registered institutional cohort; see the training report for its description.",
}


def build_model_card(stored: bentoml.Model, bundle: ModelBundle) -> dict:
    """The model card of a registered bundle, JSON-ready.

    Parameters
    ----------
    stored : bentoml.Model
        The store entry (tag, registration time).
    bundle : ModelBundle
        The loaded bundle (its metadata holds the training data and the metrics).
    """
    metadata = bundle.metadata
    label = "real" if metadata.get("trained_on") == "real" else "synthetic"
    return {
        "name": stored.tag.name,
        "tag": str(stored.tag),
        "version": stored.tag.version or "",
        "schema_version": bundle.schema_version,
        "registered_at": stored.info.creation_time.isoformat(timespec="seconds"),
        "training_data": {
            "label": label,
            "description": _DATA_DESCRIPTIONS[label],
            "n_patients": metadata.get("n_patients"),
            "n_events": metadata.get("n_events"),
            "data_fingerprint": metadata.get("data_fingerprint"),
            "trained_at": metadata.get("trained_at"),
            "source": metadata.get("source"),
        },
        "models": {
            "primary": dict(bundle.primary),
            "families": {endpoint: sorted(models) for endpoint, models in bundle.models.items()},
            "n_bootstrap": metadata.get("n_bootstrap"),
            "seed": metadata.get("seed"),
            "max_follow_up_months": {
                endpoint: round(float(months), 1)
                for endpoint, months in bundle.max_follow_up_months.items()
            },
        },
        "uncertainty": metadata.get("uncertainty"),
        "evidence_base": evidence_summary(metadata.get("evidence_base")),
        "metrics": _finite(metadata.get("metrics")),
        "held_out_metrics": _finite(metadata.get("held_out_metrics")),
        "intended_use": INTENDED_USE,
        "out_of_scope": OUT_OF_SCOPE,
        "limitations": LIMITATIONS,
        "disclaimer": SYNTHETIC_DISCLAIMER if label == "synthetic" else REAL_DISCLAIMER,
        "details": _finite(_stored_card(stored)),
    }


def evidence_summary(evidence: dict | None) -> dict | None:
    """The real patients behind a model built from published aggregates, for readers.

    None for a model trained on a registry. Each grade's line says how many patients of that
    grade the source studies hold and, per modality, about how many of them received it; a
    modality comparison on fewer than the minimum carries a support warning in every answer.
    """
    if not evidence:
        return None
    minimum = evidence["min_source_patients"]
    subgroups = []
    for grade, n_grade in evidence["patients_by_grade"].items():
        by_modality = evidence["patients_by_grade_and_modality"][grade]
        few = [m for m, n in by_modality.items() if n < minimum]
        text = (
            f"{grade}: about {n_grade} patients in the source studies ("
            + ", ".join(f"{m} about {n}" for m, n in by_modality.items())
            + ")."
        )
        if few:
            text += (
                f" The modality comparison in {grade} rests on very few patients (fewer than "
                f"{minimum} for {', '.join(few)}): every answer carries a support warning there."
            )
        subgroups.append(
            {"grade": grade, "patients": n_grade, "by_modality": by_modality, "text": text}
        )
    return {
        "sources": evidence["sources"],
        "subgroups": subgroups,
        "min_source_patients": minimum,
        "assumption": evidence["assumption"],
    }


def _stored_card(stored: bentoml.Model) -> dict | None:
    path = Path(stored.path_of(STORED_CARD_FILE))
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _finite(value):
    """`value` with NaN and infinities replaced by None: JSON has no such numbers."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
