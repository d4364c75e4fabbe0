"""The promotion gate's figures: paired bootstrap of ΔC (Harrell, Uno) and the calibration slope.

Both models are judged on the same patients; each bootstrap resample draws patients, not
models, so the difference in C carries the correlation between the two models' errors and its
interval is far narrower than two separate intervals would suggest (the paired bootstrap of
Harrell, Lee and Mark, Stat Med 1996;15:361, and Steyerberg, Clinical Prediction Models, 2nd
ed. 2019, ch. 17). The interval is the bootstrap percentile interval. Non-inferiority is shown
when its lower bound lies above ``-NON_INFERIORITY_MARGIN`` (Piaggio et al., CONSORT for
non-inferiority trials, JAMA 2012;308:2594, for the reading of a margin against an interval).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from training.evaluate.calibration import calibration_slope
from training.evaluate.concordance import harrell_c, uno_c
from training.exceptions import EvaluationInputError

__all__ = [
    "CALIBRATION_SLOPE_RANGE",
    "GATE_BOOTSTRAP",
    "PAIRED_MATRIX_MAX_ROWS",
    "NON_INFERIORITY_MARGIN",
    "SLOPE_HORIZON",
    "UNO_TAU",
    "concordance_pair",
    "paired_concordance",
    "slope_with_interval",
    "slope_overlaps",
]

NON_INFERIORITY_MARGIN = 0.01
"""The candidate may be at most this much worse in C: the lower 95 % bound of ΔC must exceed it."""

CALIBRATION_SLOPE_RANGE = (0.8, 1.25)
"""Slopes taken as acceptable calibration; the candidate's 95 % interval must overlap it."""

GATE_BOOTSTRAP = 500
"""Paired resamples: the 2.5th and 97.5th percentiles of 500 draws move by about 0.001 in C."""

SLOPE_HORIZON = 24.0
UNO_TAU = 24.0
"""Months: Uno's C counts pairs whose earlier time is before 24 months, where the held-out
patients of every cohort seen so far are still well followed."""


PAIRED_MATRIX_MAX_ROWS = 4_000
"""Up to this many patients the resamples are counted together over the n × n matrix of
comparable pairs (500 resamples of 300 patients: 0.2 s, against about 50 s resample by
resample with the library functions); above it, resample by resample with 200 resamples."""


def _comparable(event: np.ndarray, time: np.ndarray) -> np.ndarray:
    """sksurv's comparable pairs: ``[i, j]`` when i had an event and j was followed longer, or
    censored at i's time."""
    later = time[None, :] > time[:, None]
    censored_at_same = (time[None, :] == time[:, None]) & ~event[None, :]
    return event[:, None] & (later | censored_at_same)


def _scores(risk: np.ndarray, tied_tol: float = 1e-8) -> np.ndarray:
    """1 where i is riskier than j, 0.5 for risks within `tied_tol` (sksurv's rule), else 0."""
    gap = risk[:, None] - risk[None, :]
    return np.where(np.abs(gap) <= tied_tol, 0.5, (gap > 0).astype(float))


