"""Calibrate the synthetic cohort's free parameters to the published aggregates."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import optimize
from sksurv.nonparametric import kaplan_meier_estimator

from model.schema import GRADES, MODALITIES
from training.synthetic import (
    CohortSpec,
    modality_probabilities,
    simulate_cohort,
    simulate_covariates,
    true_cumulative_hazard,
)

# Chen 2017: median HPFS and OS by WHO grade, months.
CHEN2017_MEDIANS = {
    "hpfs": {"G1": 18.5, "G2": 12.2, "G3": 4.9},
    "os": {"G1": 125.1, "G2": 33.9, "G3": 9.3},
}


def km_median(time: np.ndarray, event: np.ndarray) -> float:
    """Kaplan-Meier median in months; `inf` when the curve never reaches 0.5."""
    times, survival = kaplan_meier_estimator(np.asarray(event, dtype=bool), np.asarray(time))
    reached = survival <= 0.5
    return float(times[np.argmax(reached)]) if reached.any() else float("inf")


def km_medians_by_grade(cohort: pd.DataFrame, endpoint: str) -> dict[str, float]:
    """Kaplan-Meier median of `endpoint` in each WHO grade."""
    return {
        grade: km_median(rows[f"{endpoint}_months"], rows[f"{endpoint}_event"])
        for grade, rows in cohort.groupby("who_grade")
    }


def calibrate_modality_intercepts(spec: CohortSpec, n: int = 200_000, seed: int = 0) -> dict:
    """Intercepts of the modality logit giving the target overall shares."""
    covariates = simulate_covariates(n, np.random.default_rng(seed), spec)
    target = spec.raw["modality_assignment"]["overall_shares"]["target"]

    def share_error(intercepts: np.ndarray) -> np.ndarray:
        trial = _with(
            spec,
            ["modality_assignment", "intercepts", "value"],
            dict(zip(MODALITIES[1:], intercepts, strict=True)),
        )
        shares = modality_probabilities(covariates, trial).mean()
        return np.array([shares[m] - target[m] for m in MODALITIES[1:]])

    start = np.array(
        [spec.raw["modality_assignment"]["intercepts"]["value"][m] for m in MODALITIES[1:]]
    )
    solution = optimize.fsolve(share_error, start)
    return {m: round(float(v), 3) for m, v in zip(MODALITIES[1:], solution, strict=True)}


def marginal_median(
    log_hazards: np.ndarray,
    shape: float,
    scale: float,
    competing_cumulative_hazard: Callable[[float], np.ndarray] | None = None,
) -> float:
    """Median of the population survival curve mean(exp(-(t/scale)**shape * exp(lp) - Hc(t))).

    `competing_cumulative_hazard`, when given, maps a time in months to each patient's
    cumulative hazard of a competing event that also ends the endpoint (death, for HPFS).
    """
    relative = np.exp(log_hazards)

    def excess(log_t: float) -> float:
        hazard = np.exp(shape * (log_t - np.log(scale))) * relative
        if competing_cumulative_hazard is not None:
            hazard = hazard + competing_cumulative_hazard(float(np.exp(log_t)))
        return float(np.mean(np.exp(-hazard)) - 0.5)

    return float(np.exp(optimize.brentq(excess, -20.0, 20.0)))


def calibrate_baseline(spec: CohortSpec, endpoint: str, n: int = 100_000, seed: int = 0) -> dict:
    """Weibull shape and scale whose medians by grade best match Chen 2017.

    Both endpoints are fitted on the true population curves of each grade, which Kaplan-Meier
    estimates without bias because censoring (accrual and loss to follow-up) is independent
    of the patient. For OS that is the Cox model's survival. HPFS ends at progression or
    death, whichever comes first (the conventional definition; Chen 2017 does not state its
    own, so the convention is assumed), so its curve is ``exp(-H_progression - H_death)``
    with the spec's (already calibrated) OS model as the death hazard; only the baseline of
    the cause-specific progression hazard is fitted.
    Two parameters cannot match three medians exactly; the loss is the squared log-median
    error over the grades.
    """
    cohort = simulate_cohort(n, seed, spec)
    grades = cohort["who_grade"].to_numpy()
    log_hazard = cohort[f"true_lp_{endpoint}"].to_numpy()
    death_log_hazard = cohort["true_lp_os"].to_numpy()
    targets = np.log([CHEN2017_MEDIANS[endpoint][g] for g in GRADES])

    def competing(rows: np.ndarray) -> Callable[[float], np.ndarray] | None:
        if endpoint == "os":
            return None
        return lambda months: true_cumulative_hazard(death_log_hazard[rows], [months], "os", spec)[
            :, 0
        ]

    def medians(shape: float, scale: float) -> list[float]:
        return [
            marginal_median(log_hazard[grades == g], shape, scale, competing(grades == g))
            for g in GRADES
        ]

    def loss(log_params: np.ndarray) -> float:
        return float(np.sum((np.log(medians(*np.exp(log_params))) - targets) ** 2))

    result = optimize.minimize(
        loss, np.log([1.0, 50.0]), method="Powell", bounds=[(-1.5, 1.5), (0.0, 9.0)]
    )
    shape, scale = np.exp(result.x)
    fitted = dict(zip(GRADES, np.round(medians(shape, scale), 2).tolist(), strict=True))
    return {
        "shape": round(float(shape), 4),
        "scale_months": round(float(scale), 3),
        "medians": fitted,
    }


def _with(spec: CohortSpec, keys: list[str], values: dict) -> CohortSpec:
    raw = copy.deepcopy(spec.raw)
    node = raw
    for key in keys:
        node = node[key]
    node.update(values)
    return CohortSpec(raw)


def calibrate(spec: CohortSpec | None = None) -> dict:
    """All calibrated parameters, in the order they depend on each other."""
    spec = spec or CohortSpec.load()
    intercepts = calibrate_modality_intercepts(spec)
    spec = _with(spec, ["modality_assignment", "intercepts", "value"], intercepts)
    result = {"modality_intercepts": intercepts}
    for endpoint in ("os", "hpfs"):
        baseline = calibrate_baseline(spec, endpoint)
        fitted = {k: baseline[k] for k in ("shape", "scale_months")}
        spec = _with(spec, ["hazards", endpoint, "baseline"], fitted)
        result[endpoint] = baseline
    return result
