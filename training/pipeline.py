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

import pandas as pd
from joblib import Parallel, delayed

from model.bundle import ModelBundle
from model.schema import ENDPOINTS
from store import registry, training_store
from training import evaluate
from training.cohorts import (
    BUILT_IN_COHORT,
    COHORT_LABELS,
    DEFAULT_SYNTHETIC_SIZE,
    HOW_TO_DECLARE,
    builtin_default_spec,
    canonical_order,
    check_label,
    declared_label,
    is_built_in,
    resolve_cohort,
    split_holdout,
)
from training.cross_validation import (
    FOLD_FIGURES,
    REFERENCES,
    SUMMARY_FIGURES,
    SUMMARY_HORIZON,
    choose_primary,
    cross_validate,
    headline,
    leave_one_centre_out,
    summarise,
)
from training.fit import fit_bundle
from training.held_out import HELD_OUT_BOOTSTRAP, evaluate_on_rows, predict_rows
from training.holdout import DEFAULT_HOLDOUT_FRACTION, HOLDOUT_RULE, patient_hashes
from training.imputation import is_incomplete
from training.imputed_fit import ImputedCohort, fit_imputed_bundle, imputation_note, imputed_cohort
from training.parallel import joblib_backend
from training.synthetic import CohortSpec
from training.validate import validate_cohort

__all__ = [
    "BUILT_IN_COHORT",
    "COHORT_LABELS",
    "DEFAULT_SYNTHETIC_SIZE",
    "FOLD_FIGURES",
    "HELD_OUT_BOOTSTRAP",
    "HOW_TO_DECLARE",
    "REFERENCES",
    "SUMMARY_FIGURES",
    "SUMMARY_HORIZON",
    "TrainingRun",
    "builtin_default_spec",
    "canonical_order",
    "check_label",
    "choose_primary",
    "cross_validate",
    "declared_label",
    "evaluate_on_rows",
    "headline",
    "is_built_in",
    "leave_one_centre_out",
    "predict_rows",
    "resolve_cohort",
    "split_holdout",
    "summarise",
    "train",
]

logger = logging.getLogger(__name__)


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
    held-out rows are stored with the model for the promotion gate. `cohort_label` is never
    inferred: a missing label, or "real" for a cohort with `true_*` columns, stops the run
    before anything is fitted (:func:`check_label`). The first model in an empty store becomes
    production; later ones are candidates for `netprog promote`. With `dask_scheduler`, the
    folds, centres and bootstrap fits run on that Dask cluster, with the same results.
    `evidence` is the specification of the built-in default's cohort: the fit then carries the
    published estimates' uncertainty (:func:`training.fit.fit_bundle`).
    """
    steps = _Steps(progress)
    label, cohort, development, held_out, imputed = _prepare(
        steps, cohort, cohort_label, holdout_fraction, seed
    )
    with joblib_backend(dask_scheduler, n_jobs) as jobs:
        fitting = {"seed": seed, "n_jobs": jobs, "estimator_params": estimator_params}
        cv, primary, loco = _validate(development, steps, n_splits, fitting)
        with steps("fit", "fitting ensembles"):
            bundle = _fit(imputed, development, n_bootstrap=n_bootstrap, cohort_label=label,
                          primary=primary, primary_ensembles_only=True, evidence=evidence,
                          **fitting)  # fmt: skip
    with steps("held_out", "evaluating on the held-out patients"):
        held_out_metrics = evaluate_on_rows(bundle, held_out, seed=seed, n_jobs=n_jobs)
    holdout = _holdout_record(development, held_out, holdout_fraction)
    _record_metadata(
        bundle, cv, primary, holdout, held_out_metrics,
        n_cohort=len(cohort), source=source or "in-memory cohort", cv_folds=n_splits,
        estimator_params=estimator_params or {},
    )  # fmt: skip
    with steps("analyse", "analysing the cohort"):
        results = _results(cohort, label, cv, primary, holdout, held_out_metrics, loco, n_jobs)
    _add_missing_data(results, imputed)
    with steps("register", "writing the report and registering"):
        tag = registry.save_bundle(
            bundle, _extras_writer(bundle, results, cohort, development, held_out)
        )
    report_html, report_json = _publish(tag, report_dir)
    promoted = promote_if_none and registry.production_tag() is None
    if promoted:
        registry.set_production(tag, reason="first model in the store")
    return TrainingRun(tag, bundle, results, report_html, report_json, promoted, steps.timings)


def _prepare(steps: _Steps, cohort, cohort_label, holdout_fraction, seed) -> tuple:
    """Validate, set the held-out rows aside and, where predictors are missing, impute.

    Returns the label, the cohort, the development and held-out rows (completed: the first
    imputation, the held-out rows imputed on their own) and the :class:`ImputedCohort` or None.
    """
    with steps("validate", "setting the held-out patients aside"):
        label = check_label(cohort, cohort_label)
        cohort = canonical_order(validate_cohort(cohort))
        development, held_out = split_holdout(cohort, holdout_fraction)
    if not is_incomplete(cohort):
        return label, cohort, development, held_out, None
    with steps("impute", "imputing missing values (multiple imputation)"):
        imputed = imputed_cohort(cohort, development, held_out, seed)
    return label, imputed.cohort, imputed.development[0], imputed.held_out, imputed


def _add_missing_data(results: dict, imputed: ImputedCohort | None) -> None:
    """The report's missing-data section and note, where values were imputed."""
    if imputed is not None:
        results["missing_data"] = imputed.record
        results["notes"].append(imputation_note(imputed.record))


