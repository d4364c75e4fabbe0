"""Synthetic reference cohort: literature-calibrated NET embolotherapy patients with known truth."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from numpy.polynomial.legendre import leggauss
from scipy import stats

from model.schema import (
    BOOLEAN_FIELDS,
    BURDEN_BANDS,
    BURDEN_CATEGORIES,
    ENDPOINTS,
    FEATURE_NAMES,
    GRADES,
    MODALITIES,
    PRIMARY_SITES,
    encode,
)
from training.evidence import (
    MODALITY_EFFECT_OPTIONS,
    modality_effect_names,
    shrunk_modality_effects,
)
from training.ki67_effect import ki67_within_grade_log_hazard

DEFAULT_SPEC_PATH = Path(__file__).resolve().parents[1] / "data" / "cohort_spec.yaml"
MONTH_DAYS = 30.4375


def burden_draw_ranges(
    lowest: float = 1.0, highest: float = 95.0, step: float = 0.1
) -> dict[str, tuple[float, float]]:
    """The range burden percent is drawn from, uniformly, inside each burden category.

    A value rounded to `step` stays inside the category it was drawn for: each range starts
    at a cut-off the category holds (:data:`model.schema.BURDEN_BANDS`) or one `step` above
    one it does not, and ends likewise. `lowest` and `highest` are assumptions (no patient
    is treated for a burden of 0 % or 100 %).
    """
    bands = BURDEN_BANDS
    ranges = {}
    for i, level in enumerate(bands.levels):
        low, high = lowest, highest
        if i > 0:
            low = bands.cuts[i - 1] + (0.0 if bands.equal_goes_up[i - 1] else step)
        if i < len(bands.cuts):
            high = bands.cuts[i] - (step if bands.equal_goes_up[i] else 0.0)
        ranges[level] = (low, high)
    return ranges


_BURDEN_RANGES = burden_draw_ranges()
_MIN_TIME_MONTHS = 0.01

TRUTH_MONTHS = (12, 24, 36, 60)
"""Months at which every synthetic patient carries its true survival and cumulative incidence."""
HPFS_EVENT_TYPES = ("progression", "death", "censored")
"""What ended HPFS: hepatic progression, death from any cause before it, or censoring."""


def _geometric_gauss_legendre(ratio: float = 4.0, levels: int = 12, order: int = 16):
    """Nodes and weights on [0, 1]: Gauss-Legendre on [0, r^-levels], ..., [1/r, 1].

    The intervals shrink geometrically towards 0, where the first-event integrands of
    :func:`_first_event_incidence` concentrate when a cumulative hazard is large; against an
    adaptive quadrature (scipy ``quad``, per subinterval, relative tolerance 1e-13) the error
    is below 1e-8 for cumulative hazards from 3e-4 to 1100 and shape ratios from 0.4 to 2.5.
    Order 16 rather than 12: at the calibrated shape ratio 2.24 (progression 2.56, death 1.14)
    order 12 left a plateaued cumulative incidence falling by 1.5e-9 between months; 16 brings
    that below 1e-11 for a third more work.
    """
    unit_nodes, unit_weights = leggauss(order)
    edges = np.concatenate(([0.0], ratio ** -np.arange(levels, -1, -1.0)))
    low, width = edges[:-1, None], np.diff(edges)[:, None]
    return (low + width * (unit_nodes + 1.0) / 2.0).ravel(), (width * unit_weights / 2.0).ravel()


_QUADRATURE = _geometric_gauss_legendre()
_QUADRATURE_CHUNK = 20_000


@dataclass(frozen=True)
class CohortSpec:
    """The parameters of `data/cohort_spec.yaml`, with typed accessors for the generator.

    Parameters
    ----------
    raw : dict
        The parsed YAML.
    modality_effects : {"shrunk", "published"}, optional
        How the modality-within-grade hazard ratios are set: shrunk towards each modality's
        pooled effect across grades (:mod:`training.evidence`), or Table 1's point estimates
        (for sensitivity analyses). Default: the spec's `modality_effects.default`. Each option
        has its own calibrated Weibull baselines and WHO-grade effects, so both reproduce the
        Chen 2017 medians by grade.
    """

    raw: dict
    modality_effects: str | None = None

    def __post_init__(self) -> None:
        option = self.effects
        if option not in MODALITY_EFFECT_OPTIONS:
            raise ValueError(
                f"modality_effects must be one of {', '.join(MODALITY_EFFECT_OPTIONS)}, "
                f"but got {option!r}"
            )

    @classmethod
    def load(
        cls, path: str | Path = DEFAULT_SPEC_PATH, modality_effects: str | None = None
    ) -> CohortSpec:
        """Read a cohort specification from YAML (`modality_effects` as in the class).

        With libyaml's safe loader where PyYAML has it: the same document, read ten times
        faster (every oracle and published reference of a cross-validation reads it).
        """
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        with open(path, encoding="utf-8") as handle:
            return cls(yaml.load(handle, Loader=loader), modality_effects)

    def with_modality_effects(self, modality_effects: str | None) -> CohortSpec:
        """The same parameters with the other option for the modality-within-grade effects."""
        return CohortSpec(self.raw, modality_effects)

    @property
    def effects(self) -> str:
        """The modality-effects option in force: the argument, else the spec's default."""
        return self.modality_effects or self.raw["modality_effects"]["default"]

    @property
    def covariates(self) -> dict:
        return self.raw["covariates"]

    def log_hazard_ratios(self, endpoint: str) -> pd.Series:
        """True log-hazard ratios of `endpoint`, indexed by :data:`FEATURE_NAMES`.

        Table 1's `value` for every column, except the WHO-grade effects with a `calibrated`
        value for the option in force, and, with the "shrunk" option, the modality-within-grade
        columns, which take their empirical-Bayes estimates (computed here from the published
        values and standard errors, :func:`training.evidence.shrunk_modality_effects`).
        """
        ratios = self.raw["hazards"][endpoint]["hazard_ratios"]
        log_ratios = {}
        for name in FEATURE_NAMES:
            calibrated = ratios[name].get("calibrated", {})
            log_ratios[name] = np.log(float(calibrated.get(self.effects, ratios[name]["value"])))
        if self.effects == "shrunk":
            for modality, fit in shrunk_modality_effects(ratios).items():
                log_ratios.update(zip(modality_effect_names(modality), fit.shrunk, strict=True))
        return pd.Series(log_ratios)[list(FEATURE_NAMES)]

    def baseline(self, endpoint: str) -> tuple[float, float]:
        """Weibull baseline `(shape, scale_months)`: H0(t) = (t / scale) ** shape."""
        baseline = self.raw["hazards"][endpoint]["baseline"]["calibrated"][self.effects]
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


