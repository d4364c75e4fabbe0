"""The training run: validate, hold out, cross-validate, fit, evaluate, report and register."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.model_selection import StratifiedKFold

from model.bundle import MONTH_GRID, CurveModel, EndpointModel, ModelBundle
from model.cox_inference import CoxCurves
from model.estimators import ESTIMATORS
from model.schema import ENDPOINTS, TRUTH_PREFIX, encode
from training import evaluate, registry, training_store
from training.exceptions import CohortLabelError, CohortValidationError, EvaluationInputError
from training.fit import (
    component_targets,
    fit_bundle,
    fit_component,
    make_estimator,
    survival_target,
)
from training.holdout import DEFAULT_HOLDOUT_FRACTION, HOLDOUT_RULE, holdout_mask, patient_hashes
from training.parallel import joblib_backend
from training.sources import read_source
from training.synthetic import CohortSpec, simulate_cohort
from training.validate import Problem, validate_cohort

logger = logging.getLogger(__name__)

DEFAULT_SYNTHETIC_SIZE = 2000
BUILT_IN_COHORT = "synthetic"
"""`--data` naming the built-in synthetic cohort (``synthetic`` or ``synthetic:N``)."""
COHORT_LABELS = ("synthetic", "real")
HOW_TO_DECLARE = (
    "declare the cohort with --label real (a registry of real patients) or --label synthetic "
    "(simulated data)"
)
REFERENCES = ("published", "oracle", "kaplan_meier")
SUMMARY_HORIZON = "24"
HELD_OUT_BOOTSTRAP = 200
"""Resamples of the held-out rows for the percentile interval of their Harrell C."""
SUMMARY_FIGURES = ("harrell_c", "uno_c", "ibs", "calibration_slope_24")
"""The cross-validated headline: each a mean over folds with its SD (:func:`summarise`)."""
FOLD_FIGURES = (*SUMMARY_FIGURES, "mean_auc")
"""What :func:`cross_validate` computes on each fold's own test rows."""


@dataclass
class TrainingRun:
    """What one training run produced."""

    tag: str
    bundle: ModelBundle
    results: dict
    report_html: Path
    report_json: Path
    promoted: bool
    timings: dict[str, float] = field(default_factory=dict)


def canonical_order(cohort: pd.DataFrame) -> pd.DataFrame:
    """Rows by `patient_id`, index 0..n-1: the models depend on the rows, not on export order."""
    return cohort.sort_values("patient_id", kind="stable").reset_index(drop=True)


def is_built_in(data: str) -> bool:
    """Whether `--data` names the built-in synthetic cohort rather than a file or database."""
    return data == BUILT_IN_COHORT or data.startswith(f"{BUILT_IN_COHORT}:")


def declared_label(data: str, label: str | None) -> str:
    """The cohort label of a `netprog train` run, checked before anything is read.

    Only the built-in synthetic cohort is labelled without a declaration. Every other cohort,
    file or database alike, must be declared: a label inferred from the columns would call
    simulated data without `true_*` columns "real" and drop the not-for-clinical-use warning
    from every answer, so an undeclared cohort is refused instead.

    Raises
    ------
    CohortLabelError
        If `label` is missing for a file or database cohort, or is "real" for the built-in
        synthetic cohort.
    """
    if is_built_in(data):
        if label not in (None, "synthetic"):
            raise CohortLabelError(
                f"--data {data} is the built-in synthetic cohort, so --label must be synthetic "
                f"(or left out), but got --label {label}"
            )
        return "synthetic"
    if label not in COHORT_LABELS:
        raise CohortLabelError(
            f"--label must be given for every cohort but the built-in synthetic one, but "
            f"--data {data} came without it; {HOW_TO_DECLARE}. Nothing was read or fitted."
        )
    return label


def check_label(cohort: pd.DataFrame, label: str | None) -> str:
    """`label` if it is a cohort label the data does not contradict.

    Raises
    ------
    CohortLabelError
        If `label` is not "synthetic" or "real", or is "real" for a cohort that carries the
        synthetic generator's `true_*` columns.
    """
    if label not in COHORT_LABELS:
        raise CohortLabelError(
            f"`cohort_label` must be one of {COHORT_LABELS}, but got {label!r}; {HOW_TO_DECLARE}"
        )
    truth = sorted(str(c) for c in cohort.columns if str(c).startswith(TRUTH_PREFIX))
    if label == "real" and truth:
        raise CohortLabelError(
            f"the cohort is declared real but carries the synthetic generator's columns "
            f"({', '.join(truth[:3])}{', …' if len(truth) > 3 else ''}); simulated data must "
            "be declared with --label synthetic"
        )
    return label