def _censoring_survival(counts: np.ndarray, event: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Per resample, the censoring Kaplan-Meier at each patient's own time, shape = (B, n).

    sksurv's reverse Kaplan-Meier (``CensoringDistributionEstimator``) with each patient
    counted as often as it was drawn: at a time, events leave the risk set before censorings.
    """
    unique, position = np.unique(time, return_inverse=True)
    at_time = np.zeros((len(time), len(unique)))
    at_time[np.arange(len(time)), position] = 1.0
    at_risk = counts @ np.cumsum(at_time[:, ::-1], axis=1)[:, ::-1]
    events = counts @ (at_time * event[:, None])
    censored = counts @ (at_time * ~event[:, None])
    remaining = at_risk - events
    ratio = np.divide(censored, remaining, out=np.zeros_like(censored), where=censored > 0)
    return np.cumprod(1.0 - ratio, axis=1)[:, position]


def _weighted_c(counts, first_weights, comparable, scores) -> np.ndarray:
    """Per resample, ``sum w_i v_i w_j A_ij S_ij / sum w_i v_i w_j A_ij``."""
    pair_count = counts @ comparable.T
    numerator = (first_weights * (counts @ (comparable * scores).T)).sum(axis=1)
    denominator = (first_weights * pair_count).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return numerator / denominator


def _matrix_concordance(y, risks, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Harrell's and Uno's C of each model for every row of `counts` (resample multiplicities)."""
    event, time = y["event"].astype(bool), y["months"].astype(float)
    comparable = _comparable(event, time).astype(float)
    censoring = _censoring_survival(counts, event, time)
    present_event = (event & (time < UNO_TAU))[None, :] & (counts > 0)
    if (present_event & (censoring <= 0)).any(axis=1).any():
        censoring = np.where(present_event & (censoring <= 0), np.nan, censoring)
    with np.errstate(divide="ignore", invalid="ignore"):
        uno_weights = np.where(present_event, 1.0 / np.square(censoring), 0.0)
    out = {}
    for model, risk in zip(("candidate", "production"), risks, strict=True):
        scores = _scores(risk)
        out[f"harrell_c_{model}"] = _weighted_c(counts, counts, comparable, scores)
        out[f"uno_c_{model}"] = _weighted_c(counts, counts * uno_weights, comparable, scores)
    return out


def _resample_counts(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    counts = np.zeros((n_resamples, n))
    for b in range(n_resamples):
        np.add.at(counts[b], rng.integers(0, n, n), 1.0)
    return counts


def concordance_pair(y, risks, uno: bool) -> tuple[float, float] | None:
    """sksurv's Harrell's (or, with `uno`, Uno's) C of each of two risk scores; None if either
    is not computable."""
    try:
        if uno:
            pair = tuple(uno_c(y, y, risk, UNO_TAU) for risk in risks)
        else:
            pair = tuple(harrell_c(y["event"], y["months"], risk) for risk in risks)
    except (ValueError, ZeroDivisionError):
        return None
    return pair if all(math.isfinite(v) for v in pair) else None  # type: ignore[return-value]


def _large_resamples(y, risks, name: str, rng, n_resamples: int) -> np.ndarray:
    differences = []
    for _ in range(min(n_resamples, 200)):
        rows = rng.integers(0, len(y), len(y))
        pair = concordance_pair(y[rows], (risks[0][rows], risks[1][rows]), name == "uno_c")
        differences.append(np.nan if pair is None else pair[0] - pair[1])
    return np.asarray(differences)


def paired_concordance(
    y: np.ndarray,
    risk_candidate: np.ndarray,
    risk_production: np.ndarray,
    *,
    n_resamples: int = GATE_BOOTSTRAP,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Harrell's and Uno's C of both models and their difference with a paired 95 % interval.

    The point estimates are sksurv's (:func:`~training.evaluate.concordance.harrell_c`,
    :func:`~training.evaluate.concordance.uno_c`); the resamples count the same statistics over
    the matrix of comparable pairs, each patient weighted by how often it was drawn (and, for
    Uno's C, the censoring distribution refitted on the resample), which the tests hold equal to
    sksurv's on an unweighted sample. Written here because 500 resamples × 4 statistics took
    50 s per endpoint with the library functions, and nothing else resamples them.

    Parameters
    ----------
    y : structured array, shape = (n_samples,)
        Outcomes (`event`, `months`) of the patients both models are judged on.
    risk_candidate, risk_production : ndarray, shape = (n_samples,)
        Risk scores (higher = riskier).

    Returns
    -------
    dict
        ``{"harrell_c" | "uno_c": {"candidate", "production", "difference", "lower", "upper",
        "n_resamples"}}``; the difference is candidate minus production, None where not
        computable.
    """
    risks = (np.asarray(risk_candidate, float), np.asarray(risk_production, float))
    rng = np.random.default_rng(seed)
    if len(y) <= PAIRED_MATRIX_MAX_ROWS:
        matrix = _matrix_concordance(y, risks, _resample_counts(len(y), n_resamples, rng))
        resampled = {
            name: matrix[f"{name}_candidate"] - matrix[f"{name}_production"]
            for name in ("harrell_c", "uno_c")
        }
    else:
        resampled = {
            name: _large_resamples(y, risks, name, rng, n_resamples)
            for name in ("harrell_c", "uno_c")
        }
    figures = {}
    for name in ("harrell_c", "uno_c"):
        point = concordance_pair(y, risks, name == "uno_c")
        differences = resampled[name][np.isfinite(resampled[name])]
        usable = point is not None and len(differences) > 0
        lower, upper = np.percentile(differences, [2.5, 97.5]) if usable else (None, None)
        figures[name] = {
            "candidate": None if point is None else point[0],
            "production": None if point is None else point[1],
            "difference": None if point is None else point[0] - point[1],
            "lower": None if lower is None else float(lower),
            "upper": None if upper is None else float(upper),
            "n_resamples": int(len(differences)) if usable else 0,
        }
    return figures


def slope_with_interval(y: np.ndarray, survival_at_horizon: np.ndarray) -> dict[str, Any]:
    """Calibration slope at `SLOPE_HORIZON` with its 95 % Wald interval (lifelines Cox)."""
    try:
        return {**calibration_slope(y, survival_at_horizon, SLOPE_HORIZON), "note": ""}
    except EvaluationInputError as error:
        return {"slope": None, "lower": None, "upper": None, "note": str(error)}


def slope_overlaps(entry: dict[str, Any]) -> bool:
    """Whether the slope's 95 % interval overlaps `CALIBRATION_SLOPE_RANGE`."""
    low, high = CALIBRATION_SLOPE_RANGE
    lower, upper = entry.get("lower"), entry.get("upper")
    if lower is None or upper is None or not (math.isfinite(lower) and math.isfinite(upper)):
        return False
    return lower <= high and upper >= low
