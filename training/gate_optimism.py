"""The gate's figures on the candidate's own patients: bootstrap optimism-corrected validation.

With few held-out events a split wastes patients and leaves intervals too wide to show anything
(docs/retraining.md, "How well the gate works"). Instead the whole procedure that produced the
candidate (the update, or the training fit) is repeated on bootstrap resamples of the patients
it was fitted on, and each refit is scored on its resample (apparent) and on the original
patients (test). The mean of the difference is the optimism; the candidate's apparent figure
minus it is the optimism-corrected figure (Harrell, Lee and Mark, Stat Med 1996;15:361;
Steyerberg, Clinical Prediction Models, 2nd ed. 2019, ch. 17). Its 95 % interval is the
bootstrap percentile interval of the apparent figure shifted by the optimism, the
location-shifted interval of Noma et al. (Stat Med 2021;40:5691), whose coverage is close to
nominal where the unshifted one falls far below it.

The production model was not fitted on these patients (the gate leaves out any it was), so its
figures need no correction; ΔC is the candidate's corrected C minus production's C, and the
paired resamples carry the correlation between the two models' errors as the held-out route's
do. A candidate that ranks the patients exactly as production does (an update of the baseline
or the slope only) has ΔC 0 on them by construction, and its ΔC is not corrected: the
optimism is the procedure's, from resamples on which it revised terms, not this model's. Its
calibration slope is corrected as any other's.

Written here because neither scikit-survival nor lifelines validates a procedure by bootstrap;
the C statistics and the slope are theirs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, effective_n_jobs
from scipy.stats import rankdata

from model.bundle import ModelBundle
from model.schema import ENDPOINTS
from training.fit import survival_target
from training.gate_statistics import concordance_pair, slope_with_interval

__all__ = [
    "MIN_SUCCESSFUL_SHARE",
    "OPTIMISM_BOOTSTRAP",
    "OPTIMISM_HELD_OUT_EVENTS",
    "Predict",
    "Refit",
    "optimism_corrected",
]

logger = logging.getLogger(__name__)

OPTIMISM_HELD_OUT_EVENTS = 100
"""With fewer held-out events than this for either endpoint, the candidate's own patients are
validated by bootstrap instead (Collins et al., Stat Med 2016;35:214: at least 100 events for
an external validation)."""
OPTIMISM_BOOTSTRAP = 200
"""Resamples: Steyerberg (2019, ch. 17) finds 100-200 enough for the optimism's mean; the
interval's percentiles move by about 0.003 in C between repeats of 200."""
MIN_SUCCESSFUL_SHARE = 0.5
"""If the procedure fails on more resamples than this share leaves (too few events in a draw),
the figures are not computable rather than drawn from the resamples that happened to work."""

Refit = Callable[[pd.DataFrame, int], ModelBundle]
"""The candidate's procedure: (resampled patients, seed) -> a bundle fitted on them."""
Predict = Callable[[ModelBundle, str, pd.DataFrame], tuple[np.ndarray, np.ndarray]]
"""(bundle, endpoint, patients) -> (risk, survival at the slope's horizon)."""


def _measures(y, risk, survival, production_risk) -> dict[str, float]:
    """Harrell's and Uno's C of the candidate and of production, and the candidate's slope."""
    out = {}
    for name in ("harrell_c", "uno_c"):
        pair = concordance_pair(y, (risk, production_risk), name == "uno_c")
        out[f"{name}_candidate"] = np.nan if pair is None else pair[0]
        out[f"{name}_production"] = np.nan if pair is None else pair[1]
    slope = slope_with_interval(y, survival)["slope"]
    out["slope"] = np.nan if slope is None else slope
    return out


def _replicate_chunk(
    rows: pd.DataFrame,
    draws: list[np.ndarray],
    seeds: list[int],
    endpoints_y: dict[str, np.ndarray],
    production_risk: dict[str, np.ndarray],
    refit: Refit,
    predict: Predict,
) -> tuple[dict[str, list[dict]], int]:
    """Apparent and test figures of the refit on each of `draws` (row positions); failures."""
    results: dict[str, list[dict]] = {endpoint: [] for endpoint in ENDPOINTS}
    failed = 0
    for drawn, seed in zip(draws, seeds, strict=True):
        try:
            fitted = refit(rows.iloc[drawn].reset_index(drop=True), seed)
        except (ValueError, ArithmeticError):
            # Too few events in a draw for the procedure (an update needs 10 per endpoint),
            # or a fit the draw leaves undefined (coxnet's "weights are too large" on a draw
            # of many repeated patients): counted, and reported as failed resamples.
            failed += 1
            continue
        for endpoint in ENDPOINTS:
            y, theirs = endpoints_y[endpoint], production_risk[endpoint]
            risk, survival = predict(fitted, endpoint, rows)
            apparent = _measures(y[drawn], risk[drawn], survival[drawn], theirs[drawn])
            test = _measures(y, risk, survival, theirs)
            results[endpoint].append(
                {**{f"apparent_{k}": v for k, v in apparent.items()},
                 **{f"test_{k}": v for k, v in test.items()}}
            )  # fmt: skip
    return results, failed


