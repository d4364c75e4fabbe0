"""The training run: validate, cross-validate, fit the bundle, evaluate, report and register."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.model_selection import StratifiedKFold

from model.bundle import MONTH_GRID, CurveModel, ModelBundle
from model.estimators import ESTIMATORS
from model.schema import ENDPOINTS, TRUTH_PREFIX, encode
from training import evaluate, registry
from training.fit import fit_bundle, make_estimator, survival_target
from training.synthetic import simulate_cohort
from training.validate import load_cohort, validate_cohort

logger = logging.getLogger(__name__)

DEFAULT_SYNTHETIC_SIZE = 2000
REFERENCES = ("published", "oracle", "kaplan_meier")
SUMMARY_HORIZON = "24"


@dataclass
class TrainingRun:
    """What one training run produced."""

    tag: str
    bundle: ModelBundle
    results: dict
    report_html: Path
    report_json: Path
    promoted: bool


def resolve_cohort(data: str, seed: int = 0) -> pd.DataFrame:
    """Load the cohort named by `--data`: a file path, or ``synthetic[:N]`` for the default."""
    if data == "synthetic" or data.startswith("synthetic:"):
        size = int(data.partition(":")[2] or DEFAULT_SYNTHETIC_SIZE)
        return validate_cohort(simulate_cohort(size, seed))
    return load_cohort(data)


def _fold_predictions(name, cohort, train, test, endpoint, seed):
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
    curve = CurveModel.from_estimator(make_estimator(name, seed).fit(design, y_train), design)
    test_design = encode(test_rows).to_numpy()
    return curve.log_hazard(test_design), curve.survival(test_design)


def cross_validate(
    cohort: pd.DataFrame, *, seed: int = 0, n_splits: int = 5, n_jobs: int = 1
) -> dict[str, dict[str, dict]]:
    """Out-of-fold metrics per endpoint and model, with the references beside them.

    Every patient is predicted once, by models fitted without them; the metrics are computed
    on the pooled out-of-fold predictions, and `fold_harrell_c` keeps the spread over folds.
    The oracle (the generator's true risk) is included when the cohort has `true_*` columns.
    """
    names = [
        *ESTIMATORS,
        *(r for r in REFERENCES if r != "oracle" or f"{TRUTH_PREFIX}lp_os" in cohort),
    ]
    folds = list(
        StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(cohort, cohort["os_event"])
    )
    tasks = [(e, n, k) for e in ENDPOINTS for n in names for k in range(n_splits)]
    predictions = Parallel(n_jobs=n_jobs)(
        delayed(_fold_predictions)(n, cohort, *folds[k], e, seed) for e, n, k in tasks
    )
    by_task = dict(zip(tasks, predictions, strict=True))
    results: dict[str, dict[str, dict]] = {}
    for endpoint in ENDPOINTS:
        y_all = survival_target(cohort, endpoint)
        results[endpoint] = {}
        for name in names:
            risk = np.empty(len(cohort))
            survival = np.empty((len(cohort), len(MONTH_GRID)))
            fold_c = []
            for k, (_, test) in enumerate(folds):
                risk[test], survival[test] = by_task[(endpoint, name, k)]
                fold = evaluate.survival_metrics(
                    y_all, y_all[test], risk[test], survival[test], times=MONTH_GRID
                )
                fold_c.append(fold["harrell_c"])
            metrics = evaluate.survival_metrics(y_all, y_all, risk, survival, times=MONTH_GRID)
            metrics["fold_harrell_c"] = fold_c
            results[endpoint][name] = metrics
    return results


def choose_primary(cv: dict[str, dict[str, dict]]) -> dict[str, str]:
    """Per endpoint, the model family with the higher cross-validated Harrell C."""
    return {
        endpoint: max(ESTIMATORS, key=lambda name: np.mean(cv[endpoint][name]["fold_harrell_c"]))
        for endpoint in ENDPOINTS
    }


def summarise(cv: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """The headline figures per endpoint and model: C, IBS, 24-month calibration slope."""
    summary = {}
    for endpoint, models in cv.items():
        summary[endpoint] = {}
        for name, metrics in models.items():
            at_24 = metrics["horizons"].get(SUMMARY_HORIZON, {})
            summary[endpoint][name] = {
                "harrell_c": metrics["harrell_c"],
                "harrell_c_fold_sd": float(np.std(metrics["fold_harrell_c"])),
                "uno_c": metrics["uno_c"],
                "ibs": metrics["ibs"],
                "calibration_slope_24": at_24.get("calibration_slope"),
            }
    return evaluate.to_jsonable(summary)


def train(
    cohort: pd.DataFrame,
    *,
    seed: int = 0,
    n_bootstrap: int = 20,
    n_splits: int = 5,
    n_jobs: int = 1,
    cohort_label: str | None = None,
    report_dir: str | Path | None = None,
    promote_if_none: bool = True,
    progress: Callable[[str], None] = lambda step: None,
) -> TrainingRun:
    """Train, evaluate and register a bundle on a validated cohort.

    The cohort label is "synthetic" when the cohort carries the generator's `true_*` columns,
    else "real", unless given. The first model in an empty store becomes production; later
    ones are candidates for `netprog promote`.
    """
    cohort = validate_cohort(cohort)
    label = cohort_label or ("synthetic" if f"{TRUTH_PREFIX}lp_os" in cohort else "real")
    progress("cross-validating")
    cv = cross_validate(cohort, seed=seed, n_splits=n_splits, n_jobs=n_jobs)
    primary = choose_primary(cv)
    progress("fitting ensembles")
    bundle = fit_bundle(
        cohort,
        seed=seed,
        n_bootstrap=n_bootstrap,
        n_jobs=n_jobs,
        cohort_label=label,
        primary=primary,
    )
    bundle.metadata["metrics"] = summarise(cv)
    bundle.metadata["primary"] = primary
    progress("analysing the cohort")
    results = {
        "cohort_label": label,
        "n_patients": len(cohort),
        "notes": [
            f"Primary model: {primary['hpfs']} for HPFS, {primary['os']} for OS "
            "(higher cross-validated Harrell C)."
        ],
        "endpoints": {
            endpoint: {"models": cv[endpoint], **evaluate.cohort_analyses(cohort, endpoint)}
            for endpoint in ENDPOINTS
        },
    }
    progress("writing the report and registering")

    def write_report(tag: str, folder: Path) -> None:
        results["model_tag"] = tag
        evaluate.write_report(results, folder / "report.html", folder / "metrics.json")

    tag = registry.save_bundle(bundle, write_report)
    report_html, report_json = registry.report_paths(tag)
    if report_dir is not None:
        folder = Path(report_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for path in (report_html, report_json):
            shutil.copyfile(path, folder / path.name)
    promoted = promote_if_none and registry.production_tag() is None
    if promoted:
        registry.set_production(tag, reason="first model in the store")
    return TrainingRun(tag, bundle, results, report_html, report_json, promoted)
