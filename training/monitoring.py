"""Calibration drift of a deployed model: observed against expected events, windowed and sequential.

Everything here works on predictions already made (each patient's predicted survival on
`MONTH_GRID` by the model that was in production at the patient's treatment date) and on the
observed, right-censored follow-up; :mod:`training.monitor_run` gathers those.

Calibration in the large at a horizon ``t`` is the observed/expected ratio of the event
proportion by ``t``: observed ``1 - KM(t)`` (the Kaplan-Meier estimate, which with censoring
independent of the outcome is the inverse-probability-of-censoring-weighted proportion; Satten
and Datta, Am Stat 2001), expected the mean predicted ``1 - S(t | x)``. Its 95 % interval treats
the expected count as fixed and carries the Kaplan-Meier log-log interval over (Debray et al.,
BMJ 2017;356:i6460; Riley et al., BMJ 2024;384:e074820). The calibration slope and Uno's C are
the evaluation package's (lifelines Cox recalibration; scikit-survival's IPCW weights).

Drift is flagged by a two-sided risk-adjusted CUSUM over the patients in order of treatment
date (Biswas and Kalbfleisch, Stat Med 2008;27:3452; Sego, Reynolds and Woodall, Stat Med
2009;28:1386): patient ``i`` with ``O_i`` events and ``E_i = H_i(T_i)`` expected events over
the follow-up observed at the data cut (up to `CUSUM_HORIZON_MONTHS`) adds the log-likelihood
ratio of hazards multiplied by ``rho`` against 1, ``O_i log(rho) - (rho - 1) E_i``, once for
``rho = 1.5`` (worse than predicted) and once for ``rho = 1 / 1.5`` (better). Its control limit
is simulated from the patients' own predictions, as Gandy and Kvaløy (Scand J Stat 2013;40:647)
advise: outcomes are drawn from each patient's predicted curve, censored at the patient's
potential follow-up, and the limit is the ``1 - false_alarm`` quantile of the largest CUSUM
over both endpoints and both directions, so a correctly calibrated model is flagged with
probability `false_alarm` per run.
Written here because neither lifelines nor scikit-survival has a survival control chart.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from model.bundle import MONTH_GRID
from training.evaluate.calibration import calibration_slope, calibration_table
from training.evaluate.concordance import uno_c
from training.evaluate.kaplan_meier import kaplan_meier_at
from training.exceptions import EvaluationInputError

__all__ = [
    "CUSUM_HAZARD_RATIO",
    "CUSUM_HORIZON_MONTHS",
    "DEFAULT_FALSE_ALARM",
    "MIN_WINDOW_EVENTS",
    "MONITOR_HORIZONS",
    "cumulative_hazard_at",
    "cusum_paths",
    "endpoint_figures",
    "observed_expected",
    "simulated_control_limit",
]

MONITOR_HORIZONS = (12, 24)
"""Months at which observed and predicted survival are compared (1 and 2 years)."""

CUSUM_HAZARD_RATIO = 1.5
"""The hazard multiplier the CUSUM is tuned to detect, in either direction."""

DEFAULT_FALSE_ALARM = 0.05
"""Probability that a run flags a correctly calibrated model (over all four charts)."""

DEFAULT_NULL_STREAMS = 1000
"""Simulated streams for the control limit: its 95th percentile to about ±3 % of itself."""

CUSUM_HORIZON_MONTHS = 24.0
"""Follow-up counted by the CUSUM: events and expected events up to 24 months after treatment.