def true_cumulative_hazard(
    log_hazard: np.ndarray, times, endpoint: str, spec: CohortSpec
) -> np.ndarray:
    """Cumulative hazard of the spec's Cox model for `endpoint`, shape = (n_samples, n_times).

    ``H0(t) exp(lp)`` with the Weibull baseline ``H0(t) = (t / scale) ** shape``. For "hpfs"
    this is the cause-specific hazard of hepatic progression (death is a competing event, not
    part of it); for "os" the hazard of death from any cause.
    """
    shape, scale = spec.baseline(endpoint)
    baseline = (np.asarray(times, dtype=float) / scale) ** shape
    return np.outer(np.exp(np.asarray(log_hazard, dtype=float)), baseline)


def true_hpfs_survival(
    log_hazard_progression: np.ndarray, log_hazard_death: np.ndarray, times, spec: CohortSpec
) -> np.ndarray:
    """True HPFS survival (progression or death), shape = (n_samples, n_times).

    Progression and death are independent given the patient's fields, so the composite
    survival is ``exp(-H_progression(t) - H_death(t))``.

    Parameters
    ----------
    log_hazard_progression : ndarray, shape = (n_samples,)
        Cause-specific log relative hazard of hepatic progression (`true_lp_hpfs...`).
    log_hazard_death : ndarray, shape = (n_samples,)
        Log relative hazard of death from any cause (`true_lp_os...`).
    times : array-like, shape = (n_times,)
        Months.
    """
    return np.exp(
        -true_cumulative_hazard(log_hazard_progression, times, "hpfs", spec)
        - true_cumulative_hazard(log_hazard_death, times, "os", spec)
    )