def _replicates(
    rows: pd.DataFrame,
    endpoints_y: dict[str, np.ndarray],
    production_risk: dict[str, np.ndarray],
    refit: Refit,
    predict: Predict,
    n_resamples: int,
    seed: int,
    n_jobs: int,
) -> tuple[dict[str, pd.DataFrame], int]:
    """Per endpoint, one row per successful resample; the number that failed.

    The resamples are drawn here, before they are shared out among `n_jobs` processes, so the
    figures do not depend on `n_jobs`.
    """
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(rows), len(rows)) for _ in range(n_resamples)]
    seeds = [seed + replicate + 1 for replicate in range(n_resamples)]
    n_chunks = max(1, min(effective_n_jobs(n_jobs), n_resamples))
    chunks = Parallel(n_jobs=n_chunks)(
        delayed(_replicate_chunk)(
            rows,
            draws[k::n_chunks],
            seeds[k::n_chunks],
            endpoints_y,
            production_risk,
            refit,
            predict,
        )  # fmt: skip
        for k in range(n_chunks)
    )
    frames = {
        e: pd.DataFrame([row for results, _ in chunks for row in results[e]]) for e in ENDPOINTS
    }
    return frames, sum(failed for _, failed in chunks)


def _not_computable(note: str) -> dict[str, Any]:
    return {"difference": None, "lower": None, "upper": None, "optimism": None, "note": note}


def _corrected_c(name: str, apparent: dict, boot: pd.DataFrame, n_resamples: int) -> dict:
    """Optimism-corrected ΔC with its location-shifted interval."""
    candidate, production = apparent[f"{name}_candidate"], apparent[f"{name}_production"]
    optimism_terms = boot[f"apparent_{name}_candidate"] - boot[f"test_{name}_candidate"]
    apparent_differences = boot[f"apparent_{name}_candidate"] - boot[f"apparent_{name}_production"]
    usable = np.isfinite(optimism_terms) & np.isfinite(apparent_differences)
    if not (np.isfinite(candidate) and np.isfinite(production)):
        note = f"{name} is not computable on these patients"
        return {**_not_computable(note), "candidate": None, "production": None, "n_resamples": 0}
    if usable.sum() < MIN_SUCCESSFUL_SHARE * n_resamples:
        return {
            **_not_computable(f"only {int(usable.sum())} of {n_resamples} resamples usable"),
            "candidate": None,
            "production": production,
            "n_resamples": int(usable.sum()),
        }
    optimism = float(optimism_terms[usable].mean())
    lower, upper = np.percentile(apparent_differences[usable], [2.5, 97.5]) - optimism
    return {
        "candidate": candidate - optimism,
        "production": production,
        "difference": candidate - optimism - production,
        "apparent_difference": candidate - production,
        "optimism": optimism,
        "lower": float(lower),
        "upper": float(upper),
        "n_resamples": int(usable.sum()),
        "note": "",
    }


def _corrected_slope(apparent: dict, boot: pd.DataFrame, n_resamples: int, theirs) -> dict:
    """Optimism-corrected calibration slope with its location-shifted interval."""
    terms = boot["apparent_slope"] - boot["test_slope"]
    usable = np.isfinite(terms)
    base = {"production": theirs, "n_resamples": int(usable.sum())}
    if not np.isfinite(apparent["slope"]):
        note = "the slope is not computable on these patients"
        return {**base, **_not_computable(note), "slope": None}
    if usable.sum() < MIN_SUCCESSFUL_SHARE * n_resamples:
        note = f"only {int(usable.sum())} of {n_resamples} resamples usable"
        return {**base, **_not_computable(note), "slope": None}
    optimism = float(terms[usable].mean())
    lower, upper = np.percentile(boot["apparent_slope"][usable], [2.5, 97.5]) - optimism
    return {
        **base,
        "slope": apparent["slope"] - optimism,
        "apparent": apparent["slope"],
        "optimism": optimism,
        "lower": float(lower),
        "upper": float(upper),
        "note": "",
    }


