"""Model updating: which of five updating methods one centre's patients justify, per endpoint.

The methods, from least to most re-estimated (Steyerberg, *Clinical Prediction Models*, 2nd ed.
2019, ch. 20; van Houwelingen, Stat Med 2000;19:3401-15 for survival models):

0. no change;
1. the baseline hazard re-estimated on the local patients with the linear predictor as an
   offset (Breslow);
2. as 1, plus a calibration slope on the linear predictor;
3. as 2, plus revision of the terms whose local evidence disagrees, each revised coefficient
   shrunk toward its original (recalibrated) value rather than toward zero;
4. a full refit on the local patients.

How the method is chosen (:func:`choose_method`), with every test at ``ALPHA`` = 0.05:

- Recalibration, by closed testing in the manner of Vergouwe et al. (Stat Med 2017;36:4529-39)
  on the full likelihood of the observed events given the model's expected cumulative hazards
  (Poisson with the log expected events as offset, Crowson, Atkinson and Therneau, Stat Methods
  Med Res 2016;25:1692-706), along the calibration hierarchy (Van Calster et al., J Clin
  Epidemiol 2016;74:167-76): the baseline level against the original (1 df); only if that
  rejects, the slope against the level alone (1 df). The chance of any recalibration when the
  model is right is then at most ``ALPHA``. Vergouwe's own first step, the recalibrated model
  against the original on 2 df at once, had too little power for a baseline hazard x 1.5 with
  100 patients (OS: 80 % of 40 replicate centres against 85 % for the level alone) and, with a
  reference model whose slope on new patients is not exactly 1, rejected 10-15 % of centres
  equal to the reference (bench/updating.py; docs/retraining.md).
- Revision: per Cox component (HPFS: progression and death before it, each on its own
  cause-specific outcome, where proportional hazards hold), the global score test of every
  design column the local patients can test, given the (recalibrated) linear predictor as an
  offset; only if it rejects, each column's own score test, Bonferroni over the columns; the
  columns that reject are revised. The components share ``ALPHA``, so a centre whose effects
  agree triggers a revision in at most ``ALPHA`` of cases. The revised terms' penalty is
  chosen by cross-validated partial likelihood (Verweij and van Houwelingen, Stat Med
  1993;12:2305-14).
- Full refit, only when revision was chosen and the unrestricted refit beats the revised model
  by a likelihood-ratio test (Vergouwe's last step).

The boosted model is a margin, not coefficients: it takes methods 0-2 only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from model.bundle import MONTH_GRID
from model.cox_inference import cox_log_likelihood, fit_cox_coefficients

__all__ = [
    "ALPHA",
    "Component",
    "baseline_shape_test",
    "METHODS",
    "MIN_TERM_PATIENTS",
    "Decision",
    "choose_method",
    "expected_events",
    "recalibration_test",
    "revision_screen",
    "revision_fit",
]

ALPHA = 0.05
METHODS = {
    0: "no change",
    1: "baseline hazard re-estimated (linear predictor as offset)",
    2: "baseline hazard and calibration slope re-estimated",
    3: "recalibrated, with the disagreeing terms revised (shrunk toward the original)",
    4: "full refit on the local patients",
}
MIN_TERM_PATIENTS = 20
"""A design column is testable for revision only when at least this many local patients
differ from its most common value: fewer make the score test's normal approximation poor. At
10, 9 % of 100-patient centres equal to the reference had a term revised (HPFS and OS alike);
at 20, 4 % and 6 %, with the reversed SIRT-in-G2 effect still revised in every 300-patient
centre (bench/updating.py cells, 100 and 40 replicates)."""
MIN_COMPONENT_EVENTS_FOR_REFIT = 10
PENALTIES = (0.25, 1.0, 4.0, 16.0, 64.0, 256.0)
"""Candidate ridge penalties on the revised terms' departures from their original values."""
_REFIT_RIDGE = 0.01
"""The relaxed fits' ridge (:data:`model.estimators.RELAXED_RIDGE`): finite under separation."""