def true_cif_progression(
    log_hazard_progression: np.ndarray, log_hazard_death: np.ndarray, times, spec: CohortSpec
) -> np.ndarray:
    """True cumulative incidence of hepatic progression, death competing, shape = (n, n_times).

    ``CIF(t) = integral_0^t h_progression(u) S_hpfs(u) du`` (the chance of hepatic progression
    by `t` while alive), by quadrature accurate to 1e-8; it is not ``1 - exp(-H_progression)``.
    Arguments as in :func:`true_hpfs_survival`.
    """
    return _first_event_incidence(log_hazard_progression, log_hazard_death, times, spec, "hpfs")


def true_cif_death_before_progression(
    log_hazard_progression: np.ndarray, log_hazard_death: np.ndarray, times, spec: CohortSpec
) -> np.ndarray:
    """True cumulative incidence of death without hepatic progression, shape = (n, n_times).

    With :func:`true_cif_progression` it sums to ``1 - true_hpfs_survival``. Arguments as in
    :func:`true_hpfs_survival`.
    """
    return _first_event_incidence(log_hazard_progression, log_hazard_death, times, spec, "os")


def _first_event_incidence(log_hazard_progression, log_hazard_death, times, spec, first):
    """Cumulative incidence of the cause `first` ("hpfs" = progression, "os" = death).

    Substituting the cause's own cumulative hazard ``v = H_a(u) = w H_a(t)`` turns the integral
    into ``H_a(t) integral_0^1 exp(-H_a(t) w - H_b(t) w ** r) dw`` with ``r = shape_b / shape_a``,
    which depends on the patient only through the two cumulative hazards at `t`. When r < 1
    (a singular integrand at 0) the other cause's incidence is integrated instead and this one
    follows from ``1 - S - CIF_other``.
    """
    other = "os" if first == "hpfs" else "hpfs"
    by_cause = {
        "hpfs": true_cumulative_hazard(log_hazard_progression, times, "hpfs", spec),
        "os": true_cumulative_hazard(log_hazard_death, times, "os", spec),
    }
    ratio = spec.baseline(other)[0] / spec.baseline(first)[0]
    if ratio >= 1.0:
        return _incidence_integral(by_cause[first], by_cause[other], ratio)
    survival = np.exp(-by_cause[first] - by_cause[other])
    return 1.0 - survival - _incidence_integral(by_cause[other], by_cause[first], 1.0 / ratio)


def _incidence_integral(cumulative: np.ndarray, competing: np.ndarray, ratio: float) -> np.ndarray:
    nodes, weights = _QUADRATURE
    powered = nodes**ratio
    flat_cause, flat_competing = cumulative.ravel(), competing.ravel()
    out = np.empty_like(flat_cause)
    for start in range(0, len(out), _QUADRATURE_CHUNK):
        cause = flat_cause[start : start + _QUADRATURE_CHUNK, None]
        rival = flat_competing[start : start + _QUADRATURE_CHUNK, None]
        integrand = np.exp(-cause * nodes - rival * powered)
        out[start : start + _QUADRATURE_CHUNK] = cause[:, 0] * (integrand @ weights)
    return out.reshape(cumulative.shape)


def true_survival(
    log_hazard: np.ndarray,
    times,
    endpoint: str,
    spec: CohortSpec,
    log_hazard_death: np.ndarray | None = None,
) -> np.ndarray:
    """True survival of `endpoint`, ndarray shape = (n_samples, n_times).

    For "os", ``exp(-H0(t) exp(lp))`` with `log_hazard` the log relative hazard of death. For
    "hpfs", the composite HPFS survival of :func:`true_hpfs_survival`: `log_hazard` is then the
    cause-specific log hazard of progression and `log_hazard_death` is required.
    """
    if endpoint == "hpfs":
        if log_hazard_death is None:
            raise ValueError(
                "HPFS ends at progression or death, so its true survival needs "
                "`log_hazard_death` (the `true_lp_os...` column) beside the progression "
                "log hazard, but got None"
            )
        return true_hpfs_survival(log_hazard, log_hazard_death, times, spec)
    return np.exp(-true_cumulative_hazard(log_hazard, times, endpoint, spec))


