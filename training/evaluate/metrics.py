"""The summary metrics of one model on held-out patients, and the null model they beat."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sksurv.metrics import brier_score, cumulative_dynamic_auc, integrated_brier_score
from sksurv.nonparametric import kaplan_meier_estimator

from training.evaluate.calibration import calibration_slope, calibration_table, decision_curve
from training.evaluate.common import DECISION_HORIZON, HORIZONS, _as_finite, _outcomes, _step_values
from training.evaluate.concordance import harrell_c, uno_c
from training.evaluate.kaplan_meier import kaplan_meier_at
from training.exceptions import EvaluationInputError

UNO_TAU_QUANTILE = 0.8


def _usable_horizons(horizons, test_time, train_time, times, skipped) -> list[float]:
    usable = []
    for horizon in horizons:
        if horizon < test_time.min():
            reason = f"before the first test follow-up time ({test_time.min():.2f} months)"
        elif horizon >= test_time.max():
            reason = f"beyond the test follow-up (longest {test_time.max():.1f} months)"
        elif horizon >= train_time.max():
            reason = (
                f"beyond the training follow-up (longest {train_time.max():.1f} months), where "
                "the censoring weights are undefined"
            )
        elif horizon < times[0] or horizon > times[-1]:
            reason = f"outside the prediction grid [{times[0]:g}, {times[-1]:g}] months"
        else:
            usable.append(float(horizon))
            continue
        skipped[f"horizon_{horizon:g}"] = reason
    return usable


def _truncation_time(test_time, train_time, horizons) -> float:
    """Uno's tau: the 80th percentile of test times, capped at the last horizon inside training."""
    tau = float(np.quantile(test_time, UNO_TAU_QUANTILE))
    inside = [h for h in horizons if h < train_time.max()]
    cap = float(max(inside)) if inside else float(train_time.max())
    return min(tau, cap)


def _attempt(skipped: dict, name: str, compute: Callable[[], Any]) -> Any:
    """Run one sksurv/lifelines computation; on a data-dependent ValueError record why."""
    try:
        return compute()
    except ValueError as error:
        skipped[name] = str(error)
        return None


def _horizon_entry(y_test, survival_at_horizon, horizon, skipped) -> dict[str, Any]:
    event, time = _outcomes(y_test, "y_test")
    observed, lower, upper = kaplan_meier_at(event, time, horizon)
    entry: dict[str, Any] = {
        "observed_survival": observed,
        "observed_lower": lower,
        "observed_upper": upper,
        "mean_predicted_survival": float(survival_at_horizon.mean()),
        "calibration": calibration_table(y_test, survival_at_horizon, horizon).to_dict("records"),
    }
    slope = _attempt(
        skipped,
        f"calibration_slope_{horizon:g}",
        lambda: calibration_slope(y_test, survival_at_horizon, horizon),
    )
    entry["calibration_slope"] = slope["slope"] if slope else math.nan
    entry["calibration_slope_lower"] = slope["lower"] if slope else math.nan
    entry["calibration_slope_upper"] = slope["upper"] if slope else math.nan
    return entry