def optimism_corrected(
    rows: pd.DataFrame,
    candidate: ModelBundle,
    production: ModelBundle | None,
    refit: Refit,
    predict: Predict,
    *,
    n_resamples: int = OPTIMISM_BOOTSTRAP,
    seed: int = 0,
    n_jobs: int = 1,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Optimism-corrected ΔC (Harrell, Uno) and calibration slope of `candidate` on `rows`.

    Parameters
    ----------
    rows : DataFrame, shape = (n_patients, n_columns)
        The validated patients `candidate` was fitted on, less any `production` was fitted on.
    candidate : ModelBundle
        The procedure's fit on all of `rows` (the registered candidate): its apparent figures.
    production : ModelBundle, optional
        The model in production, fitted elsewhere; without it only the slope is figured.
    refit : callable
        The candidate's procedure, repeated on each resample.
    predict : callable
        (bundle, endpoint, rows) -> (risk, survival at the slope's horizon).
    n_jobs : int
        Processes sharing the resamples (joblib's convention); the figures do not depend on it.

    Returns
    -------
    dict
        ``{endpoint: {"harrell_c" | "uno_c": {candidate, production, difference, lower, upper,
        apparent_difference, optimism, n_resamples, note}, "slope": {slope, production, lower,
        upper, apparent, optimism, n_resamples, note}, "failed_resamples": n}}``; None where not
        computable.
    """
    endpoints_y = {e: survival_target(rows, e) for e in ENDPOINTS}
    mine = {e: predict(candidate, e, rows) for e in ENDPOINTS}
    theirs = (
        {e: predict(production, e, rows) for e in ENDPOINTS} if production is not None else None
    )
    # Without production, its risk is the candidate's own: the C columns are then unused.
    production_risk = {e: (theirs or mine)[e][0] for e in ENDPOINTS}
    boot, failed = _replicates(
        rows, endpoints_y, production_risk, refit, predict, n_resamples, seed, n_jobs
    )
    if failed:
        logger.info("the candidate's procedure failed on %d of %d resamples", failed, n_resamples)
    return {
        endpoint: _endpoint_figures(
            endpoints_y[endpoint],
            mine[endpoint],
            None if theirs is None else theirs[endpoint],
            production_risk[endpoint],
            boot[endpoint],
            n_resamples,
            failed,
        )
        for endpoint in ENDPOINTS
    }


def _endpoint_figures(y, mine, theirs, production_risk, boot, n_resamples: int, failed: int):
    """One endpoint's corrected slope and, with a production model, corrected ΔC."""
    apparent = _measures(y, *mine, production_risk)
    frame = boot if len(boot) else _empty_replicates()
    their_slope = None if theirs is None else slope_with_interval(y, theirs[1])["slope"]
    figures = {
        "slope": _corrected_slope(apparent, frame, n_resamples, their_slope),
        "failed_resamples": failed,
    }
    if theirs is None:
        return figures
    same = _same_ranking(mine[0], production_risk)
    for name in ("harrell_c", "uno_c"):
        figures[name] = (
            _unchanged_c(name, apparent)
            if same
            else _corrected_c(name, apparent, frame, n_resamples)
        )
    return figures


def _same_ranking(risk: np.ndarray, production_risk: np.ndarray) -> bool:
    """Whether `risk` orders every pair of patients as `production_risk` does (ties included)."""
    return bool(
        np.array_equal(rankdata(risk, method="dense"), rankdata(production_risk, method="dense"))
    )


def _unchanged_c(name: str, apparent: dict) -> dict:
    """ΔC of a candidate that ranks the patients exactly as production: 0, with nothing to
    correct. An update of the baseline or of the calibration slope only (paths 0-2) changes no
    ranking anywhere; charging it the optimism of the refits that did revise terms would judge
    what the procedure might have done instead of the model it did produce."""
    production = apparent[f"{name}_production"]
    computable = bool(np.isfinite(production))
    return {
        "candidate": production if computable else None,
        "production": production if computable else None,
        "difference": 0.0 if computable else None,
        "apparent_difference": 0.0 if computable else None,
        "optimism": 0.0 if computable else None,
        "lower": 0.0 if computable else None,
        "upper": 0.0 if computable else None,
        "n_resamples": 0,
        "note": "the candidate ranks these patients exactly as production does: ΔC is 0",
    }


def _empty_replicates() -> pd.DataFrame:
    names = ["harrell_c_candidate", "harrell_c_production", "uno_c_candidate",
             "uno_c_production", "slope"]  # fmt: skip
    return pd.DataFrame({f"{kind}_{n}": [] for kind in ("apparent", "test") for n in names})