Beyond it the served curves rest on few training patients (a boosted model's Breslow curve can
fall to zero after the last training event), and a late tail flagged early patients of a
well-calibrated stream as "better than predicted" before this cap."""

MIN_WINDOW_EVENTS = 10
"""Fewest events by 24 months for a calibration slope: fewer give no usable estimate."""

_SURVIVAL_FLOOR = 1e-12


def cumulative_hazard_at(survival: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Each patient's predicted cumulative hazard ``-log S(t)`` at their own time `months`.

    Parameters
    ----------
    survival : ndarray, shape = (n_samples, len(MONTH_GRID))
        Predicted survival on `MONTH_GRID`.
    months : ndarray, shape = (n_samples,)
        Linear interpolation between grid months; held at the last grid month beyond it.
    """
    hazard = -np.log(np.clip(survival, _SURVIVAL_FLOOR, 1.0))
    months = np.clip(np.asarray(months, dtype=float), MONTH_GRID[0], MONTH_GRID[-1])
    below = np.clip(np.searchsorted(MONTH_GRID, months, side="right") - 1, 0, len(MONTH_GRID) - 2)
    fraction = (months - MONTH_GRID[below]) / (MONTH_GRID[below + 1] - MONTH_GRID[below])
    rows = np.arange(len(months))
    return hazard[rows, below] * (1 - fraction) + hazard[rows, below + 1] * fraction


def observed_expected(event, time, predicted_survival, horizon: float) -> dict[str, Any]:
    """Observed (Kaplan-Meier) against mean predicted survival at `horizon`, and O/E of events.

    Returns
    -------
    dict
        `observed`, `observed_lower`, `observed_upper`, `predicted`, `oe_ratio`, `oe_lower`,
        `oe_upper` (None where follow-up does not yet reach the horizon), `n`, `events` (events
        by the horizon).
    """
    observed, lower, upper = kaplan_meier_at(event, time, horizon)
    predicted = float(np.mean(predicted_survival))
    expected = 1.0 - predicted
    figures: dict[str, Any] = {
        "n": len(time),
        "events": int((np.asarray(event, bool) & (np.asarray(time) <= horizon)).sum()),
        "predicted": predicted,
        "observed": None,
        "observed_lower": None,
        "observed_upper": None,
        "oe_ratio": None,
        "oe_lower": None,
        "oe_upper": None,
    }
    if math.isnan(observed) or expected <= 0:
        return figures
    figures.update(
        observed=observed,
        observed_lower=lower,
        observed_upper=upper,
        oe_ratio=(1.0 - observed) / expected,
        oe_lower=(1.0 - upper) / expected,
        oe_upper=(1.0 - lower) / expected,
    )
    return figures


def _slope(y: np.ndarray, survival_24: np.ndarray) -> dict[str, Any]:
    events = int((y["event"] & (y["months"] <= 24)).sum())
    if events < MIN_WINDOW_EVENTS:
        return {"slope": None, "lower": None, "upper": None, "note": f"{events} events by 24 mo"}
    try:
        return {**calibration_slope(y, survival_24, 24), "note": ""}
    except EvaluationInputError as error:
        return {"slope": None, "lower": None, "upper": None, "note": str(error)}


def _uno(y: np.ndarray, risk: np.ndarray) -> float | None:
    before = y["months"] < 24
    if not (y["event"] & before).any() or len(np.unique(risk)) < 2:
        return None
    try:
        return uno_c(y, y, risk, tau=24.0)
    except (ValueError, EvaluationInputError):
        return None


def endpoint_figures(y: np.ndarray, survival: np.ndarray, *, deciles: bool = False) -> dict:
    """One endpoint's monitoring figures on one set of patients.

    Parameters
    ----------
    y : structured array, shape = (n_samples,)
        Observed outcomes (`event`, `months`).
    survival : ndarray, shape = (n_samples, len(MONTH_GRID))
        Each patient's predicted survival from the model in production at their treatment.
    deciles : bool
        Also return the grouped calibration tables at `MONITOR_HORIZONS` (for the plots).
    """
    event, months = y["event"], y["months"]
    figures: dict[str, Any] = {"n": len(y), "events": int(event.sum())}
    for horizon in MONITOR_HORIZONS:
        at = survival[:, int(horizon)]
        figures[f"at_{horizon}"] = observed_expected(event, months, at, horizon)
        if deciles and len(y) >= 20:
            table = calibration_table(y, at, horizon)
            figures[f"at_{horizon}"]["deciles"] = table.replace({np.nan: None}).to_dict("records")
    figures["calibration_slope_24"] = _slope(y, survival[:, 24])
    figures["uno_c_24"] = _uno(y, -np.log(np.clip(survival[:, 24], _SURVIVAL_FLOOR, 1.0)))
    return figures


