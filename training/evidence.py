"""The published evidence's uncertainty: SEs from p-values, and shrunk subgroup effects."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from model.schema import GRADES, MODALITIES

MODALITY_EFFECT_OPTIONS = ("shrunk", "published")
"""How the generator sets the modality-within-grade effects: shrunk (the default) or Table 1's."""


def standard_error_from_p(hazard_ratio: float, p_value: float) -> float:
    """Standard error of ``ln HR`` implied by its two-sided p-value.

    ``se = |ln HR| / Φ⁻¹(1 − p/2)``: an approximation that assumes the p-value comes from a
    Wald test (``z = ln HR / se``) and is not rounded much; papers rarely give the SE itself.
    """
    if not 0.0 < p_value < 1.0:
        raise ValueError(f"p_value must lie strictly between 0 and 1, but got {p_value}")
    if hazard_ratio <= 0.0:
        raise ValueError(f"hazard_ratio must be positive, but got {hazard_ratio}")
    return abs(float(np.log(hazard_ratio))) / float(stats.norm.ppf(1.0 - p_value / 2.0))


@dataclass(frozen=True)
class RandomEffectsShrinkage:
    """Random-effects pooling of one effect across subgroups, with empirical-Bayes estimates.

    Attributes
    ----------
    tau2 : float
        DerSimonian-Laird between-subgroup variance of the log effect.
    pooled : float
        Random-effects pooled log effect ``μ_RE``.
    pooled_se : float
    shrunk : ndarray, shape = (n_subgroups,)
        Empirical-Bayes log effects ``μ_RE + τ²/(τ² + se²)·(y − μ_RE)``.
    shrunk_se : ndarray, shape = (n_subgroups,)
        Their posterior standard errors.
    """

    tau2: float
    pooled: float
    pooled_se: float
    shrunk: np.ndarray
    shrunk_se: np.ndarray


def shrink_random_effects(estimates, standard_errors) -> RandomEffectsShrinkage:
    """DerSimonian-Laird random-effects model and empirical-Bayes shrinkage towards its mean.

    τ² is the DerSimonian-Laird moment estimator (DerSimonian R, Laird N. Meta-analysis in
    clinical trials. Control Clin Trials 1986;7:177-188), truncated at 0. Each subgroup's
    estimate is shrunk towards the random-effects mean by ``B = τ²/(τ² + se²)`` (Efron B,
    Morris C. Data analysis using Stein's estimator and its generalizations. JASA
    1975;70:311-319). Its posterior variance ``τ² se²/(τ² + se²) + (1 − B)² Var(μ_RE)`` adds the
    uncertainty of the mean (Morris C. Parametric empirical Bayes inference. JASA 1983;78:47-55)
    but not that of τ², so it is a lower bound. Written by hand because no dependency of the
    project ships a meta-analysis (statsmodels' is not installed); the formulas are a few lines.

    Parameters
    ----------
    estimates, standard_errors : array-like, shape = (n_subgroups,)
        Log effects and their standard errors.
    """
    y = np.asarray(estimates, dtype=float)
    se2 = np.asarray(standard_errors, dtype=float) ** 2
    if y.shape != se2.shape or y.size < 2:
        raise ValueError(
            "estimates and standard_errors must be two arrays of the same length, at least 2, "
            f"but got shapes {y.shape} and {se2.shape}"
        )
    weights = 1.0 / se2
    fixed = np.sum(weights * y) / weights.sum()
    q = float(np.sum(weights * (y - fixed) ** 2))
    scaling = weights.sum() - np.sum(weights**2) / weights.sum()
    tau2 = max(0.0, (q - (y.size - 1)) / scaling)
    random_weights = 1.0 / (se2 + tau2)
    pooled = float(np.sum(random_weights * y) / random_weights.sum())
    pooled_variance = 1.0 / random_weights.sum()
    kept = tau2 / (tau2 + se2)
    shrunk = pooled + kept * (y - pooled)
    variance = kept * se2 + (1.0 - kept) ** 2 * pooled_variance
    return RandomEffectsShrinkage(
        tau2=tau2,
        pooled=pooled,
        pooled_se=float(np.sqrt(pooled_variance)),
        shrunk=shrunk,
        shrunk_se=np.sqrt(variance),
    )


def modality_effect_names(modality: str) -> list[str]:
    """Design columns of `modality` within each grade, G1 to G3 (``SIRT_in_G1``, ...)."""
    return [f"{modality}_in_{grade}" for grade in GRADES]


def shrunk_modality_effects(hazard_ratios: dict) -> dict[str, RandomEffectsShrinkage]:
    """Shrinkage of each modality's within-grade effects for one endpoint, keyed by modality.

    Parameters
    ----------
    hazard_ratios : dict
        An endpoint's `hazard_ratios` block of `data/cohort_spec.yaml`: each within-grade
        entry holds the published `value` and the `se_log` derived from its p-value.
    """
    shrinkage = {}
    for modality in MODALITIES[1:]:
        entries = [hazard_ratios[name] for name in modality_effect_names(modality)]
        shrinkage[modality] = shrink_random_effects(
            np.log([float(entry["value"]) for entry in entries]),
            [float(entry["se_log"]) for entry in entries],
        )
    return shrinkage


def shrinkage_table(hazard_ratios: dict) -> pd.DataFrame:
    """Published and shrunk within-grade hazard ratios of one endpoint, one row per column.

    Returns
    -------
    DataFrame, shape = (n_modalities * n_grades, 8)
        `published_hr`, `se_log`, `tau2`, `pooled_hr`, `pooled_se_log`, `shrinkage_kept`
        (``τ²/(τ² + se²)``), `shrunk_hr` and `shrunk_se_log`, indexed by design column.
    """
    rows = {}
    for modality, fit in shrunk_modality_effects(hazard_ratios).items():
        for i, name in enumerate(modality_effect_names(modality)):
            se = float(hazard_ratios[name]["se_log"])
            rows[name] = {
                "published_hr": float(hazard_ratios[name]["value"]),
                "se_log": se,
                "tau2": fit.tau2,
                "pooled_hr": float(np.exp(fit.pooled)),
                "pooled_se_log": fit.pooled_se,
                "shrinkage_kept": fit.tau2 / (fit.tau2 + se**2),
                "shrunk_hr": float(np.exp(fit.shrunk[i])),
                "shrunk_se_log": float(fit.shrunk_se[i]),
            }
    return pd.DataFrame.from_dict(rows, orient="index")