def true_median(
    log_hazard: np.ndarray,
    endpoint: str,
    spec: CohortSpec,
    log_hazard_death: np.ndarray | None = None,
) -> np.ndarray:
    """True median time in months for each patient, shape = (n_samples,).

    Arguments as in :func:`true_survival`; the composite HPFS median solves
    ``H_progression(t) + H_death(t) = log 2`` by bisection on log t, to 1e-9 relative.
    """
    shape, scale = spec.baseline(endpoint)
    single = scale * (np.log(2.0) * np.exp(-np.asarray(log_hazard, dtype=float))) ** (1.0 / shape)
    if endpoint != "hpfs":
        return single
    if log_hazard_death is None:
        raise ValueError(
            "HPFS ends at progression or death, so its true median needs `log_hazard_death`, "
            "but got None"
        )
    low, high = np.full_like(single, -30.0), np.log(single)
    for _ in range(80):
        middle = (low + high) / 2.0
        hazard = _composite_cumulative_hazard(log_hazard, log_hazard_death, np.exp(middle), spec)
        above = hazard >= np.log(2.0)
        high, low = np.where(above, middle, high), np.where(above, low, middle)
    return np.exp(high)


def _composite_cumulative_hazard(log_hazard_progression, log_hazard_death, months, spec):
    """``H_progression + H_death`` at one time per patient, shape = (n_samples,)."""
    total = np.zeros_like(months)
    for endpoint, log_hazard in (("hpfs", log_hazard_progression), ("os", log_hazard_death)):
        shape, scale = spec.baseline(endpoint)
        total = total + (months / scale) ** shape * np.exp(np.asarray(log_hazard, dtype=float))
    return total


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


def draw_progression_and_death(
    log_hazard_progression: np.ndarray,
    log_hazard_death: np.ndarray,
    rng: np.random.Generator,
    spec: CohortSpec,
) -> tuple[np.ndarray, np.ndarray]:
    """Uncensored times of hepatic progression and of death, months, shape = (n_samples,) each.

    Drawn independently by inverting the Weibull-Cox cumulative hazards (progression first,
    then death, from `rng`); HPFS is their minimum, OS the death. Progression times past a
    death are latent: they are never observed.
    """
    return (
        _draw_times(rng, np.asarray(log_hazard_progression, dtype=float), "hpfs", spec),
        _draw_times(rng, np.asarray(log_hazard_death, dtype=float), "os", spec),
    )


def _draw_times(rng, log_hazard, endpoint, spec) -> np.ndarray:
    shape, scale = spec.baseline(endpoint)
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


def simulate_treated_patients(n: int, rng: np.random.Generator, spec: CohortSpec) -> pd.DataFrame:
    """Baseline patient fields and the modality each received, shape = (n, n_fields + 1)."""
    frame = simulate_covariates(n, rng, spec)
    probabilities = modality_probabilities(frame, spec).to_numpy()
    draws = rng.random(n)[:, None] > np.cumsum(probabilities, axis=1)
    frame["modality"] = np.asarray(MODALITIES, dtype=object)[draws.sum(axis=1)]
    return frame