@dataclass
class Decision:
    """The method chosen for one model family of one endpoint, and the tests behind it."""

    method: int
    tests: list[dict] = field(default_factory=list)
    revised: tuple[str, ...] = ()
    baseline: str = "proportional"
    """How methods 1-3 re-estimate the baseline hazard: "proportional" (the original's shape,
    its level from the local events) or "breslow" (the local Breslow estimate), chosen by
    :func:`baseline_shape_test`."""

    @property
    def description(self) -> str:
        return METHODS[self.method]

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "description": self.description,
            "revised_terms": list(self.revised),
            "baseline": self.baseline if self.method in (1, 2, 3) else None,
            "tests": self.tests,
        }


def expected_events(survival: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Each patient's expected number of events by their own time, ``-log S(t_i | x_i)``.

    Parameters
    ----------
    survival : ndarray, shape = (n_samples, len(MONTH_GRID))
        The model's survival curves on :data:`model.bundle.MONTH_GRID`.
    months : ndarray, shape = (n_samples,)
        Each patient's follow-up (event or censoring); clipped to the grid's last month.
    """
    months = np.clip(np.asarray(months, dtype=float), MONTH_GRID[0], MONTH_GRID[-1])
    cumulative = -np.log(np.clip(survival, 1e-300, 1.0))
    index = np.clip(np.searchsorted(MONTH_GRID, months, side="right") - 1, 0, len(MONTH_GRID) - 2)
    weight = (months - MONTH_GRID[index]) / (MONTH_GRID[index + 1] - MONTH_GRID[index])
    rows = np.arange(len(months))
    return (1 - weight) * cumulative[rows, index] + weight * cumulative[rows, index + 1]


def _poisson_log_likelihood(events, expected, log_hazard, level, slope_change):
    rate = expected * np.exp(level + slope_change * log_hazard)
    return float(events @ np.log(np.maximum(rate, 1e-300)) - rate.sum())


def _fit_level_and_slope(events, expected, log_hazard):
    """Poisson MLE of (level, slope - 1) with offset log(expected), by Newton-Raphson."""
    design = np.column_stack([np.ones_like(log_hazard), log_hazard])
    theta = np.array([np.log(events.sum() / expected.sum()), 0.0])
    for _ in range(50):
        rate = expected * np.exp(design @ theta)
        gradient = design.T @ (events - rate)
        information = design.T @ (design * rate[:, None])
        step = np.linalg.lstsq(information, gradient, rcond=None)[0]
        theta = theta + step
        if np.abs(step).max() < 1e-10:
            break
    return theta


def _test(name: str, statistic: float, df: int, rejects_to: str) -> dict:
    p_value = float(stats.chi2.sf(max(statistic, 0.0), df))
    return {
        "test": name,
        "statistic": round(float(statistic), 4),
        "df": df,
        "p_value": p_value,
        "rejected": p_value < ALPHA,
        "if_rejected": rejects_to,
    }


def recalibration_test(events, expected, log_hazard) -> tuple[int, list[dict], float]:
    """Fixed-sequence test between no change (0), new baseline (1) and baseline with slope (2).

    The level (observed over expected events) is tested first, 1 df; the slope only if the
    level rejected, 1 df. A fixed sequence is a closed testing procedure (each hypothesis is
    tested only once those before it are rejected), so the chance of any recalibration of a
    model that is right stays at most :data:`ALPHA`.

    Parameters
    ----------
    events : ndarray of bool, shape = (n_samples,)
    expected : ndarray, shape = (n_samples,)
        :func:`expected_events` of the model as it stands.
    log_hazard : ndarray, shape = (n_samples,)
        The model's log relative hazard (linear predictor or boosted margin).

    Returns
    -------
    method : int
        0, 1 or 2.
    tests : list of dict
        Each test's statistic, degrees of freedom and p-value.
    observed_over_expected : float
    """
    events = np.asarray(events, dtype=float)
    expected = np.maximum(np.asarray(expected, dtype=float), 1e-12)
    centred = np.asarray(log_hazard, dtype=float) - np.mean(log_hazard)
    ratio = float(events.sum() / expected.sum())
    original = _poisson_log_likelihood(events, expected, centred, 0.0, 0.0)
    level_only = _poisson_log_likelihood(events, expected, centred, np.log(ratio), 0.0)
    level, change = _fit_level_and_slope(events, expected, centred)
    both = _poisson_log_likelihood(events, expected, centred, level, change)
    tests = [_test("baseline level vs original", 2 * (level_only - original), 1, "rebaseline")]
    if not tests[0]["rejected"]:
        return 0, tests, ratio
    tests.append(_test("level and slope vs level", 2 * (both - level_only), 1, "slope"))
    return (2 if tests[1]["rejected"] else 1), tests, ratio


def baseline_shape_test(events, months, expected, expected_early, split: float) -> dict:
    """Whether the local baseline hazard differs in shape, not only in level, from the original.

    Poisson likelihood ratio (1 df) of one level before `split` and another after it against a
    single level: a local follow-up schedule or case definition can change the shape. When
    it does not reject, the baseline keeps the original's shape with the local level (one
    parameter, every local event informing it), which on 100-patient centres had a median ICI
    at 24 months 25-30 % below the local Breslow estimate's (bench/updating.py, first look).
    """
    events = np.asarray(events, dtype=bool)
    early = events & (np.asarray(months, dtype=float) <= split)
    observed = np.array([early.sum(), (events & ~early).sum()], dtype=float)
    predicted = np.array(
        [np.sum(expected_early), np.sum(np.asarray(expected) - np.asarray(expected_early))]
    )
    predicted = np.maximum(predicted, 1e-12)
    pooled = observed.sum() / predicted.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(observed > 0, observed * np.log(observed / (predicted * pooled)), 0.0)
    statistic = 2.0 * float(terms.sum() - (observed.sum() - pooled * predicted.sum()))
    test = _test("baseline shape: two periods vs one level", statistic, 1, "local Breslow")
    test["split_month"] = round(float(split), 2)
    return test


def testable_columns(design: np.ndarray) -> np.ndarray:
    """Columns with at least :data:`MIN_TERM_PATIENTS` patients off the most common value."""
    design = np.asarray(design, dtype=float)
    keep = np.zeros(design.shape[1], dtype=bool)
    for j in range(design.shape[1]):
        _, counts = np.unique(design[:, j], return_counts=True)
        keep[j] = len(design) - counts.max() >= MIN_TERM_PATIENTS
    return keep


def revision_screen(
    design, event, months, offset, names, level: float = ALPHA
) -> tuple[np.ndarray, list[dict]]:
    """Which columns' local effects depart from those in `offset`: a closed test.

    First the global score test of all testable columns together (df = their number) at
    :data:`ALPHA`, the revised model against the recalibrated one as in Vergouwe et al.; only if
    it rejects, each column's own score test, Bonferroni over the columns (both at `level`,
    :data:`ALPHA` shared among the components of an endpoint). Testing single
    columns alone, at Bonferroni's level, revised 2 of 10 centres equal to the reference
    (bench/updating.py, first look): small, unbalanced columns make single score tests
    liberal, and the global test keeps the whole step at :data:`ALPHA`.

    Returns
    -------
    disagrees : ndarray of bool, shape = (n_features,)
        Columns whose local effect departs from the one in the offset.
    tests : list of dict
        The global test, then (if it rejected) the smallest single p-value's.
    """
    design = np.asarray(design, dtype=float)
    testable = testable_columns(design)
    disagrees = np.zeros(design.shape[1], dtype=bool)
    if not testable.any() or not np.asarray(event, dtype=bool).any():
        return disagrees, []
    columns = design[:, testable]
    _, score, information = cox_log_likelihood(
        columns, event, months, np.zeros(columns.shape[1]), offset
    )
    rank = int(np.linalg.matrix_rank(information))
    overall = _test(
        "score test of all terms given the recalibrated linear predictor",
        float(score @ np.linalg.pinv(information) @ score),
        max(rank, 1),
        "test each term",
    )
    overall["rejected"] = overall["p_value"] < level
    if not overall["rejected"]:
        return disagrees, [overall]
    variance = np.maximum(np.diag(information), 1e-12)
    p_values = stats.chi2.sf(score**2 / variance, 1)
    threshold = level / testable.sum()
    disagrees[np.flatnonzero(testable)[p_values < threshold]] = True
    tested = [n for n, t in zip(names, testable, strict=True) if t]
    smallest = int(np.argmin(p_values))
    return disagrees, [
        overall,
        {
            "test": "score test of each term, Bonferroni",
            "terms_tested": len(tested),
            "p_value": float(p_values[smallest]),
            "term": tested[smallest],
            "threshold": threshold,
            "rejected": bool(p_values[smallest] < threshold),
            "if_rejected": "revise the terms below the threshold",
        },
    ]


def _cross_validated_penalty(basis, event, months, ridge_mask, seed, folds=5) -> float:
    """The penalty with the best cross-validated partial likelihood (Verweij-van Houwelingen)."""
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(len(months)) % folds
    best, best_score = PENALTIES[0], -np.inf
    for penalty in PENALTIES:
        score = 0.0
        for fold in range(folds):
            train = fold_of != fold
            theta = fit_cox_coefficients(
                basis[train], event[train], months[train], ridge=penalty * ridge_mask
            )
            whole = cox_log_likelihood(basis, event, months, theta, information=False)[0]
            inner = cox_log_likelihood(
                basis[train], event[train], months[train], theta, information=False
            )[0]
            score += whole - inner
        if score > best_score:
            best, best_score = penalty, score
    return best


def revision_fit(log_hazard, design, event, months, revised, *, seed=0):
    """Slope on `log_hazard` plus penalised departures of the `revised` columns.

    The linear predictor becomes ``b * log_hazard + design[:, revised] @ delta`` with
    ``0.5 * penalty * |delta|^2`` on the departures only, so each revised coefficient is
    shrunk toward its original value times the slope, not toward zero.

    Returns
    -------
    theta : ndarray, shape = (1 + n_revised,)
        The slope, then the departures.
    covariance : ndarray, shape = (1 + n_revised, 1 + n_revised)
        Inverse of the penalised information.
    penalty : float
    """
    event = np.asarray(event, dtype=bool)
    months = np.asarray(months, dtype=float)
    basis = np.column_stack([log_hazard, np.asarray(design, dtype=float)[:, revised]])
    ridge_mask = np.r_[0.0, np.ones(int(np.sum(revised)))]
    penalty = _cross_validated_penalty(basis, event, months, ridge_mask, seed)
    theta = fit_cox_coefficients(basis, event, months, ridge=penalty * ridge_mask)
    _, _, information = cox_log_likelihood(basis, event, months, theta)
    covariance = np.linalg.pinv(information + np.diag(penalty * ridge_mask))
    return theta, covariance, penalty


def _refit_statistic(log_hazard, design, event, months, revised) -> tuple[float, int]:
    """Likelihood ratio of the unrestricted refit against the (unpenalised) revised model."""
    testable = testable_columns(design) | revised
    full_design = np.asarray(design, dtype=float)[:, testable]
    full = fit_cox_coefficients(full_design, event, months, ridge=_REFIT_RIDGE)
    full_value = cox_log_likelihood(full_design, event, months, full, information=False)[0]
    basis = np.column_stack([log_hazard, np.asarray(design, dtype=float)[:, revised]])
    restricted = fit_cox_coefficients(basis, event, months, ridge=_REFIT_RIDGE)
    restricted_value = cox_log_likelihood(basis, event, months, restricted, information=False)[0]
    return 2 * (full_value - restricted_value), max(int(testable.sum()) - basis.shape[1], 1)


def _refit_test(components, design, disagrees) -> dict:
    """The refit against the revision, likelihood ratios summed over the components.

    A component with fewer than :data:`MIN_COMPONENT_EVENTS_FOR_REFIT` events cannot support a
    refit of every term and is left out of the statistic.
    """
    statistic, df = 0.0, 0
    for component in (c for c in components if c.event.sum() >= MIN_COMPONENT_EVENTS_FOR_REFIT):
        value, degrees = _refit_statistic(
            component.log_hazard, design, component.event, component.months, disagrees
        )
        statistic, df = statistic + value, df + degrees
    return _test("full refit vs revision", statistic, max(df, 1), "refit")


@dataclass
class Component:
    """One Cox component's local data for the revision step (its own linear predictor)."""

    log_hazard: np.ndarray
    event: np.ndarray
    months: np.ndarray