def _fit(imputed: ImputedCohort | None, development: pd.DataFrame, **fitting) -> ModelBundle:
    """The registered fit: on the cohort itself, or pooled over its imputations."""
    if imputed is None:
        return fit_bundle(development, **fitting)
    bundle = fit_imputed_bundle(imputed.development, imputed.missing, **fitting)
    bundle.metadata.update(data_fingerprint=imputed.fingerprint, missing_data=imputed.record)
    return bundle


def _validate(development, steps: _Steps, n_splits: int, fitting: dict) -> tuple:
    """Cross-validation with the primary family it chooses, then centre by centre."""
    with steps("cross_validate", "cross-validating"):
        cv = cross_validate(development, n_splits=n_splits, **fitting)
        primary = choose_primary(cv)
    with steps("leave_one_centre_out", "validating centre by centre"):
        loco = leave_one_centre_out(development, **fitting)
    return cv, primary, loco


def _holdout_record(development: pd.DataFrame, held_out: pd.DataFrame, fraction: float) -> dict:
    return {
        "rule": HOLDOUT_RULE,
        "fraction": fraction,
        "n_patients": len(held_out),
        "n_development": len(development),
        "n_events": {e: int(held_out[f"{e}_event"].sum()) for e in ENDPOINTS},
    }


def _record_metadata(bundle, cv, primary, holdout, held_out_metrics, **run) -> None:
    """The validation figures the model store keeps in the bundle's metadata, then `run`."""
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
        **run,
    )


def _results(cohort, label, cv, primary, holdout, held_out_metrics, loco, n_jobs) -> dict:
    """Everything the report shows: cross-validation, cohort analyses, held-out rows, centres."""
    analyses = Parallel(n_jobs=n_jobs)(
        delayed(evaluate.cohort_analyses)(cohort, e) for e in ENDPOINTS
    )
    return {
        "cohort_label": label,
        "n_patients": len(cohort),
        "notes": _notes(primary, holdout, loco),
        "endpoints": {
            endpoint: {"models": cv[endpoint], **endpoint_analyses}
            for endpoint, endpoint_analyses in zip(ENDPOINTS, analyses, strict=True)
        },
        "held_out": {"holdout": holdout, "endpoints": held_out_metrics},
        "leave_one_centre_out": loco,
    }


def _publish(tag: str, report_dir: str | Path | None) -> tuple[Path, Path]:
    """The stored report's paths, after copying it and the model card to `report_dir`."""
    report_html, report_json = registry.report_paths(tag)
    if report_dir is not None:
        folder = Path(report_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for path in (report_html, report_json, *registry.model_card_paths(tag)):
            shutil.copyfile(path, folder / path.name)
    return report_html, report_json


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
                registry.DEVELOPMENT_ROWS_FILE: lambda path: development.to_parquet(
                    path, index=False
                ),
            },
        )

    return write_extras
