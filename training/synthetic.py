"""Synthetic reference cohort: literature-calibrated NET embolotherapy patients with known truth."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from model.schema import (
    BOOLEAN_FIELDS,
    BURDEN_CATEGORIES,
    ENDPOINTS,
    FEATURE_NAMES,
    GRADES,
    MODALITIES,
    PRIMARY_SITES,
    encode,
)

DEFAULT_SPEC_PATH = Path(__file__).resolve().parents[1] / "data" / "cohort_spec.yaml"
MONTH_DAYS = 30.4375

# Burden percent is drawn uniformly inside its category; the ranges keep a value rounded to
# 0.1 % inside the category it was drawn for (boundary values as in model.schema).
_BURDEN_RANGES = {
    "<25": (1.0, 24.9),
    "25-50": (25.0, 50.0),
    "50-75": (50.1, 75.0),
    ">75": (75.1, 95.0),
}
_MIN_TIME_MONTHS = 0.01


@dataclass(frozen=True)
class CohortSpec:
    """The parameters of `data/cohort_spec.yaml`, with typed accessors for the generator."""

    raw: dict

    @classmethod
    def load(cls, path: str | Path = DEFAULT_SPEC_PATH) -> CohortSpec:
        """Read a cohort specification from YAML."""
        with open(path, encoding="utf-8") as handle:
            return cls(yaml.safe_load(handle))

    @property
    def covariates(self) -> dict:
        return self.raw["covariates"]

    def log_hazard_ratios(self, endpoint: str) -> pd.Series:
        """True log-hazard ratios of `endpoint`, indexed by :data:`FEATURE_NAMES`."""
        ratios = self.raw["hazards"][endpoint]["hazard_ratios"]
        return pd.Series({name: np.log(ratios[name]["value"]) for name in FEATURE_NAMES})

    def baseline(self, endpoint: str) -> tuple[float, float]:
        """Weibull baseline `(shape, scale_months)`: H0(t) = (t / scale) ** shape."""
        baseline = self.raw["hazards"][endpoint]["baseline"]
        return float(baseline["shape"]), float(baseline["scale_months"])

    @cached_property
    def modality_log_odds(self) -> pd.DataFrame:
        """Log-odds against TACE, shape = (n_features + 1, 2): intercept then design columns."""
        assignment = self.raw["modality_assignment"]
        table = pd.DataFrame(0.0, index=["intercept", *FEATURE_NAMES], columns=list(MODALITIES[1:]))
        for modality in MODALITIES[1:]:
            table.loc["intercept", modality] = assignment["intercepts"]["value"][modality]
            for name, value in assignment["log_odds"][modality].items():
                table.loc[name, modality] = value
        return table


def true_log_hazard(
    frame: pd.DataFrame, endpoint: str, spec: CohortSpec, modality: str | None = None
) -> np.ndarray:
    """True log relative hazard of `endpoint` (received modality, or `modality` for everyone)."""
    return encode(frame, modality).to_numpy() @ spec.log_hazard_ratios(endpoint).to_numpy()


def true_survival(
    log_hazard: np.ndarray, times: np.ndarray, endpoint: str, spec: CohortSpec
) -> np.ndarray:
    """True survival, ndarray shape = (n_samples, n_times): exp(-H0(t) exp(lp))."""
    shape, scale = spec.baseline(endpoint)
    cumulative = (np.asarray(times, dtype=float) / scale) ** shape
    return np.exp(-np.outer(np.exp(log_hazard), cumulative))


def true_median(log_hazard: np.ndarray, endpoint: str, spec: CohortSpec) -> np.ndarray:
    """True median time in months for each log relative hazard."""
    shape, scale = spec.baseline(endpoint)
    return scale * (np.log(2.0) * np.exp(-np.asarray(log_hazard))) ** (1.0 / shape)


def _by_grade_choice(rng, grades, table, levels) -> np.ndarray:
    out = np.empty(len(grades), dtype=object)
    for grade in GRADES:
        rows = grades == grade
        probabilities = [table[grade][level] for level in levels]
        out[rows] = rng.choice(np.asarray(levels, dtype=object), size=rows.sum(), p=probabilities)
    return out


def _by_grade_flag(rng, grades, table) -> np.ndarray:
    probability = np.array([table[g] for g in GRADES])[np.searchsorted(GRADES, grades)]
    return rng.random(len(grades)) < probability


def simulate_covariates(n: int, rng: np.random.Generator, spec: CohortSpec) -> pd.DataFrame:
    """Baseline patient fields (no modality, no outcome), shape = (n, n_fields)."""
    cov = spec.covariates
    grade_p = cov["who_grade"]["probabilities"]
    grades = rng.choice(np.asarray(GRADES, dtype=object), size=n, p=[grade_p[g] for g in GRADES])

    age = cov["age_years"]
    low, high = (
        (age["minimum"] - age["mean"]) / age["sd"],
        (age["maximum"] - age["mean"]) / age["sd"],
    )
    ages = stats.truncnorm.rvs(
        low, high, loc=age["mean"], scale=age["sd"], size=n, random_state=rng
    )

    ki67 = np.empty(n)
    for grade, (lo, hi) in cov["ki67_percent"]["uniform_within_grade"].items():
        rows = grades == grade
        ki67[rows] = rng.uniform(lo, hi, rows.sum())

    burden_category = _by_grade_choice(
        rng, grades, cov["tumor_burden_category"]["by_grade"], BURDEN_CATEGORIES
    )
    burden = np.empty(n)
    for category, (lo, hi) in _BURDEN_RANGES.items():
        rows = burden_category == category
        burden[rows] = rng.uniform(lo, hi, rows.sum())

    frame = pd.DataFrame(
        {
            "age_years": np.clip(np.rint(ages), age["minimum"], age["maximum"]).astype(int),
            "sex": np.where(rng.random(n) < cov["sex_male"]["probability"], "male", "female"),
            "who_grade": grades,
            "ki67_percent": np.round(ki67, 1),
            "tumor_burden_percent": np.round(burden, 1),
            "primary_site": _by_grade_choice(
                rng, grades, cov["primary_site"]["by_grade"], PRIMARY_SITES
            ),
            "primary_resected": rng.random(n) < cov["primary_resected"]["probability"],
        }
    )
    for name in BOOLEAN_FIELDS:
        frame[name] = _by_grade_flag(rng, grades, cov[name]["by_grade"])
    return frame


def modality_probabilities(frame: pd.DataFrame, spec: CohortSpec) -> pd.DataFrame:
    """True probability of each modality given the baseline fields, shape = (n, 3)."""
    log_odds = spec.modality_log_odds
    design = encode(frame, "TACE").to_numpy()
    logits = np.column_stack(
        [np.zeros(len(frame))]
        + [
            log_odds.loc["intercept", m] + design @ log_odds[m].iloc[1:].to_numpy()
            for m in MODALITIES[1:]
        ]
    )
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return pd.DataFrame(probabilities, columns=list(MODALITIES), index=frame.index)


def _draw_times(rng, log_hazard, endpoint, spec, unit_exponential=None) -> np.ndarray:
    shape, scale = spec.baseline(endpoint)
    if unit_exponential is None:
        unit_exponential = rng.exponential(size=len(log_hazard))
    return scale * (unit_exponential * np.exp(-log_hazard)) ** (1.0 / shape)


def _censoring(rng, n, spec) -> tuple[np.ndarray, np.ndarray]:
    follow_up = spec.raw["follow_up"]
    first = pd.Timestamp(f"{follow_up['treatment_years']['first']}-01-01")
    last = pd.Timestamp(f"{follow_up['treatment_years']['last']}-12-31")
    span_days = (last - first).days
    # Linear accrual density rising `growth`-fold: inverse-CDF sampling of a trapezoid.
    growth = float(follow_up["accrual_growth"]["value"])
    u = rng.random(n)
    fraction = (np.sqrt(1.0 + u * (growth**2 - 1.0)) - 1.0) / (growth - 1.0)
    treatment_days = np.floor(fraction * span_days)
    treatment_date = first + pd.to_timedelta(treatment_days, unit="D")
    analysis = pd.Timestamp(follow_up["analysis_date"]["value"])
    administrative = (analysis - treatment_date).days.to_numpy() / MONTH_DAYS
    lost = follow_up["lost_to_follow_up"]
    is_lost = rng.random(n) < lost["fraction"]
    lost_at = np.where(is_lost, rng.uniform(0.0, lost["within_months"], n), np.inf)
    return np.minimum(administrative, lost_at), treatment_date.to_numpy()


def simulate_cohort(
    n: int, seed: int = 0, spec: CohortSpec | None = None, n_centers: int = 3
) -> pd.DataFrame:
    """Simulate a cohort of `n` patients, deterministic for `seed`.

    Progression and death are drawn from Cox models with Weibull baselines, independent given
    the patient's fields; HPFS ends at hepatic progression (event) or at death, loss to
    follow-up or database closure (censored), so HPFS never exceeds OS.

    Returns
    -------
    DataFrame, shape = (n, n_columns)
        The cohort columns of the design (patient fields, `modality`, outcomes, `center`,
        `treatment_date`) plus the truth: `true_lp_hpfs`, `true_lp_os` for the received
        modality and `true_lp_{endpoint}_{modality}` for every modality.
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of patients, but got {n}")
    spec = spec or CohortSpec.load()
    rng = np.random.default_rng(seed)
    frame = simulate_covariates(n, rng, spec)
    probabilities = modality_probabilities(frame, spec).to_numpy()
    draws = rng.random(n)[:, None] > np.cumsum(probabilities, axis=1)
    frame["modality"] = np.asarray(MODALITIES, dtype=object)[draws.sum(axis=1)]

    truth = {}
    for endpoint in ENDPOINTS:
        truth[f"true_lp_{endpoint}"] = true_log_hazard(frame, endpoint, spec)
        for modality in MODALITIES:
            truth[f"true_lp_{endpoint}_{modality}"] = true_log_hazard(
                frame, endpoint, spec, modality
            )
    progression = _draw_times(rng, truth["true_lp_hpfs"], "hpfs", spec)
    death = _draw_times(rng, truth["true_lp_os"], "os", spec)
    censor, treatment_date = _censoring(rng, n, spec)

    os_months = np.minimum(death, censor)
    hpfs_months = np.minimum(progression, os_months)
    frame["hpfs_months"] = np.maximum(np.round(hpfs_months, 3), _MIN_TIME_MONTHS)
    frame["hpfs_event"] = (progression <= os_months).astype(int)
    frame["os_months"] = np.maximum(np.round(os_months, 3), _MIN_TIME_MONTHS)
    frame["os_event"] = (death <= censor).astype(int)
    frame.insert(0, "patient_id", [f"SYN{i:07d}" for i in range(1, n + 1)])
    frame.insert(
        1,
        "center",
        np.asarray([f"C{i + 1}" for i in range(n_centers)])[rng.integers(0, n_centers, n)],
    )
    frame.insert(2, "treatment_date", treatment_date)
    for name, values in truth.items():
        frame[name] = values
    return frame


def write_cohort(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a cohort as CSV or Parquet, chosen by the file extension."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False, date_format="%Y-%m-%d")
    elif suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        raise ValueError(f"output path must end in .csv or .parquet, but got {path.name!r}")
    return path