def builtin_default_spec(data: str) -> CohortSpec | None:
    """The specification the built-in default (``--data synthetic[:N]``) is simulated from."""
    return CohortSpec.load() if is_built_in(data) else None


def resolve_cohort(data: str, seed: int = 0, query: str | None = None) -> pd.DataFrame:
    """Load and validate the cohort named by `--data`.

    `data` is a CSV or Parquet file, an SQLAlchemy URL with `query` (see
    :func:`training.sources.read_source`), or ``synthetic[:N]`` for the synthetic default.
    Every source passes the one cohort validation; the rows come back in canonical order.
    """
    if is_built_in(data):
        size = int(data.partition(":")[2] or DEFAULT_SYNTHETIC_SIZE)
        return canonical_order(validate_cohort(simulate_cohort(size, seed)))
    return canonical_order(validate_cohort(read_source(data, query)))


def _fold_predictions(name, cohort, train, test, endpoint, seed, params=None):
    """Held-out risk and survival on MONTH_GRID for one model (or reference) and one fold."""
    train_rows, test_rows = cohort.iloc[train], cohort.iloc[test]
    y_train = survival_target(train_rows, endpoint)
    if name == "published":
        model = evaluate.PublishedCox(endpoint=endpoint).fit(train_rows, y_train)
        functions = model.predict_survival_function(test_rows)
        return model.predict(test_rows), evaluate.survival_on_grid(functions, MONTH_GRID)
    if name == "oracle":
        return evaluate.oracle_risk(test_rows, endpoint), evaluate.oracle_survival(
            test_rows, endpoint, MONTH_GRID
        )
    if name == "kaplan_meier":
        return evaluate.null_model_prediction(y_train, MONTH_GRID, len(test))
    design = encode(train_rows)
    estimator = make_estimator(name, seed, params).fit(design, y_train)
    curve = CurveModel.from_estimator(estimator, design)
    test_design = encode(test_rows).to_numpy()
    targets = component_targets(train_rows)[endpoint]
    if curve.coef is not None and len(targets) > 1:
        # The Cox family serves HPFS from its cause-specific components: judge that curve.
        components = [fit_component(name, seed, params, design, t) for t in targets]
        return curve.log_hazard(test_design), CoxCurves(components).survival(test_design)
    return curve.log_hazard(test_design), curve.survival(test_design)


