"""Calibration (grouped table and slope) and decision curves of predicted survival."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from training.evaluate.common import (
    _MIN_COLUMN_VARIANCE,
    DECISION_HORIZON,
    _as_finite,
    _fit_cox,
    _outcomes,
)
from training.evaluate.kaplan_meier import kaplan_meier_at, kaplan_meier_survival_at
from training.exceptions import EvaluationInputError

CALIBRATION_GROUPS = 10
DECISION_THRESHOLDS = tuple(np.round(np.arange(0.05, 0.5001, 0.01), 2).tolist())

# A predicted survival of exactly 0 or 1 has no finite log cumulative hazard; these bounds keep
# the calibration-slope covariate finite without moving any realistic prediction.
_SURVIVAL_CLIP = (1e-12, 1.0 - 1e-12)


def calibration_table(
    y_test, predicted_survival, horizon: float, n_groups: int = CALIBRATION_GROUPS
) -> pd.DataFrame:
    """Predicted against observed survival at `horizon` by group of predicted risk.

    Patients are split into `n_groups` equal-sized groups by rank of predicted survival (tied
    predictions are split by row order, so groups stay equal-sized); the observed survival of
    each group is its Kaplan-Meier estimate, so censoring before the horizon is handled as in
    Royston and Altman's grouped calibration.

    Parameters
    ----------
    y_test : structured array, shape = (n_samples,)
        Observed outcomes.
    predicted_survival : array-like, shape = (n_samples,)
        Predicted probability of being event-free at `horizon`.
    horizon : float
        Months.
    n_groups : int
        Number of quantile groups (10 = deciles).

    Returns
    -------
    DataFrame, shape = (n_groups_used, 7)
        `group` (1 = lowest predicted survival), `n`, `events` (events by the horizon),
        `predicted` (mean predicted survival), `observed`, `observed_lower`, `observed_upper`.
    """
    event, time = _outcomes(y_test, "y_test")
    predicted = _as_finite(predicted_survival, "predicted_survival", time.shape)
    ranks = pd.Series(predicted).rank(method="first")
    groups = pd.qcut(ranks, q=min(n_groups, len(predicted)), labels=False, duplicates="drop")
    rows = []
    for number, members in pd.Series(np.arange(len(predicted))).groupby(groups.to_numpy()):
        index = members.to_numpy()
        observed, lower, upper = kaplan_meier_at(event[index], time[index], horizon)
        rows.append(
            {
                "group": int(number) + 1,
                "n": int(len(index)),
                "events": int((event[index] & (time[index] <= horizon)).sum()),
                "predicted": float(predicted[index].mean()),
                "observed": observed,
                "observed_lower": lower,
                "observed_upper": upper,
            }
        )
    return pd.DataFrame(rows)


def calibration_slope(y_test, predicted_survival, horizon: float) -> dict[str, float]:
    """Calibration slope at `horizon` from a Cox recalibration model.

    The covariate is the model's log predicted cumulative hazard at the horizon,
    ``log(-log S(horizon | x))``, and follow-up is administratively censored at the horizon. For
    a proportional-hazards model this covariate is the linear predictor plus a constant, so
    the coefficient is the classical calibration slope of the linear predictor (Cox 1958; van
    Houwelingen 2000): 1 when the predicted relative risks are right, below 1 when they are too
    extreme (overfitting), above 1 when too timid. For other models it still measures the spread
    of the predicted risks at the horizon against the observed outcomes.

    Returns
    -------
    dict
        `slope`, `lower`, `upper` (95 % Wald interval).
    """
    event, time = _outcomes(y_test, "y_test")
    predicted = _as_finite(predicted_survival, "predicted_survival", time.shape)
    covariate = np.log(-np.log(np.clip(predicted, *_SURVIVAL_CLIP)))
    if np.var(covariate) < _MIN_COLUMN_VARIANCE:
        raise EvaluationInputError(
            "`predicted_survival` must vary between patients for a calibration slope, but its "
            "log cumulative hazard is (nearly) constant"
        )
    frame = pd.DataFrame(
        {
            "duration": np.minimum(time, horizon),
            "event": (event & (time <= horizon)).astype(int),
            "log_cumulative_hazard": covariate,
        }
    )
    # The fitted parameters and intervals, not lifelines' `summary` (which also computes
    # p-values and a fresh frame): a quarter of the time of `netprog monitor`'s 50 slopes.
    fitted = _fit_cox(frame)
    interval = fitted.confidence_intervals_.loc["log_cumulative_hazard"]
    return {
        "slope": float(fitted.params_["log_cumulative_hazard"]),
        "lower": float(interval["95% lower-bound"]),
        "upper": float(interval["95% upper-bound"]),
    }


def decision_curve(
    y_test,
    event_probability,
    horizon: float = DECISION_HORIZON,
    thresholds: Sequence[float] = DECISION_THRESHOLDS,
) -> dict[str, Any]:
    """Net benefit of treating on predicted risk by `horizon`, for censored outcomes.

    Follows Vickers et al. (BMC Med Inform Decis Mak 2008;8:53): for threshold ``p_t`` the
    patients with predicted risk at least ``p_t`` are "treated"; their event proportion by the
    horizon is ``1 - KM_treated(horizon)``, so net benefit is
    ``f (1 - S) - f S p_t / (1 - p_t)`` with ``f`` the treated fraction and ``S`` their KM
    survival. Written by hand: neither sksurv nor lifelines has a survival decision curve.

    Parameters
    ----------
    y_test : structured array, shape = (n_samples,)
    event_probability : array-like, shape = (n_samples,)
        Predicted probability of the event by `horizon`, ``1 - S(horizon)``.
    horizon : float
        Months.
    thresholds : sequence of float in (0, 1)

    Returns
    -------
    dict
        `horizon`, `prevalence` (KM event proportion by the horizon), `thresholds`,
        `net_benefit_model`, `net_benefit_all`, `net_benefit_none` (lists, one per threshold;
        None where the treated group's follow-up ends before the horizon).
    """
    event, time = _outcomes(y_test, "y_test")
    risk = _as_finite(event_probability, "event_probability", time.shape)
    thresholds = np.asarray(thresholds, dtype=float)
    if ((thresholds <= 0) | (thresholds >= 1)).any():
        raise EvaluationInputError(
            f"`thresholds` must lie in (0, 1), but got {thresholds.tolist()}"
        )
    prevalence = 1.0 - kaplan_meier_survival_at(event, time, horizon)
    odds = thresholds / (1.0 - thresholds)
    model = []
    for threshold, threshold_odds in zip(thresholds, odds, strict=True):
        treated = risk >= threshold
        fraction = treated.mean()
        if fraction == 0:
            model.append(0.0)
            continue
        survival = kaplan_meier_survival_at(event[treated], time[treated], horizon)
        model.append(fraction * (1.0 - survival) - fraction * survival * threshold_odds)
    return {
        "horizon": float(horizon),
        "prevalence": float(prevalence),
        "thresholds": thresholds.tolist(),
        "net_benefit_model": [float(v) for v in model],
        "net_benefit_all": (prevalence - (1.0 - prevalence) * odds).tolist(),
        "net_benefit_none": [0.0] * len(thresholds),
    }