def _log_likelihood_ratios(observed, expected, hazard_ratio: float) -> np.ndarray:
    return observed * math.log(hazard_ratio) - (hazard_ratio - 1.0) * expected


def _cusum(increments: np.ndarray) -> np.ndarray:
    """``S_k = max(0, S_{k-1} + x_k)`` along the last axis."""
    path = np.empty_like(increments, dtype=float)
    running = np.zeros(increments.shape[:-1])
    for k in range(increments.shape[-1]):
        running = np.maximum(0.0, running + increments[..., k])
        path[..., k] = running
    return path


def cusum_paths(observed, expected) -> dict[str, np.ndarray]:
    """The upward (hazard × 1.5) and downward (hazard / 1.5) CUSUM paths, in the given order."""
    observed = np.asarray(observed, dtype=float)
    expected = np.asarray(expected, dtype=float)
    return {
        "up": _cusum(_log_likelihood_ratios(observed, expected, CUSUM_HAZARD_RATIO)),
        "down": _cusum(_log_likelihood_ratios(observed, expected, 1.0 / CUSUM_HAZARD_RATIO)),
    }


def _largest_null_cusum(potential_hazard: np.ndarray, rng: np.random.Generator, n_streams: int):
    """Per simulated stream, the largest CUSUM (either direction) of outcomes drawn from the model.

    With ``e ~ Exp(1)`` a draw of the cumulative hazard at the event, the event is observed when
    ``e <= K`` (``K`` the cumulative hazard at the potential follow-up) and the expected count
    over the follow-up is ``min(e, K)``: no inversion of the curves is needed.
    """
    draws = rng.exponential(size=(n_streams, len(potential_hazard)))
    observed = (draws <= potential_hazard).astype(float)
    expected = np.minimum(draws, potential_hazard)
    paths = cusum_paths(observed, expected)
    return np.maximum(paths["up"].max(axis=1), paths["down"].max(axis=1))


def simulated_control_limit(
    potential_hazards: list[np.ndarray],
    false_alarm: float = DEFAULT_FALSE_ALARM,
    n_streams: int = DEFAULT_NULL_STREAMS,
    seed: int = 0,
) -> float:
    """The CUSUM limit that a correctly calibrated model crosses with probability `false_alarm`.

    Parameters
    ----------
    potential_hazards : list of ndarray, shape = (n_samples,) each
        Per endpoint, each patient's predicted cumulative hazard at their potential follow-up
        (the data cut for patients with an event, the censoring time otherwise), in the order
        of the CUSUM. Endpoints are simulated independently: HPFS and OS are positively
        associated in truth, which makes a joint crossing likelier and the limit conservative.
    """
    if not 0.0 < false_alarm < 0.5:
        raise EvaluationInputError(f"`false_alarm` must lie in (0, 0.5), but got {false_alarm}")
    rng = np.random.default_rng(seed)
    largest = np.max(
        [_largest_null_cusum(h, rng, n_streams) for h in potential_hazards if len(h)], axis=0
    )
    return float(np.quantile(largest, 1.0 - false_alarm))


def crossing(path: np.ndarray, limit: float) -> int | None:
    """0-based position of the first patient at which `path` exceeds `limit`, or None."""
    above = np.flatnonzero(path > limit)
    return int(above[0]) if len(above) else None


def window_starts(dates: pd.Series, window_months: int) -> pd.Series:
    """Start of each patient's treatment-date window: calendar blocks of `window_months`."""
    month_index = dates.dt.year * 12 + (dates.dt.month - 1)
    start = (month_index // window_months) * window_months
    starts = pd.to_datetime({"year": start // 12, "month": start % 12 + 1, "day": 1})
    return starts.dt.date.astype(str)
