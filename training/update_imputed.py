"""Model updating on a local cohort with missing predictors: the update on every imputation, pooled.

The local patients' missing predictors are imputed as training imputes them
(:func:`training.imputation.impute_cohort`, MICE with the outcome in the imputation models).
The updating method is chosen on the first completed copy, then applied to every copy, and
the Cox components are pooled by Rubin's rules (:func:`training.imputed_fit.pool_components`),
so that the intervals carry the imputation's uncertainty; the full-data fit is the average of
the copies'. A boosted model cannot be averaged: its update on the first copy is kept.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from model.background import risk_quantiles
from model.bundle import EndpointModel, ModelBundle
from model.schema import ENDPOINTS, encode
from training.imputation import impute_cohort, is_incomplete, n_imputations
from training.imputed_fit import pool_components
from training.missing_data import missing_data_record
from training.update_apply import update_family
from training.updating import Decision

__all__ = ["completed_copies", "is_incomplete", "pooled_update"]


def completed_copies(cohort: pd.DataFrame, seed: int) -> tuple[list[pd.DataFrame], dict]:
    """The local cohort completed `m` times, and the missing-data record for the card."""
    m = n_imputations(cohort)
    return impute_cohort(cohort, m, seed), missing_data_record(cohort, m)


def _pooled(models: list[EndpointModel], design: np.ndarray) -> EndpointModel:
    first = models[0]
    if first.full.coef is None or len(models) == 1:
        return first
    full = dataclasses.replace(
        first.full,
        coef=np.mean([m.full.coef for m in models], axis=0),
        intercept=float(np.mean([m.full.intercept for m in models])),
        baseline_cumulative_hazard=np.mean(
            [m.full.baseline_cumulative_hazard for m in models], axis=0
        ),
    )
    components = [
        pool_components([m.components[i] for m in models]) for i in range(len(first.components))
    ]
    return EndpointModel(first.name, full, [], risk_quantiles(full.log_hazard(design)), components)


def pooled_update(
    bundle: ModelBundle,
    copies: list[pd.DataFrame],
    decisions: dict[str, dict[str, Decision]],
    seed: int,
) -> dict[str, dict[str, EndpointModel]]:
    """Every family of every endpoint updated on each completed copy, pooled over the copies."""
    designs = [encode(copy) for copy in copies]
    models: dict[str, dict[str, EndpointModel]] = {}
    for endpoint in ENDPOINTS:
        models[endpoint] = {}
        for name, model in bundle.models[endpoint].items():
            decision = decisions[endpoint][name]
            runs = copies if model.full.coef is not None else copies[:1]
            updated = [
                update_family(model, decision, design, copy, endpoint, seed)
                for copy, design in zip(runs, designs, strict=False)
            ]
            models[endpoint][name] = (
                model if decision.method == 0 else _pooled(updated, designs[0].to_numpy(float))
            )
    return models