def simulate_cohort(
    n: int,
    seed: int = 0,
    spec: CohortSpec | None = None,
    n_centers: int = 3,
    *,
    modality_effects: str | None = None,
    ki67_per_10_points: float = 0.0,
) -> pd.DataFrame:
    """Simulate a cohort of `n` patients, deterministic for `seed`.

    Hepatic progression and death are drawn independently given the patient's fields, each
    from a Cox model with a Weibull baseline (the spec's `hazards.hpfs` model is the
    cause-specific hazard of progression, `hazards.os` the hazard of death). HPFS ends at
    progression or death from any cause, whichever comes first (the conventional
    progression-free-survival definition, data/README.md), or is censored at loss to
    follow-up or database closure; `hpfs_event_type` says which, and HPFS never exceeds OS.

    Returns
    -------
    DataFrame, shape = (n, n_columns)
        The cohort columns of the design (patient fields, `modality`, outcomes,
        `hpfs_event_type`, `center`, `treatment_date`) plus the truth: `true_lp_hpfs` (the
        cause-specific log hazard of progression) and `true_lp_os` for the received modality,
        `true_lp_{endpoint}_{modality}` for every modality, and at :data:`TRUTH_MONTHS` under
        every modality the true composite-HPFS and OS survival `true_surv_{endpoint}_{modality}_
        {month}` and cumulative incidence of hepatic progression (death competing)
        `true_cif_progression_{modality}_{month}`.

    `modality_effects` ("shrunk" or "published"), when given, overrides the spec's option for
    the modality-within-grade hazard ratios (:class:`CohortSpec`). `ki67_per_10_points`,
    when not 0, adds a continuous Ki-67 effect within grade to both endpoints' true log
    hazards (an assumption; :mod:`training.ki67_effect`).
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of patients, but got {n}")
    spec = spec or CohortSpec.load()
    if modality_effects is not None:
        spec = spec.with_modality_effects(modality_effects)
    rng = np.random.default_rng(seed)
    frame = simulate_treated_patients(n, rng, spec)

    truth = _true_log_hazards(frame, spec, ki67_per_10_points)
    progression, death = draw_progression_and_death(
        truth["true_lp_hpfs"], truth["true_lp_os"], rng, spec
    )
    censor, treatment_date = _censoring(rng, n, spec)
    _add_outcomes(frame, progression, death, censor)
    frame.insert(0, "patient_id", [f"SYN{i:07d}" for i in range(1, n + 1)])
    frame.insert(
        1,
        "center",
        np.asarray([f"C{i + 1}" for i in range(n_centers)])[rng.integers(0, n_centers, n)],
    )
    frame.insert(2, "treatment_date", treatment_date)
    truth.update(true_values_at(truth, spec))
    return pd.concat([frame, pd.DataFrame(truth, index=frame.index)], axis=1)


def _true_log_hazards(frame: pd.DataFrame, spec: CohortSpec, ki67_per_10_points: float) -> dict:
    """`true_lp_{endpoint}` (received modality) and `true_lp_{endpoint}_{modality}` columns."""
    truth = {}
    for endpoint in ENDPOINTS:
        truth[f"true_lp_{endpoint}"] = true_log_hazard(frame, endpoint, spec)
        for modality in MODALITIES:
            truth[f"true_lp_{endpoint}_{modality}"] = true_log_hazard(
                frame, endpoint, spec, modality
            )
    if ki67_per_10_points:
        bands = spec.covariates["ki67_percent"]["uniform_within_grade"]
        extra = ki67_within_grade_log_hazard(frame, bands, ki67_per_10_points)
        truth = {name: values + extra for name, values in truth.items()}
    return truth


def _add_outcomes(frame: pd.DataFrame, progression, death, censor) -> None:
    """The observed outcome columns, from the latent progression and death times and censoring."""
    os_months = np.minimum(death, censor)
    hpfs_months = np.minimum(progression, os_months)
    event_type = np.select(
        [progression <= os_months, death <= censor], ["progression", "death"], "censored"
    )
    frame["hpfs_months"] = np.maximum(np.round(hpfs_months, 3), _MIN_TIME_MONTHS)
    frame["hpfs_event"] = (event_type != "censored").astype(int)
    frame["hpfs_event_type"] = event_type.astype(object)
    frame["os_months"] = np.maximum(np.round(os_months, 3), _MIN_TIME_MONTHS)
    frame["os_event"] = (death <= censor).astype(int)


def true_values_at(
    truth: dict[str, np.ndarray] | pd.DataFrame, spec: CohortSpec, months=TRUTH_MONTHS
) -> dict[str, np.ndarray]:
    """Each patient's true survival and cumulative incidence under every modality at `months`.

    Parameters
    ----------
    truth : DataFrame or dict of ndarray, shape = (n_samples,) each
        Holding `true_lp_{hpfs,os}_{modality}` for every modality (a simulated cohort does).

    Returns
    -------
    dict of ndarray, shape = (n_samples,) each
        `true_surv_hpfs_{modality}_{month}` (composite HPFS), `true_surv_os_{modality}_{month}`
        and `true_cif_progression_{modality}_{month}`, months as whole numbers where they are.
    """
    values = {}
    labels = [f"{m:g}" for m in months]
    for modality in MODALITIES:
        progression = np.asarray(truth[f"true_lp_hpfs_{modality}"], dtype=float)
        death = np.asarray(truth[f"true_lp_os_{modality}"], dtype=float)
        curves = {
            "surv_hpfs": true_hpfs_survival(progression, death, months, spec),
            "surv_os": true_survival(death, months, "os", spec),
            "cif_progression": true_cif_progression(progression, death, months, spec),
        }
        for quantity, table in curves.items():
            for column, label in enumerate(labels):
                values[f"true_{quantity}_{modality}_{label}"] = table[:, column]
    return values


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