def survival_metrics(
    y_train, y_test, risk, survival, horizons: Sequence[float] = HORIZONS, times=None
) -> dict[str, Any]:
    """Discrimination, accuracy, calibration and net benefit of one model on held-out patients.

    Parameters
    ----------
    y_train, y_test : structured array, shape = (n_train,), (n_test,)
        Training outcomes (only for the censoring distribution, IPCW) and held-out outcomes.
    risk : array-like, shape = (n_test,)
        Risk score, higher = riskier (e.g. ``estimator.predict(X_test)``).
    survival : array-like, shape = (n_test, n_times)
        Predicted survival at `times` (a step function), or at `horizons` when `times` is
        omitted; pass a fine (monthly) grid for a meaningful integrated Brier score.
    horizons : sequence of float
        Months for the per-horizon metrics.

    Returns
    -------
    dict
        ``n_test``, ``n_events``, ``harrell_c``; ``uno_c`` truncated at ``uno_c_tau`` (the
        80th percentile of test times, capped below the longest training time); ``mean_auc``
        over the usable horizons; ``ibs`` over ``ibs_range`` (first test time to tau);
        ``horizons``: ``{"12": {"auc", "brier", "observed_survival" (KM, with
        ``_lower``/``_upper``), "mean_predicted_survival", "calibration_slope" (with
        ``_lower``/``_upper``), "calibration" (table records)}, ...}``; ``decision_curve`` at 24
        months; ``skipped``: ``{name: reason}`` for each metric not computable (NaN only then).
    """
    train_time, test_event, test_time, risk, grid, survival = _checked(
        y_train, y_test, risk, survival, horizons, times
    )
    skipped: dict[str, str] = {}
    usable = _usable_horizons(horizons, test_time, train_time, grid, skipped)
    tau = _truncation_time(test_time, train_time, horizons)
    uno = _attempt(skipped, "uno_c", lambda: uno_c(y_train, y_test, risk, tau))
    at_horizons = _step_values(survival, grid, usable)
    auc, brier = _auc_and_brier(y_train, y_test, risk, at_horizons, usable, skipped)
    in_range = (grid >= test_time.min()) & (grid <= tau)
    metrics: dict[str, Any] = {
        "n_test": len(test_time),
        "n_events": int(test_event.sum()),
        "harrell_c": harrell_c(test_event, test_time, risk),
        "uno_c_tau": tau,
        "uno_c": float(uno) if uno is not None else math.nan,
        "mean_auc": float(auc[1]) if auc else math.nan,
        "ibs_range": (
            [float(grid[in_range][0]), float(grid[in_range][-1])] if in_range.any() else None
        ),
        "ibs": _integrated_brier(y_train, y_test, survival, grid, in_range, tau, skipped),
        "horizons": {},
    }
    for j, horizon in enumerate(usable):
        entry = _horizon_entry(y_test, at_horizons[:, j], horizon, skipped)
        entry["auc"] = float(auc[0][j]) if auc else math.nan
        entry["brier"] = float(brier[j]) if brier is not None else math.nan
        metrics["horizons"][f"{horizon:g}"] = entry
    metrics["decision_curve"] = _decision(y_test, survival, grid, usable, skipped)
    metrics["skipped"] = skipped
    return metrics


def _auc_and_brier(y_train, y_test, risk, at_horizons, usable, skipped) -> tuple:
    """Time-dependent AUC (per horizon, mean) and Brier score per usable horizon, or None."""
    if not usable:
        return None, None
    auc = _attempt(skipped, "auc", lambda: cumulative_dynamic_auc(y_train, y_test, risk, usable))
    brier = _attempt(skipped, "brier", lambda: brier_score(y_train, y_test, at_horizons, usable)[1])
    return auc, brier


def _checked(y_train, y_test, risk, survival, horizons, times) -> tuple:
    """The inputs of :func:`survival_metrics` as arrays, or an error that says what is wrong."""
    _, train_time = _outcomes(y_train, "y_train")
    test_event, test_time = _outcomes(y_test, "y_test")
    n_test = len(test_time)
    risk = _as_finite(risk, "risk", (n_test,))
    grid = np.asarray(horizons if times is None else times, dtype=float)
    if grid.ndim != 1 or (np.diff(grid) <= 0).any():
        raise EvaluationInputError(f"`times` must be strictly increasing, but got {grid.tolist()}")
    survival = _as_finite(survival, "survival", (n_test, len(grid)))
    if not test_event.any():
        raise EvaluationInputError("`y_test` must contain at least one event, but all are censored")
    return train_time, test_event, test_time, risk, grid, survival


def _integrated_brier(y_train, y_test, survival, grid, in_range, tau, skipped) -> float:
    if in_range.sum() < 2:
        skipped["ibs"] = f"fewer than two grid times between the first test time and tau={tau:.1f}"
        return math.nan
    ibs = _attempt(
        skipped,
        "ibs",
        lambda: integrated_brier_score(y_train, y_test, survival[:, in_range], grid[in_range]),
    )
    return float(ibs) if ibs is not None else math.nan


def _decision(y_test, survival, grid, usable, skipped) -> dict[str, Any] | None:
    if DECISION_HORIZON not in usable:
        skipped["decision_curve"] = f"the {DECISION_HORIZON}-month horizon is not usable"
        return None
    at_decision = _step_values(survival, grid, [DECISION_HORIZON])[:, 0]
    return decision_curve(y_test, 1.0 - at_decision, DECISION_HORIZON)


def null_model_prediction(y_train, times, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The no-covariate reference: Kaplan-Meier of the training outcomes for everyone.

    Returns
    -------
    risk : ndarray, shape = (n_samples,)
        All zeros (every pair tied: Harrell's C is 0.5).
    survival : ndarray, shape = (n_samples, n_times)
        The training Kaplan-Meier curve at `times`, held flat past its last time.
    """
    event, time = _outcomes(y_train, "y_train")
    km_times, km_survival = kaplan_meier_estimator(event, time)
    times = np.asarray(times, dtype=float)
    index = np.searchsorted(km_times, times, side="right") - 1
    curve = np.where(index < 0, 1.0, km_survival[np.maximum(index, 0)])
    return np.zeros(n_samples), np.tile(curve, (n_samples, 1))