def cross_validate(
    cohort: pd.DataFrame,
    *,
    seed: int = 0,
    n_splits: int = 5,
    n_jobs: int = 1,
    estimator_params: dict[str, dict] | None = None,
) -> dict[str, dict[str, dict]]:
    """Cross-validated metrics per endpoint and model, with the references beside them.

    Each fold's model is judged on that fold's own test rows, and the headline figures
    (:data:`FOLD_FIGURES`) are the mean over folds with their SD: a concordance of risks
    pooled over different fold models compares scores from models that never ranked the same
    patients together, so it is not the C of any model. The pooled out-of-fold predictions are
    kept under ``"pooled"`` (every patient predicted once, by models fitted without them) for
    the calibration curves, the decision curve and the per-horizon table. The censoring
    distribution of the IPCW metrics is estimated on the whole cohort, as in
    :func:`leave_one_centre_out`. The oracle (the generator's true risk) is included when the
    cohort has `true_*` columns. `estimator_params` are extra constructor arguments per model
    family, as in `fit_bundle`.

    Returns
    -------
    dict
        ``{endpoint: {model: {"harrell_c", "harrell_c_sd", "uno_c", "uno_c_sd", "ibs",
        "ibs_sd", "mean_auc", "mean_auc_sd", "calibration_slope_24",
        "calibration_slope_24_sd", "n_folds", "folds": [fold, ...], "pooled":
        survival_metrics(...)}}}``; a fold holds ``n_test``, ``n_events``, the figures of
        :data:`FOLD_FIGURES` (NaN where not computable) and ``skipped``. Means and SDs (sample
        SD, ``ddof=1``) are over the folds where a figure could be computed.
    """
    params = estimator_params or {}
    names = [
        *ESTIMATORS,
        *(r for r in REFERENCES if r != "oracle" or f"{TRUTH_PREFIX}lp_os" in cohort),
    ]
    folds = list(
        StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(cohort, cohort["os_event"])
    )
    tasks = [(e, n, k) for e in ENDPOINTS for n in names for k in range(n_splits)]
    predictions = Parallel(n_jobs=n_jobs)(
        delayed(_fold_predictions)(n, cohort, *folds[k], e, seed, params.get(n))
        for e, n, k in tasks
    )
    by_task = dict(zip(tasks, predictions, strict=True))
    targets = {endpoint: survival_target(cohort, endpoint) for endpoint in ENDPOINTS}
    pairs = [(e, n) for e in ENDPOINTS for n in names]
    computed = Parallel(n_jobs=n_jobs)(
        [delayed(_fold_figures)(targets[e], folds[k][1], *by_task[(e, n, k)]) for e, n, k in tasks]
        + [
            delayed(_pooled_metrics)(
                targets[e], folds, [by_task[(e, n, k)] for k in range(n_splits)]
            )
            for e, n in pairs
        ]
    )
    per_fold = dict(zip(tasks, computed[: len(tasks)], strict=True))
    pooled = dict(zip(pairs, computed[len(tasks) :], strict=True))
    results: dict[str, dict[str, dict]] = {endpoint: {} for endpoint in ENDPOINTS}
    for endpoint, name in pairs:
        fold_rows = [per_fold[(endpoint, name, k)] for k in range(n_splits)]
        results[endpoint][name] = {
            **_over_folds(fold_rows),
            "n_folds": n_splits,
            "folds": fold_rows,
            "pooled": pooled[(endpoint, name)],
        }
    return results


def _fold_figures(y_all: np.ndarray, test: np.ndarray, risk, survival) -> dict:
    """:data:`FOLD_FIGURES` of one fold's model on that fold's own test rows."""
    y_test = y_all[test]
    row = {"n_test": len(test), "n_events": int(y_test["event"].sum())}
    try:
        metrics = evaluate.survival_metrics(y_all, y_test, risk, survival, times=MONTH_GRID)
    except EvaluationInputError as error:
        return {**row, **dict.fromkeys(FOLD_FIGURES, np.nan), "skipped": {"all": str(error)}}
    figures = {**headline(metrics), "mean_auc": metrics["mean_auc"]}
    return {
        **row,
        **{name: _finite_or_nan(figures[name]) for name in FOLD_FIGURES},
        "skipped": metrics["skipped"],
    }


def _finite_or_nan(value) -> float:
    return float(value) if value is not None and np.isfinite(value) else np.nan


