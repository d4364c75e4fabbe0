"""Cross-validation of the model families, the choice of the primary one, centre by centre."""

from __future__ import annotations

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.model_selection import StratifiedKFold

from model.bundle import MONTH_GRID, CurveModel
from model.cox_inference import CoxCurves
from model.estimators import ESTIMATORS
from model.primary import one_se_choice
from model.schema import ENDPOINTS, TRUTH_PREFIX, encode
from training import evaluate
from training.exceptions import EvaluationInputError
from training.fit import component_targets, fit_component, make_estimator, survival_target

REFERENCES = ("published", "oracle", "kaplan_meier")
SUMMARY_HORIZON = "24"
SUMMARY_FIGURES = ("harrell_c", "uno_c", "ibs", "calibration_slope_24")
"""The cross-validated headline: each a mean over folds with its SD (:func:`summarise`)."""
FOLD_FIGURES = (*SUMMARY_FIGURES, "mean_auc")
"""What :func:`cross_validate` computes on each fold's own test rows."""


def _fold_predictions(name, cohort, train, test, endpoint, seed, params=None):
    """Held-out risk and survival on MONTH_GRID for one model (or reference) and one fold."""
    train_rows, test_rows = cohort.iloc[train], cohort.iloc[test]
    y_train = survival_target(train_rows, endpoint)
    if name == "published":
        model = evaluate.PublishedCox(endpoint=endpoint).fit(train_rows, y_train)
        return model.predict(test_rows), model.survival_at(test_rows, MONTH_GRID)
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
    return _figures(cohort, folds, names, dict(zip(tasks, predictions, strict=True)), n_jobs)


def _figures(cohort, folds, names, by_task, n_jobs) -> dict[str, dict[str, dict]]:
    """Each fold's figures and the pooled metrics of the out-of-fold predictions `by_task`."""
    n_splits = len(folds)
    tasks = list(by_task)
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
        fold_c = {name: _fold_c(cv[endpoint][name]) for name in ("coxnet", "xgboost")}
        chosen[endpoint] = one_se_choice(fold_c, ["coxnet"])
    return chosen


def _fold_c(figures: dict) -> np.ndarray:
    """Harrell C per fold; the mean alone (one 'fold') where the folds were not kept."""
    folds = figures.get("folds") or [{"harrell_c": figures["harrell_c"]}]
    return np.array([fold["harrell_c"] for fold in folds], dtype=float)


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
