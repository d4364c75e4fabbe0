"""Kaplan-Meier estimates: survival at a horizon, and curves with log-rank tests by group."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from lifelines.statistics import multivariate_logrank_test
from scipy.stats import norm
from sksurv.nonparametric import kaplan_meier_estimator

from model.schema import BURDEN_CATEGORIES, GRADES, MODALITIES, burden_categories, effective_grades
from training.calibrate import km_median
from training.evaluate.common import _outcome_frame
from training.exceptions import EvaluationInputError

KAPLAN_MEIER_COLUMNS = ("who_grade", "burden_category", "modality")
KAPLAN_MEIER_STEP_MONTHS = 0.5
Z_95 = float(norm.isf(0.025))


def _counts(event: np.ndarray, time: np.ndarray) -> tuple[np.ndarray, ...]:
    """Unique times with the events at and the number at risk just before each.

    Counted with array operations: sksurv's estimator counts in a Python loop over the
    patients, which made these estimates a third of the cross-validation's time (each
    calibration group at each horizon of each fold is one).
    """
    times, first, counts = np.unique(time, return_inverse=True, return_counts=True)
    deaths = np.bincount(first, weights=event, minlength=len(times))
    at_risk = len(time) - np.concatenate(([0], np.cumsum(counts)[:-1]))
    return times, deaths, at_risk


def _curve_to(event, time, horizon: float) -> tuple[float, np.ndarray, np.ndarray] | None:
    """The Kaplan-Meier survival at `horizon` with the counts it rests on.

    Returns
    -------
    (survival, deaths, at_risk) or None
        The events and numbers at risk at each unique time up to `horizon` (none before the
        first time, where survival is 1); None when there are no patients, or the follow-up
        ends before `horizon` with the curve still above zero (the estimator is undefined).
    """
    event = np.asarray(event, dtype=bool)
    time = np.asarray(time, dtype=float)
    if len(time) == 0:
        return None
    times, deaths, at_risk = _counts(event, time)
    survival = np.cumprod(1.0 - deaths / at_risk)
    if horizon > times[-1] and survival[-1] > 0:
        return None
    index = int(np.searchsorted(times, horizon, side="right")) - 1
    at_horizon = 1.0 if index < 0 else float(survival[index])
    return at_horizon, deaths[: index + 1], at_risk[: index + 1]


def kaplan_meier_at(event, time, horizon: float) -> tuple[float, float, float]:
    """Kaplan-Meier survival at `horizon` with its log-log 95 % interval.

    The same estimate and interval as ``sksurv.nonparametric.kaplan_meier_estimator(event,
    time, conf_type="log-log")`` (Greenwood's variance of log survival, log-minus-log
    transformed), evaluated at one time.

    Returns
    -------
    survival, lower, upper : float
        NaN when the follow-up ends before `horizon` with the curve still above zero (the
        estimator is undefined there).
    """
    curve = _curve_to(event, time, horizon)
    if curve is None:
        return math.nan, math.nan, math.nan
    survival, deaths, at_risk = curve
    if len(deaths) == 0:
        return 1.0, 1.0, 1.0
    informative = (deaths > 0) & (at_risk > deaths)
    greenwood = np.sum(deaths[informative] / (at_risk * (at_risk - deaths))[informative])
    lower, upper = _log_log_interval(survival, math.sqrt(greenwood))
    return survival, lower, upper


def _log_log_interval(survival: float, sigma: float) -> tuple[float, float]:
    """The 95 % log-minus-log interval of a survival estimate, as sksurv computes it."""
    eps = np.finfo(float).eps
    if survival <= eps:
        return 0.0, 0.0
    log_s = math.log(survival)
    theta = sigma / log_s if log_s < -eps else 0.0
    lower, upper = (math.exp(math.exp(sign * Z_95 * theta) * log_s) for sign in (-1.0, 1.0))
    return lower, upper


def kaplan_meier_survival_at(event, time, horizon: float) -> float:
    """:func:`kaplan_meier_at`'s survival alone (the same value, NaN where it gives NaN)."""
    curve = _curve_to(event, time, horizon)
    return math.nan if curve is None else curve[0]


def _groups_of(cohort: pd.DataFrame, column: str) -> tuple[np.ndarray, tuple[str, ...]]:
    if column == "who_grade":
        return effective_grades(cohort).to_numpy(dtype=object), GRADES
    if column == "burden_category":
        return burden_categories(cohort["tumor_burden_percent"]), BURDEN_CATEGORIES
    if column == "modality" and "modality" in cohort:
        return cohort["modality"].to_numpy(dtype=object), MODALITIES
    raise EvaluationInputError(
        f"`column` must be one of {', '.join(KAPLAN_MEIER_COLUMNS)} (present in the cohort), but "
        f"got {column!r}"
    )


def kaplan_meier_by(cohort: pd.DataFrame, endpoint: str, column: str) -> dict[str, Any]:
    """Kaplan-Meier curves, medians and the log-rank test across the levels of `column`.

    Parameters
    ----------
    cohort : DataFrame, shape = (n_samples, n_columns)
    endpoint : {"hpfs", "os"}
    column : {"who_grade", "burden_category", "modality"}
        `burden_category` is derived from `tumor_burden_percent` (<25, 25-50, 50-75, >75 %).

    Returns
    -------
    dict
        `column`, `endpoint`, `logrank_p`, `logrank_statistic`, `logrank_df`
        (:func:`lifelines.statistics.multivariate_logrank_test`) and `groups`:
        ``{level: {"n", "events", "median" (inf = not reached), "times", "survival",
        "at_risk"}}`` with the curve sampled every 0.5 month up to the group's last time.
    """
    outcome = _outcome_frame(cohort, endpoint)
    groups, levels = _groups_of(cohort, column)
    curves = {}
    for level in levels:
        rows = groups == level
        if not rows.any():
            continue
        time = outcome["duration"].to_numpy()[rows]
        event = outcome["event"].to_numpy(dtype=bool)[rows]
        km_times, km_survival = kaplan_meier_estimator(event, time)
        grid = np.arange(0.0, time.max() + KAPLAN_MEIER_STEP_MONTHS, KAPLAN_MEIER_STEP_MONTHS)
        index = np.searchsorted(km_times, grid, side="right") - 1
        curves[str(level)] = {
            "n": int(rows.sum()),
            "events": int(event.sum()),
            "median": km_median(time, event),
            "times": grid.tolist(),
            "survival": np.where(index < 0, 1.0, km_survival[np.maximum(index, 0)]).tolist(),
            "at_risk": (time[None, :] >= grid[:, None]).sum(axis=1).tolist(),
        }
    result: dict[str, Any] = {"column": column, "endpoint": endpoint, "groups": curves}
    present = np.isin(groups, list(curves))
    if len(curves) >= 2:
        test = multivariate_logrank_test(
            outcome["duration"].to_numpy()[present],
            groups[present],
            outcome["event"].to_numpy()[present],
        )
        result.update(
            logrank_p=float(test.p_value),
            logrank_statistic=float(test.test_statistic),
            logrank_df=int(test.degrees_of_freedom),
        )
    else:
        result.update(logrank_p=math.nan, logrank_statistic=math.nan, logrank_df=0)
    return result