def _over_folds(fold_rows: list[dict]) -> dict:
    """Mean and sample SD of each of :data:`FOLD_FIGURES` over the folds that have it."""
    summary = {}
    for name in FOLD_FIGURES:
        values = np.array([row[name] for row in fold_rows], dtype=float)
        values = values[np.isfinite(values)]
        summary[name] = float(values.mean()) if len(values) else np.nan
        summary[f"{name}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
    return summary


def _pooled_metrics(y_all: np.ndarray, folds: list, fold_predictions: list) -> dict:
    """:func:`~training.evaluate.survival_metrics` of the pooled out-of-fold predictions."""
    risk = np.empty(len(y_all))
    survival = np.empty((len(y_all), len(MONTH_GRID)))
    for (_, test), (fold_risk, fold_survival) in zip(folds, fold_predictions, strict=True):
        risk[test], survival[test] = fold_risk, fold_survival
    return evaluate.survival_metrics(y_all, y_all, risk, survival, times=MONTH_GRID)


def choose_primary(cv: dict[str, dict[str, dict]]) -> dict[str, str]:
    """Per endpoint, the Cox family unless boosting is better by more than one standard error.

    A one-standard-error rule (Breiman et al. 1984; Hastie et al., *Elements of Statistical
    Learning*, 7.10): the Cox family gives analytic intervals whose coverage is measured
    (``bench/coverage.py``) and explanations that are its own coefficients, so the boosted
    family is chosen only where its Harrell C, averaged over the same folds, beats the Cox
    family's by more than the standard error of their paired per-fold difference. Folds
    without a C for either model are left out of the difference; with fewer than two usable
    folds, the higher mean decides.
    """
    chosen = {}
    for endpoint in ENDPOINTS:
        cox, boosted = cv[endpoint]["coxnet"], cv[endpoint]["xgboost"]
        margin = boosted["harrell_c"] - cox["harrell_c"]
        chosen[endpoint] = "xgboost" if margin > _paired_standard_error(cox, boosted) else "coxnet"
    return chosen


def _paired_standard_error(first: dict, second: dict) -> float:
    """Standard error of the mean per-fold difference in Harrell C (0 without two folds)."""
    pairs = [
        (a["harrell_c"], b["harrell_c"])
        for a, b in zip(first.get("folds", []), second.get("folds", []), strict=True)
    ]
    differences = np.array([b - a for a, b in pairs], dtype=float)
    differences = differences[np.isfinite(differences)]
    if differences.size < 2:
        return 0.0
    return float(differences.std(ddof=1) / np.sqrt(differences.size))


def headline(metrics: dict) -> dict:
    """Harrell C, Uno C, IBS and the 24-month calibration slope (with its interval).

    For one evaluation set (a fold's test rows, the held-out rows, a centre); the
    cross-validated headline is :func:`summarise`'s mean over folds.
    """
    at_24 = metrics.get("horizons", {}).get(SUMMARY_HORIZON, {})
    return {
        "harrell_c": metrics["harrell_c"],
        "uno_c": metrics["uno_c"],
        "ibs": metrics["ibs"],
        "calibration_slope_24": at_24.get("calibration_slope"),
        "calibration_slope_24_lower": at_24.get("calibration_slope_lower"),
        "calibration_slope_24_upper": at_24.get("calibration_slope_upper"),
    }


def summarise(cv: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """The headline figures per endpoint and model: mean and SD over folds.

    Harrell C, Uno C, IBS and the 24-month calibration slope, each computed per fold on that
    fold's own test rows (:func:`cross_validate`), with ``n_folds``; ``pooled_harrell_c`` is
    the concordance of the pooled out-of-fold risks, kept for comparison with earlier runs.
    A figure no fold could compute (the calibration slope of Kaplan-Meier, which predicts
    the same survival for everyone), or an SD from fewer than two folds, is left out, as the
    model store drops null metadata.
    """
    summary = {}
    for endpoint, models in cv.items():
        summary[endpoint] = {}
        for name, metrics in models.items():
            figures = {}
            for key in (k for figure in SUMMARY_FIGURES for k in (figure, f"{figure}_sd")):
                if np.isfinite(metrics[key]):
                    figures[key] = metrics[key]
            summary[endpoint][name] = {
                **figures,
                "n_folds": metrics["n_folds"],
                "pooled_harrell_c": metrics["pooled"]["harrell_c"],
            }
    return evaluate.to_jsonable(summary)


def _loco_row(center, y_all, y_test, risk, survival) -> dict:
    row = {"center": center, "n": len(y_test), "events": int(y_test["event"].sum())}
    try:
        metrics = evaluate.survival_metrics(y_all, y_test, risk, survival, times=MONTH_GRID)
    except EvaluationInputError as error:
        return {
            **row,
            "harrell_c": None,
            "ibs": None,
            "calibration_slope_24": None,
            "note": str(error),
        }
    figures = headline(metrics)
    return {
        **row,
        "harrell_c": figures["harrell_c"],
        "ibs": figures["ibs"],
        "calibration_slope_24": figures["calibration_slope_24"],
        "note": "; ".join(
            f"{k}: {v}"
            for k, v in metrics["skipped"].items()
            if k in ("ibs", "calibration_slope_24")
        ),
    }


def leave_one_centre_out(
    cohort: pd.DataFrame,
    *,
    seed: int = 0,
    n_jobs: int = 1,
    estimator_params: dict[str, dict] | None = None,
) -> dict | None:
    """Internal-external validation: each centre predicted by models fitted on the others.

    Returns None unless the cohort has a `center` column with at least two centres. Rows
    without a centre are always in the training part. The censoring distribution of the
    IPCW metrics is estimated on the whole cohort, as in :func:`cross_validate`.

    Returns
    -------
    dict
        ``{"centers": [...], "endpoints": {endpoint: {model: [row, ...]}},
        "spread": {endpoint: {model: {"harrell_c_mean", "harrell_c_sd", "harrell_c_min",
        "harrell_c_max"}}}}``; a row holds center, n, events, harrell_c, ibs,
        calibration_slope_24 and a note where a figure could not be computed.
    """
    if "center" not in cohort:
        return None
    centre_of = cohort["center"].astype(object).where(cohort["center"].notna(), None)
    centres = sorted({str(c) for c in centre_of.dropna()})
    if len(centres) < 2:
        return None
    params = estimator_params or {}
    splits = {
        c: (np.flatnonzero(centre_of.astype(str) != c), np.flatnonzero(centre_of.astype(str) == c))
        for c in centres
    }
    tasks = [(e, n, c) for e in ENDPOINTS for n in ESTIMATORS for c in centres]
    predictions = Parallel(n_jobs=n_jobs)(
        delayed(_fold_predictions)(n, cohort, *splits[c], e, seed, params.get(n))
        for e, n, c in tasks
    )
    targets = {endpoint: survival_target(cohort, endpoint) for endpoint in ENDPOINTS}
    loco_rows = Parallel(n_jobs=n_jobs)(
        delayed(_loco_row)(c, targets[e], targets[e][splits[c][1]], *prediction)
        for (e, n, c), prediction in zip(tasks, predictions, strict=True)
    )
    by_task = dict(zip(tasks, loco_rows, strict=True))
    tables: dict[str, dict[str, list]] = {}
    spread: dict[str, dict[str, dict]] = {}
    for endpoint in ENDPOINTS:
        tables[endpoint], spread[endpoint] = {}, {}
        for name in ESTIMATORS:
            rows = [by_task[(endpoint, name, c)] for c in centres]
            tables[endpoint][name] = rows
            c_values = np.array([r["harrell_c"] for r in rows if r["harrell_c"] is not None])
            spread[endpoint][name] = {
                "harrell_c_mean": float(c_values.mean()) if len(c_values) else None,
                "harrell_c_sd": float(c_values.std()) if len(c_values) else None,
                "harrell_c_min": float(c_values.min()) if len(c_values) else None,
                "harrell_c_max": float(c_values.max()) if len(c_values) else None,
            }
    return evaluate.to_jsonable({"centers": centres, "endpoints": tables, "spread": spread})


def _harrell_c_interval(y: np.ndarray, risk: np.ndarray, seed: int) -> tuple[float, float]:
    """Percentile 95 % interval of Harrell C over bootstrap resamples of the rows."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(HELD_OUT_BOOTSTRAP):
        rows = rng.integers(0, len(y), len(y))
        if y["event"][rows].any():
            values.append(evaluate.harrell_c(y["event"][rows], y["months"][rows], risk[rows]))
    lower, upper = np.percentile(values, [2.5, 97.5])
    return float(lower), float(upper)


def predict_rows(model: EndpointModel, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """A fitted family's log relative hazard and served survival on MONTH_GRID for cohort rows."""
    design = encode(rows).to_numpy()
    return model.full.log_hazard(design), model.survival(design)


def _held_out_metrics(model: EndpointModel, rows: pd.DataFrame, y: np.ndarray, seed: int) -> dict:
    """:func:`evaluate_on_rows`'s figures for one model, or ``{"note": why}`` if it cannot be."""
    risk, survival = predict_rows(model, rows)
    try:
        metrics = evaluate.survival_metrics(y, y, risk, survival, times=MONTH_GRID)
    except EvaluationInputError as error:
        return {"note": str(error)}
    lower, upper = _harrell_c_interval(y, risk, seed)
    return {
        "n": len(rows),
        "events": int(y["event"].sum()),
        **headline(metrics),
        "harrell_c_lower": lower,
        "harrell_c_upper": upper,
        "skipped": metrics["skipped"],
    }


def evaluate_on_rows(
    bundle: ModelBundle, rows: pd.DataFrame, *, seed: int = 0, n_jobs: int = 1
) -> dict:
    """Every full-data model of `bundle` on cohort `rows` the bundle was not fitted on.

    Returns ``{endpoint: {model: metrics}}`` where metrics are :func:`headline` figures plus
    `n`, `events`, `harrell_c_lower`/`_upper` (bootstrap percentile interval) and
    `skipped`; ``{endpoint: {"note": reason}}`` when the rows cannot be evaluated.
    """
    targets = {endpoint: survival_target(rows, endpoint) for endpoint in ENDPOINTS}
    pairs = [(e, name) for e in ENDPOINTS for name in bundle.models[e]]
    figures = Parallel(n_jobs=n_jobs)(
        delayed(_held_out_metrics)(bundle.models[e][name], rows, targets[e], seed)
        for e, name in pairs
    )
    evaluation: dict[str, dict] = {endpoint: {} for endpoint in ENDPOINTS}
    for (endpoint, name), result in zip(pairs, figures, strict=True):
        if "note" in result:
            evaluation[endpoint] = {"note": result["note"]}
        elif "note" not in evaluation[endpoint]:
            evaluation[endpoint][name] = result
    return evaluate.to_jsonable(evaluation)


def split_holdout(cohort: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The development rows (fitting, tuning, CV) and the held-out test rows (`holdout`)."""
    held_out = holdout_mask(cohort["patient_id"], fraction)
    development = cohort[~held_out].reset_index(drop=True)
    if development.empty or not development["os_event"].any():
        raise CohortValidationError(
            [
                Problem(
                    None,
                    None,
                    f"no development rows with events remain after holding out "
                    f"{fraction:.0%}; lower --holdout-fraction",
                )
            ],
            len(cohort),
        )
    return development, cohort[held_out].reset_index(drop=True)


class _Steps:
    """Announces each step (progress callback and log) and records how long it took."""

    def __init__(self, progress: Callable[[str], None]):
        self.progress = progress
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str, description: str) -> Iterator[None]:
        self.progress(description)
        logger.info("%s", description)
        started = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - started, 3)


def _notes(primary: dict, holdout: dict, loco: dict | None) -> list[str]:
    notes = [
        f"Primary model: {primary['hpfs']} for HPFS, {primary['os']} for OS "
        "(the Cox family unless boosting's Harrell C, mean over the cross-validation folds, is "
        "higher by more than one standard error).",
        f"{holdout['n_patients']} patients ({holdout['fraction']:.0%}, rule: {HOLDOUT_RULE}) "
        "were held out before any fitting; the registered models were fitted on the other "
        f"{holdout['n_development']}. Cross-validation ran on those {holdout['n_development']}.",
    ]
    if loco is not None:
        notes.append(
            f"Internal-external validation: each of {len(loco['centers'])} centres was "
            "predicted by models fitted on the others (section at the end)."
        )
    return notes


def train(
    cohort: pd.DataFrame,
    *,
    seed: int = 0,
    n_bootstrap: int = 20,
    n_splits: int = 5,
    n_jobs: int = 1,
    cohort_label: str,
    report_dir: str | Path | None = None,
    promote_if_none: bool = True,
    progress: Callable[[str], None] = lambda step: None,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    estimator_params: dict[str, dict] | None = None,
    dask_scheduler: str | None = None,
    source: str | None = None,
    evidence: CohortSpec | None = None,
) -> TrainingRun:
    """Train, evaluate and register a bundle on a validated cohort.

    The held-out rows (:mod:`training.holdout`) are set aside first; cross-validation, the
    leave-one-centre-out validation and the registered fits use the other rows, and the
    held-out rows are stored with the model for the promotion gate. `cohort_label`
    ("synthetic" or "real") is never inferred: a missing label, or "real" for a cohort with
    the generator's `true_*` columns, stops the run before anything is fitted
    (:func:`check_label`). The first model in an empty store becomes production; later ones are
    candidates for `netprog promote`. With `dask_scheduler`, the folds, centres and bootstrap
    fits run on that Dask cluster, with the same results as locally. `evidence` is the
    specification of the built-in default's cohort (:func:`builtin_default_spec`): the fit
    then carries the published estimates' uncertainty (:func:`training.fit.fit_bundle`).
    """
    steps = _Steps(progress)
    with steps("validate", "setting the held-out patients aside"):
        label = check_label(cohort, cohort_label)
        cohort = canonical_order(validate_cohort(cohort))
        development, held_out = split_holdout(cohort, holdout_fraction)
    with joblib_backend(dask_scheduler, n_jobs) as jobs:
        with steps("cross_validate", "cross-validating"):
            cv = cross_validate(
                development,
                seed=seed,
                n_splits=n_splits,
                n_jobs=jobs,
                estimator_params=estimator_params,
            )
            primary = choose_primary(cv)
        with steps("leave_one_centre_out", "validating centre by centre"):
            loco = leave_one_centre_out(
                development, seed=seed, n_jobs=jobs, estimator_params=estimator_params
            )
        with steps("fit", "fitting ensembles"):
            bundle = fit_bundle(
                development,
                seed=seed,
                n_bootstrap=n_bootstrap,
                n_jobs=jobs,
                cohort_label=label,
                primary=primary,
                estimator_params=estimator_params,
                primary_ensembles_only=True,
                evidence=evidence,
            )
    with steps("held_out", "evaluating on the held-out patients"):
        held_out_metrics = (
            evaluate_on_rows(bundle, held_out, seed=seed, n_jobs=n_jobs) if len(held_out) else {}
        )
    holdout = {
        "rule": HOLDOUT_RULE,
        "fraction": holdout_fraction,
        "n_patients": len(held_out),
        "n_development": len(development),
        "n_events": {e: int(held_out[f"{e}_event"].sum()) for e in ENDPOINTS},
    }
    bundle.metadata.update(
        metrics=summarise(cv),
        primary=primary,
        holdout=holdout,
        held_out_metrics={
            e: {
                n: {k: v for k, v in m.items() if k != "skipped"}
                for n, m in models.items()
                if isinstance(m, dict)
            }
            for e, models in held_out_metrics.items()
        },
        n_cohort=len(cohort),
        source=source or "in-memory cohort",
        cv_folds=n_splits,
    )
    with steps("analyse", "analysing the cohort"):
        results = {
            "cohort_label": label,
            "n_patients": len(cohort),
            "notes": _notes(primary, holdout, loco),
            "endpoints": {
                endpoint: {"models": cv[endpoint], **analyses}
                for endpoint, analyses in zip(
                    ENDPOINTS,
                    Parallel(n_jobs=n_jobs)(
                        delayed(evaluate.cohort_analyses)(cohort, e) for e in ENDPOINTS
                    ),
                    strict=True,
                )
            },
            "held_out": {"holdout": holdout, "endpoints": held_out_metrics},
            "leave_one_centre_out": loco,
        }
    with steps("register", "writing the report and registering"):
        tag = registry.save_bundle(
            bundle, _extras_writer(bundle, results, cohort, development, held_out)
        )
    report_html, report_json = registry.report_paths(tag)
    if report_dir is not None:
        folder = Path(report_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for path in (report_html, report_json, *registry.model_card_paths(tag)):
            shutil.copyfile(path, folder / path.name)
    promoted = promote_if_none and registry.production_tag() is None
    if promoted:
        registry.set_production(tag, reason="first model in the store")
    return TrainingRun(tag, bundle, results, report_html, report_json, promoted, steps.timings)


def _extras_writer(bundle, results, cohort, development, held_out):
    """What `registry.save_bundle` writes beside the bundle once the tag is known."""
    from training import model_card, report_sections

    def write_extras(tag: str, folder: Path) -> None:
        results["model_tag"] = tag
        evaluate.write_report(results, folder / "report.html", folder / "metrics.json")
        report_sections.append_to_report(folder / "report.html", results)
        card = model_card.build_model_card(tag, bundle, results, cohort)
        model_card.write_model_card(card, folder)
        ids = {"patient_sha256": sorted(patient_hashes(development["patient_id"]))}
        training_store.write_patient_files(
            tag,
            folder,
            {
                registry.HOLDOUT_FILE: lambda path: held_out.to_parquet(path, index=False),
                registry.TRAINING_IDS_FILE: lambda path: path.write_text(
                    json.dumps(ids), encoding="utf-8"
                ),
            },
        )

    return write_extras
