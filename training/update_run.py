"""`netprog update`: a registered model updated to one centre's patients and registered anew.

The local cohort goes through the same loading and validation as a training cohort
(:func:`training.cohorts.resolve_cohort`); per endpoint and model family the updating method
is chosen by the data (:mod:`training.updating`) and applied (:mod:`training.update_apply`).
The result is an ordinary bundle: the same intervals, explanations and modality comparison,
with a model card that records the path chosen, the tests behind it and the local numbers.
It is registered as a candidate; promotion goes through the gate (:mod:`training.gate`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from model.bundle import ModelBundle
from model.schema import ENDPOINTS, FEATURE_NAMES, encode
from store import registry
from training.cohorts import canonical_order, check_label, split_holdout
from training.exceptions import RegistryError, UpdateInputError
from training.fit import component_targets, data_fingerprint, survival_target
from training.update_imputed import completed_copies, is_incomplete, pooled_update
from training.updating import METHODS, Component, Decision, choose_method, expected_events
from training.validate import validate_cohort

__all__ = ["MIN_LOCAL_EVENTS", "UpdateRun", "choose_methods", "update", "update_bundle"]

logger = logging.getLogger(__name__)

MIN_LOCAL_EVENTS = 10
"""Fewest local events per endpoint: below it no test has the power to change anything, and
the re-estimated baseline would rest on a handful of events."""


@dataclass
class UpdateRun:
    """What one `netprog update` produced."""

    tag: str
    base_tag: str
    bundle: ModelBundle
    decisions: dict
    timings: dict[str, float] = field(default_factory=dict)


def load_base(tag: str | None) -> tuple[str, ModelBundle]:
    """The registered model to update: `tag`, else production; a clear error if there is none."""
    try:
        base_tag = tag or registry.production_tag()
        if base_tag is None:
            raise UpdateInputError(
                "there is no production model to update; name one with --from TAG (see "
                "`netprog models`) or train one with `netprog train`"
            )
        stored = registry.get_model(base_tag)
        return str(stored.tag), registry.load_bundle(str(stored.tag))
    except RegistryError as error:
        raise UpdateInputError(
            f"cannot update from {tag!r}: {error}. `netprog models` lists the registered tags"
        ) from None


def check_local(cohort: pd.DataFrame, bundle: ModelBundle) -> None:
    """Refuse a base model of another schema or a cohort with too few events per endpoint."""
    if tuple(bundle.feature_names) != FEATURE_NAMES:
        raise UpdateInputError(
            f"the model to update was trained on patient schema {bundle.schema_version}, whose "
            "design columns differ from this version's; retrain it with `netprog train`"
        )
    for endpoint in ENDPOINTS:
        events = int(cohort[f"{endpoint}_event"].sum())
        if events < MIN_LOCAL_EVENTS:
            raise UpdateInputError(
                f"the local cohort must have at least {MIN_LOCAL_EVENTS} {endpoint.upper()} "
                f"events to update a model, but has {events} among {len(cohort)} patients; "
                "collect more follow-up, or use the model unchanged"
            )


def choose_methods(bundle: ModelBundle, cohort: pd.DataFrame) -> dict[str, dict[str, Decision]]:
    """Per endpoint and family, the updating method the local patients justify."""
    design = encode(cohort)
    matrix = design.to_numpy(dtype=float)
    targets = component_targets(cohort)
    decisions: dict[str, dict[str, Decision]] = {}
    for endpoint in ENDPOINTS:
        target = survival_target(cohort, endpoint)
        decisions[endpoint] = {}
        for name, model in bundle.models[endpoint].items():
            linear = model.full.coef is not None
            components = [
                Component(matrix @ c.coef, t["event"], t["months"])
                for c, t in zip(model.components, targets[endpoint], strict=linear)
            ]
            survival = model.survival(matrix)
            split = float(np.median(target["months"][target["event"]]))
            decisions[endpoint][name] = choose_method(
                log_hazard=model.full.log_hazard(matrix),
                expected=expected_events(survival, target["months"]),
                expected_early=expected_events(survival, np.minimum(target["months"], split)),
                split=split,
                event=target["event"],
                months=target["months"],
                design=matrix if linear else None,
                components=components if linear else None,
                names=tuple(design.columns),
                max_method=4 if linear else 2,
            )
    return decisions


def update_bundle(
    bundle: ModelBundle, cohort: pd.DataFrame, *, seed: int = 0, cohort_label: str = "real"
) -> tuple[ModelBundle, dict[str, dict[str, Decision]]]:
    """`bundle` updated to the validated local `cohort`; the decisions per endpoint and family.

    A cohort with missing predictors is imputed as training imputes it and the update pooled
    over the imputations (:mod:`training.update_imputed`). Nothing is registered:
    :func:`update` does that. The propensity model, support counts,
    explanation background and similar-patient tables stay those of the original training
    cohort, which the coefficients still rest on.
    """
    check_local(cohort, bundle)
    copies, missing = [cohort], None
    if is_incomplete(cohort):
        copies, missing = completed_copies(cohort, seed)
    decisions = choose_methods(bundle, copies[0])
    models = pooled_update(bundle, copies, decisions, seed)
    metadata = {
        **bundle.metadata,
        "trained_on": cohort_label,
        "data_fingerprint": data_fingerprint(cohort),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "n_patients": len(cohort),
        "n_events": {e: int(cohort[f"{e}_event"].sum()) for e in ENDPOINTS},
        "updating": _updating_record(bundle, decisions, cohort),
    }
    if missing is not None:
        metadata["missing_data"] = missing
        metadata["updating"]["imputation"] = (
            f"{missing['n_incomplete']} of {len(cohort)} local patients lacked a predictor: "
            f"the method was chosen on the first of {len(copies)} imputations (MICE) and "
            "applied to each, the Cox components pooled by Rubin's rules"
        )
    return dataclasses.replace(bundle, models=models, metadata=metadata), decisions


def _updating_record(bundle: ModelBundle, decisions, cohort: pd.DataFrame) -> dict:
    return {
        "from": bundle.metadata.get("tag"),
        "from_trained_on": bundle.metadata.get("trained_on"),
        "from_n_patients": bundle.metadata.get("n_patients"),
        "n_local": len(cohort),
        "local_events": {e: int(cohort[f"{e}_event"].sum()) for e in ENDPOINTS},
        "methods": METHODS,
        "paths": {
            endpoint: {name: d.as_dict() for name, d in families.items()}
            for endpoint, families in decisions.items()
        },
        "primary_path": {
            endpoint: decisions[endpoint][bundle.primary[endpoint]].method for endpoint in ENDPOINTS
        },
        "procedure": "closed testing (Vergouwe et al., Stat Med 2017) for recalibration, "
        "Bonferroni score screen for revision, likelihood ratio for a full refit; "
        "docs/retraining.md",
        "metrics_note": "metrics and held_out_metrics are the original model's; the update's "
        "own evaluation is the promotion gate's",
    }


def update(
    cohort: pd.DataFrame,
    *,
    cohort_label: str,
    base_tag: str | None = None,
    seed: int = 0,
    holdout_fraction: float = 0.0,
    source: str | None = None,
    progress: Callable[[str], None] = lambda step: None,
) -> UpdateRun:
    """Update the model `base_tag` (default: production) to `cohort` and register the result.

    With `holdout_fraction` > 0 that share of the local patients (the training rule on
    patient ids, :mod:`training.holdout`) is kept out of the update and stored as the new
    model's held-out rows for the promotion gate; by default every local patient is used,
    as a small centre cannot spare any.
    """
    from training.update_card import extras_writer

    timings: dict[str, float] = {}
    started = time.perf_counter()
    progress("validating the local cohort")
    label = check_label(cohort, cohort_label)
    cohort = canonical_order(validate_cohort(cohort))
    held_out = cohort.iloc[:0]
    if holdout_fraction > 0:
        cohort, held_out = split_holdout(cohort, holdout_fraction)
    base_tag, bundle = load_base(base_tag)
    progress(f"updating {base_tag}")
    updated, decisions = update_bundle(bundle, cohort, seed=seed, cohort_label=label)
    updated.metadata["source"] = source or "in-memory cohort"
    updated.metadata["holdout"] = {
        "rule": "none: every local patient updates the model" if held_out.empty else "patient id",
        "fraction": holdout_fraction,
        "n_patients": len(held_out),
        "n_development": len(cohort),
        "n_events": {e: int(held_out[f"{e}_event"].sum()) for e in ENDPOINTS},
    }
    timings["update"] = round(time.perf_counter() - started, 3)
    progress("registering the updated model")
    tag = registry.save_bundle(updated, extras_writer(updated, cohort, held_out))
    timings["total"] = round(time.perf_counter() - started, 3)
    logger.info("registered %s, updated from %s", tag, base_tag)
    return UpdateRun(tag, base_tag, updated, decisions, timings)
