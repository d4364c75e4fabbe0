"""The model card of an updated model: what it was updated from, on what, and by which path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from model.bundle import ModelBundle
from model.intended_use import INTENDED_USE, LIMITATIONS
from store import registry, training_store
from training import evaluate
from training.holdout import patient_hashes
from training.model_card import ELIGIBILITY, OUTCOME_DEFINITIONS, predictors_table

__all__ = ["LOCAL_ROWS_FILE", "build_update_card", "extras_writer", "render_update_markdown"]

LOCAL_ROWS_FILE = registry.LOCAL_ROWS_FILE
"""The local patients an update was estimated on, kept in the training-side store (never in the
model's folder) so that the gate can re-run the update on bootstrap resamples of them
(:mod:`training.gate_optimism`)."""
UPDATE_LIMITATION = (
    "Updated, not retrained: the coefficients left unrevised, the modality-support model and "
    "the explanation background are the original training cohort's; only the parts the "
    "updating path names were re-estimated on the local patients."
)


def build_update_card(tag: str, bundle: ModelBundle, cohort: pd.DataFrame) -> dict[str, Any]:
    """JSON-ready card of an updated bundle (`bundle.metadata["updating"]` holds the path)."""
    metadata = bundle.metadata
    updating = metadata["updating"]
    synthetic = metadata["trained_on"] == "synthetic"
    warnings = [evaluate.SYNTHETIC_WARNING, evaluate.NOT_FOR_CLINICAL_USE] if synthetic else []
    return evaluate.to_jsonable(
        {
            "tag": tag,
            "schema_version": bundle.schema_version,
            "trained_at": metadata["trained_at"],
            "warnings": warnings,
            "updated_from": updating["from"],
            "data": {
                "label": metadata["trained_on"],
                "source": metadata.get("source"),
                "data_fingerprint": metadata["data_fingerprint"],
                "n_local": updating["n_local"],
                "local_events": updating["local_events"],
                "held_out": metadata.get("holdout"),
                "centres": sorted(map(str, cohort["center"].unique()))
                if "center" in cohort
                else [],
            },
            "eligibility": ELIGIBILITY,
            "outcomes": OUTCOME_DEFINITIONS,
            "predictors": predictors_table(),
            "updating": {
                "procedure": updating["procedure"],
                "methods": updating["methods"],
                "primary": dict(bundle.primary),
                "primary_path": updating["primary_path"],
                "paths": updating["paths"],
            },
            "intended_use": INTENDED_USE,
            "limitations": [*LIMITATIONS, UPDATE_LIMITATION],
        }
    )


def render_update_markdown(card: dict) -> str:
    """The updated model's card as a Markdown page."""
    lines = [f"# Model card: {card['tag']} (updated from {card['updated_from']})", ""]
    lines += [f"> **{warning}**" for warning in card["warnings"]]
    data = card["data"]
    lines += [
        "",
        f"Updated {card['trained_at']} on {data['n_local']} local patients ({data['label']}); "
        + ", ".join(f"{e.upper()} {n} events" for e, n in data["local_events"].items())
        + ".",
        "",
        "## Intended use",
        "",
        card["intended_use"],
        "",
        "## Updating path",
        "",
        card["updating"]["procedure"] + ".",
        "",
        "| endpoint | family | method | revised terms |",
        "|---|---|---|---|",
    ]
    for endpoint, families in card["updating"]["paths"].items():
        for name, path in families.items():
            primary = " (primary)" if card["updating"]["primary"][endpoint] == name else ""
            lines.append(
                f"| {endpoint} | {name}{primary} | {path['method']}: {path['description']} | "
                f"{', '.join(path['revised_terms']) or '–'} |"
            )
    lines += ["", "## Limitations", "", *[f"- {line}" for line in card["limitations"]], ""]
    return "\n".join(lines)


def extras_writer(bundle: ModelBundle, cohort: pd.DataFrame, held_out: pd.DataFrame):
    """What `registry.save_bundle` writes beside an updated bundle once its tag is known.

    The card (JSON and Markdown) into the model's folder; the local patients' keyed ids, their
    rows (:data:`LOCAL_ROWS_FILE`) and any held-out rows into the training-side store, never the
    model's folder.
    """

    def write_extras(tag: str, folder: Path) -> None:
        card = build_update_card(tag, bundle, cohort)
        (folder / "model_card.json").write_text(
            json.dumps(card, indent=1, allow_nan=False), encoding="utf-8"
        )
        (folder / "model_card.md").write_text(render_update_markdown(card), encoding="utf-8")
        ids = {"patient_sha256": sorted(patient_hashes(cohort["patient_id"]))}
        writers = {
            registry.TRAINING_IDS_FILE: lambda path: path.write_text(
                json.dumps(ids), encoding="utf-8"
            ),
            LOCAL_ROWS_FILE: lambda path: cohort.to_parquet(path, index=False),
        }
        if not held_out.empty:
            writers[registry.HOLDOUT_FILE] = lambda path: held_out.to_parquet(path, index=False)
        training_store.write_patient_files(tag, folder, writers)

    return write_extras