def _revision(method, components, design, names, tests) -> tuple[np.ndarray, list[dict]]:
    """Columns to revise: the union over components, each screened at ALPHA / n_components."""
    level = ALPHA / len(components)
    disagrees = np.zeros(design.shape[1], dtype=bool)
    for index, component in enumerate(components):
        offset = component.log_hazard
        if method == 2:
            column = component.log_hazard[:, None]
            offset = offset * fit_cox_coefficients(column, component.event, component.months)[0]
        flagged, screen = revision_screen(
            design, component.event, component.months, offset, names, level
        )
        tests += [{**t, "component": index} for t in screen]
        disagrees |= flagged
    return disagrees, tests


def choose_method(
    *,
    log_hazard: np.ndarray,
    expected: np.ndarray,
    event: np.ndarray,
    months: np.ndarray,
    design: np.ndarray | None,
    components: list[Component] | None = None,
    names: tuple[str, ...] = (),
    max_method: int = 4,
    expected_early: np.ndarray | None = None,
    split: float | None = None,
) -> Decision:
    """The updating method the local patients justify for one family of one endpoint.

    Parameters
    ----------
    log_hazard : ndarray, shape = (n_samples,)
        The model's log relative hazard of each local patient.
    expected : ndarray, shape = (n_samples,)
        Their expected events under the model as it stands (:func:`expected_events`).
    event, months : ndarray, shape = (n_samples,)
        The endpoint's outcome.
    design : ndarray, shape = (n_samples, n_features), optional
        The encoded patients; None (a boosted model) limits the choice to methods 0-2.
    components : list of Component, optional
        The Cox components the endpoint's survival is served from (HPFS: progression and death
        before it), each tested for revision on its own cause-specific outcome, where the
        proportional-hazards model holds; by default the endpoint itself.
    max_method : int
        The highest method the family supports.
    expected_early, split : optional
        Expected events up to ``min(t_i, split)``: with them, a re-estimated baseline keeps the
        original's shape unless :func:`baseline_shape_test` rejects it.
    """
    event = np.asarray(event, dtype=bool)
    months = np.asarray(months, dtype=float)
    method, tests, ratio = recalibration_test(event, expected, log_hazard)
    tests[0]["observed_over_expected"] = round(ratio, 4)
    baseline = "proportional"
    if method >= 1 and expected_early is not None and split is not None:
        tests.append(baseline_shape_test(event, months, expected, expected_early, split))
        baseline = "breslow" if tests[-1]["rejected"] else "proportional"
    if design is None or max_method < 3:
        return Decision(min(method, max_method), tests, baseline=baseline)
    components = components or [Component(np.asarray(log_hazard, dtype=float), event, months)]
    disagrees, tests = _revision(method, components, design, names, tests)
    if not disagrees.any():
        return Decision(method, tests, baseline=baseline)
    revised = tuple(n for n, d in zip(names, disagrees, strict=True) if d)
    refit = _refit_test(components, design, disagrees)
    tests.append(refit)
    if refit["rejected"] and max_method >= 4:
        return Decision(4, tests, revised)
    return Decision(3, tests, revised, baseline)
