"""Fitting the prediction-time imputation models: each imputable field given the others.

Multinomial (for two levels, binary) logistic regressions of each imputable quantity's
category on the patient's other predictors (:func:`model.unknown_fields.other_features`),
fitted on the training patients who recorded it, the others' missing predictors taken from the
completed cohorts (stacked over the imputations, so their uncertainty counts). No outcome, no
modality and no centre enter: a prognosis has neither outcome nor centre, and the planned
modality is a decision, not a patient characteristic. Only coefficients and per-category mean
burdens are kept (:class:`model.unknown_fields.PredictionImputer`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from model.schema import (
    BURDEN_BANDS,
    BURDEN_CATEGORIES,
    GRADES,
    IMPUTED_QUANTITIES,
    effective_grades,
    encode,
)
from model.unknown_fields import FieldModel, PredictionImputer, level_values, other_features

__all__ = ["fit_prediction_imputer"]


def _codes(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name == "who_grade":
        return np.searchsorted(GRADES, effective_grades(frame).astype(str).to_numpy())
    if name == "tumor_burden_percent":
        return BURDEN_BANDS.positions(frame[name].to_numpy(dtype=float))
    return frame[name].astype(bool).to_numpy().astype(int)


def _burden_means(completed: pd.DataFrame) -> dict[str, float]:
    burden = completed["tumor_burden_percent"].to_numpy(dtype=float)
    positions = BURDEN_BANDS.positions(burden)
    midpoints = (12.5, 37.5, 62.5, 87.5)
    return {
        category: round(float(burden[positions == k].mean()), 1)
        if (positions == k).any()
        else midpoints[k]
        for k, category in enumerate(BURDEN_CATEGORIES)
    }


def _fit_field(name, design, codes, seed, burden_means) -> FieldModel | None:
    levels, level_names = level_values(name, burden_means)
    present = np.unique(codes)
    if len(present) < 2:
        return None
    features = other_features(name)
    model = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    model.fit(design[list(features)].to_numpy(), codes)
    coef = np.zeros((len(levels), len(features)))
    intercept = np.full(len(levels), -50.0)
    if len(model.classes_) == 2:
        coef[model.classes_[1]] = model.coef_[0]
        intercept[model.classes_[0]], intercept[model.classes_[1]] = 0.0, model.intercept_[0]
    else:
        coef[model.classes_] = model.coef_
        intercept[model.classes_] = model.intercept_
    return FieldModel(name, levels, level_names, features, coef, intercept)


def fit_prediction_imputer(
    completed: list[pd.DataFrame], missing: pd.DataFrame, seed: int = 0
) -> PredictionImputer:
    """The imputation models a prognosis uses for unknown fields.

    Parameters
    ----------
    completed : list of DataFrame
        The training cohort completed by each imputation (one frame for a complete cohort).
    missing : DataFrame
        :func:`training.imputation.missing_mask` of the training cohort.
    """
    stacked = pd.concat(completed, ignore_index=True)
    design = encode(stacked, modality="TACE")
    observed = ~np.tile(missing.to_numpy(), (len(completed), 1))
    burden_means = _burden_means(completed[0].loc[~missing["tumor_burden_percent"].to_numpy()])
    models = {}
    for j, name in enumerate(IMPUTED_QUANTITIES):
        rows = observed[:, j]
        fitted = _fit_field(
            name, design.loc[rows], _codes(stacked.loc[rows], name), seed, burden_means
        )
        if fitted is not None:
            models[name] = fitted
    return PredictionImputer(models=models, seed=seed)
