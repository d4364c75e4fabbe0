"""The in-memory model bundle: fitted estimators per endpoint and what a prognosis needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from model.cox_inference import CoxCurves

MONTH_GRID = np.arange(0, 121, dtype=float)
"""Monthly grid, 0 to 120 months, on which every survival curve is returned."""


@dataclass
class CurveModel:
    """One fitted Cox-type estimator reduced to what fast prediction needs.

    The log relative hazard is either linear (`coef`, `intercept`) or a booster's margin;
    `baseline_cumulative_hazard` is H0 on :data:`MONTH_GRID`, so that
    S(t | x) = exp(-H0(t) exp(lp(x))).
    """

    estimator: Any
    baseline_cumulative_hazard: np.ndarray
    coef: np.ndarray | None = None
    intercept: float = 0.0

    @classmethod
    def from_estimator(cls, estimator, reference: pd.DataFrame) -> CurveModel:
        """Reduce a fitted `PenalizedCox` or `BoostedCox`; `reference` is any encoded rows."""
        reference = reference.iloc[:1]
        log_hazard = float(estimator.predict(reference)[0])
        cumulative = estimator.predict_cumulative_hazard_function(reference, return_array=True)[0]
        steps = np.searchsorted(estimator.unique_times_, MONTH_GRID, side="right") - 1
        on_grid = np.where(steps >= 0, cumulative[np.maximum(steps, 0)], 0.0)
        coef = getattr(estimator, "coef_", None)
        intercept = 0.0
        if coef is not None:
            coef = np.asarray(coef, dtype=float)
            intercept = log_hazard - float(reference.to_numpy()[0] @ coef)
        return cls(estimator, on_grid / np.exp(log_hazard), coef, intercept)

    def log_hazard(self, design: np.ndarray) -> np.ndarray:
        """Log relative hazard, shape = (n_samples,)."""
        if self.coef is not None:
            return design @ self.coef + self.intercept
        return self.estimator.booster_.inplace_predict(design, predict_type="margin")

    def survival(self, design: np.ndarray) -> np.ndarray:
        """Survival on the month grid, shape = (n_samples, len(MONTH_GRID))."""
        return np.exp(-np.outer(np.exp(self.log_hazard(design)), self.baseline_cumulative_hazard))


@dataclass
class EndpointModel:
    """One model family for one endpoint: the full-data fit and what its intervals come from.

    A linear (Cox) family carries `components`, the relaxed Cox fits whose summed cumulative
    hazards give the endpoint's survival with delta-method intervals
    (:class:`model.cox_inference.CoxCurves`): one for overall survival; for progression-free
    survival, the cause-specific models of hepatic progression and of death before it (which
    also give the cumulative incidence of progression). A boosted family carries bootstrap
    `members` instead.
    """

    name: str
    full: CurveModel
    members: list[CurveModel]
    training_log_hazard: np.ndarray
    """Sorted log relative hazards of the training cohort (for risk percentiles)."""
    components: list = field(default_factory=list)
    """:class:`model.cox_inference.BreslowInference` per component, on :data:`MONTH_GRID`."""

    def survival(self, design: np.ndarray) -> np.ndarray:
        """The served survival on the month grid, shape = (n_samples, len(MONTH_GRID)).

        From the components where the family has them (what a prognosis shows), else from the
        full fit; evaluation and the promotion gate judge this curve.
        """
        if self.components:
            return CoxCurves(self.components).survival(design)
        return self.full.survival(design)

    def member_survival(self, design: np.ndarray) -> np.ndarray:
        """Survival of every ensemble member, shape = (n_members, n_samples, len(MONTH_GRID))."""
        linear = [m for m in self.members if m.coef is not None]
        if len(linear) == len(self.members):
            coefs = np.column_stack([m.coef for m in linear if m.coef is not None])
            intercepts = np.array([m.intercept for m in linear])
            log_hazard = design @ coefs + intercepts
            baselines = np.stack([m.baseline_cumulative_hazard for m in linear])
            return np.exp(-np.exp(log_hazard).T[:, :, None] * baselines[:, None, :])
        return np.stack([m.survival(design) for m in self.members])


@dataclass
class ModelBundle:
    """Everything one training run produced that a prognosis needs.

    Attributes
    ----------
    models : dict
        `models[endpoint][name]` is an :class:`EndpointModel`, endpoint in ("hpfs", "os"),
        name in ("coxnet", "xgboost").
    primary : dict
        The primary model name per endpoint, chosen by cross-validated performance.
    propensity : estimator
        Multinomial model of the modality received given the baseline factors; its
        `predict_proba` takes :func:`model.schema.encode` output restricted to
        `propensity_features` and returns columns in `propensity.classes_` order.
    support_counts : DataFrame
        Training patients per (who_grade, burden_category) row and modality column.
    shap_background : DataFrame, shape = (n_background, n_features)
        The SHAP background: weighted cluster centres of the encoded training patients
        (model/background.py), never their rows; bundles before it held a random sample.
    max_follow_up_months : dict
        Per endpoint, the last month adequately followed: at least
        ``max(50, 5 % of the cohort)`` training patients still at risk.
    metadata : dict
        tag, trained_on ("synthetic" or "real"), data fingerprint, training time, metrics, ...
    """

    schema_version: str
    feature_names: tuple[str, ...]
    models: dict[str, dict[str, EndpointModel]]
    primary: dict[str, str]
    propensity: Any
    propensity_features: tuple[str, ...]
    support_counts: pd.DataFrame
    shap_background: pd.DataFrame
    max_follow_up_months: dict[str, float]
    metadata: dict = field(default_factory=dict)
    numbers_at_risk: dict[str, dict[int, int]] = field(default_factory=dict)
    """Training patients still followed (event-free, uncensored) at each whole year, per
    endpoint: ``{endpoint: {month: n}}`` for months 0, 12, ..., 120."""
    imputer: Any = None
    """:class:`model.unknown_fields.PredictionImputer`: the distribution of each imputable
    field given the others, for patients who leave it unknown (coefficients, no rows)."""
    similar_patients: dict = field(default_factory=dict)
    """What "patients like this one" needs (:func:`model.similar.similarity_tables`): per
    endpoint, family and grade-by-burden stratum, fixed groups of training patients' aggregates
    (size, events, Kaplan-Meier curve, numbers at risk); no patient's row."""
    shap_background_weights: np.ndarray | None = None
    """Each background centre's share of the training patients (None: equal weights)."""
    shap_background_patients: int | None = None
    """How many training patients the background summarises."""


def is_linear(model: CurveModel) -> bool:
    """Whether the model's log hazard is linear in the design (exact SHAP applies)."""
    return model.coef is not None


def booster(model: CurveModel) -> xgb.Booster:
    """The xgboost booster of a boosted model."""
    return model.estimator.booster_
