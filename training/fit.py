"""Fitting: per endpoint and model family, the full fit, its bootstrap ensemble, the propensity."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.util import Surv

from model.background import risk_quantiles, summarise_background
from model.bundle import MONTH_GRID, CurveModel, EndpointModel, ModelBundle
from model.cox_inference import BreslowInference, fit_breslow_inference
from model.estimators import ESTIMATORS, RELAXED_RIDGE
from model.schema import (
    BURDEN_CATEGORIES,
    ENDPOINTS,
    FEATURE_NAMES,
    GRADES,
    MODALITIES,
    SCHEMA_VERSION,
    burden_categories,
    effective_grades,
    encode,
)
from model.similar import similarity_tables
from training.evidence import shrinkage_table
from training.imputation import missing_mask
from training.synthetic import CohortSpec
from training.unknowns_fit import fit_prediction_imputer
from training.validate import hpfs_event_types

PROPENSITY_FEATURES = tuple(n for n in FEATURE_NAMES if "_in_" not in n)
"""Design columns that describe the patient, not the modality: the propensity model's inputs."""

MIN_AT_RISK = 50
MIN_AT_RISK_SHARE = 0.05
"""A month is adequately followed while at least max(MIN_AT_RISK, MIN_AT_RISK_SHARE of the
cohort) training patients remain at risk; beyond it every value is flagged as extrapolated."""
AT_RISK_MONTHS = tuple(range(0, 121, 12))
DEFAULT_PRIMARY = {"hpfs": "coxnet", "os": "coxnet"}
FAMILY_DEFAULTS: dict[str, dict] = {"coxnet": {"relax": "auto"}}
"""Constructor arguments every training fit of a family gets: the Cox family is the elastic
net, relaxed (every term refitted unpenalised, the centre the delta-method intervals need)
wherever the cohort is large enough not to need shrinkage (`PenalizedCox`'s `relax`)."""


def survival_target(cohort: pd.DataFrame, endpoint: str) -> np.ndarray:
    """The sksurv structured target of `endpoint` (event, months)."""
    return Surv.from_arrays(
        cohort[f"{endpoint}_event"].astype(bool).to_numpy(),
        cohort[f"{endpoint}_months"].astype(float).to_numpy(),
        name_event="event",
        name_time="months",
    )


EVIDENCE_BASE_PATH = Path(__file__).resolve().parents[1] / "data" / "evidence_base.yaml"
LITERATURE_UNCERTAINTY = (
    "The intervals carry the uncertainty of the published estimates this synthetic default "
    "rests on: each coefficient's variance includes its published standard error (Table 1 of "
    "the 184-patient series, modality-within-grade effects shrunk across grades), and the "
    "baseline hazard is only as precise as the 155-patient series it is calibrated to - not "
    "the far greater precision of the synthetic sample. (Only the Cox model's intervals: a "
    "boosted primary's bootstrap intervals carry the synthetic sample's uncertainty alone.)"
)
SAMPLING_UNCERTAINTY = (
    "The intervals carry the sampling uncertainty of the training cohort (delta method for the "
    "Cox model, bootstrap for the boosted model)."
)
COMPONENT_ENDPOINTS = {"hpfs": ("hpfs", "os"), "os": ("os",)}
"""Whose published hazard ratios each component of an endpoint rests on: HPFS's progression
model on the HPFS ratios, its death-before-progression model (like OS) on the OS ratios."""


def load_evidence_base(path: str | Path = EVIDENCE_BASE_PATH) -> dict:
    """The source studies behind the synthetic default, with patients per grade and modality.

    Per grade and modality no paper reports counts: they are the grade's patients times the
    modality's overall share in Chen 2017, rounded (an assumption the file states).
    """
    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    by_grade = raw["patients_by_grade"]["value"]
    by_modality = raw["patients_by_modality"]["value"]
    total = sum(by_modality.values())
    return {
        "min_source_patients": int(raw["min_source_patients"]),
        "baseline_source_patients": int(raw["baseline_source_patients"]["value"]),
        "sources": raw["sources"],
        "patients_by_grade": dict(by_grade),
        "patients_by_modality": dict(by_modality),
        "patients_by_grade_and_modality": {
            grade: {m: int(round(n * by_modality[m] / total)) for m in MODALITIES}
            for grade, n in by_grade.items()
        },
        "assumption": raw["patients_by_grade_and_modality"]["assumption"],
    }


def literature_standard_errors(spec: CohortSpec, endpoint: str) -> np.ndarray:
    """Published standard error of each design column's log hazard ratio for `endpoint`.

    Derived from Table 1's p-values (`se_log` in data/cohort_spec.yaml); with shrunk
    modality effects, the modality-within-grade columns take their empirical-Bayes posterior
    standard errors. Columns with no published estimate (an assumed effect) get 0.

    Returns
    -------
    ndarray, shape = (len(FEATURE_NAMES),)
    """
    ratios = spec.raw["hazards"][endpoint]["hazard_ratios"]
    errors = pd.Series(
        {name: float(ratios[name].get("se_log", 0.0)) for name in FEATURE_NAMES}, dtype=float
    )
    if spec.effects == "shrunk":
        shrunk = shrinkage_table(ratios)["shrunk_se_log"]
        errors[shrunk.index] = shrunk
    return errors[list(FEATURE_NAMES)].to_numpy()


def with_literature_uncertainty(
    inference: BreslowInference, standard_errors: np.ndarray, n_patients: int, n_source: int
) -> BreslowInference:
    """A component whose variance is at least that of the published evidence.

    The coefficients' covariance gains the published variances (Table 1 reports no
    correlations, so they are added on the diagonal), and the baseline hazard's martingale
    variance is scaled from `n_patients` simulated patients to the `n_source` real ones the
    baseline was calibrated to.
    """
    return dataclasses.replace(
        inference,
        covariance=inference.covariance + np.diag(np.asarray(standard_errors) ** 2),
        hazard_variance=inference.hazard_variance * max(1.0, n_patients / n_source),
    )


def make_estimator(name: str, seed: int, params: dict | None = None):
    """A fresh estimator of family `name` with its random state set."""
    return ESTIMATORS[name](
        random_state=seed, **{**FAMILY_DEFAULTS.get(name, {}), **(params or {})}
    )


def component_targets(cohort: pd.DataFrame) -> dict[str, list[np.ndarray]]:
    """Per endpoint, the targets of the Cox components whose hazards add up to it.

    OS is one model. HPFS (progression or death, whichever first) is the sum of two
    cause-specific hazards on the HPFS time scale: hepatic progression, and death before
    progression (each censoring the other).
    """
    types = hpfs_event_types(cohort)
    months = cohort["hpfs_months"].astype(float).to_numpy()
    return {
        "hpfs": [
            Surv.from_arrays(
                types == "progression", months, name_event="event", name_time="months"
            ),
            Surv.from_arrays(types == "death", months, name_event="event", name_time="months"),
        ],
        "os": [survival_target(cohort, "os")],
    }


def fit_component(name, seed, params, design, target):
    """One tuned Cox component on all rows of `design`, reduced to its delta-method terms."""
    return component_inference(
        make_estimator(name, seed, params).fit(design, target), design, target
    )


def component_inference(estimator, design: pd.DataFrame, target: np.ndarray) -> BreslowInference:
    """The delta-method terms of a fitted `PenalizedCox` on the rows it was fitted on."""
    return fit_breslow_inference(
        design.to_numpy(),
        target["event"],
        target["months"],
        estimator.coef_,
        MONTH_GRID,
        ridge=RELAXED_RIDGE if estimator.relaxed_ else 0.0,
        selected=estimator.selected_,
    )


def _fit_curve_model(estimator, design: pd.DataFrame, target: np.ndarray, rows=None) -> CurveModel:
    if rows is not None:
        design, target = design.iloc[rows], target[rows]
    return CurveModel.from_estimator(clone(estimator).fit(design, target), design)


def fit_endpoint_models(
    design: pd.DataFrame,
    targets: dict[str, np.ndarray],
    *,
    seed: int,
    n_bootstrap: int,
    n_jobs: int = 1,
    estimator_params: dict[str, dict] | None = None,
    ensembles: dict[str, str] | None = None,
    components: dict[str, list[np.ndarray]] | None = None,
) -> dict[str, dict[str, EndpointModel]]:
    """Every model family for every endpoint: a tuned fit on all rows and what its intervals need.

    The linear (Cox) family gets, per endpoint, its relaxed Cox `components`
    (:func:`component_targets`), each tuned and refitted on all rows, with the terms of their
    delta-method variance; it needs no bootstrap members. The boosted family gets
    `n_bootstrap` members.

    The full-data fits choose their hyperparameters (PenalizedCox: alpha and l1_ratio by
    cross-validation; BoostedCox: the rounds by early stopping); the `n_bootstrap` members
    refit those choices on resampled rows (``tuned_params``) instead of tuning again, which
    made the ensembles about 20 times cheaper on large cohorts. The intervals therefore show
    the sampling variability of the chosen model, not of the tuning. With `ensembles`
    (``{endpoint: family}``) only that family of each endpoint gets members.

    Returns
    -------
    dict
        ``{endpoint: {family: EndpointModel}}``.
    """
    estimator_params = estimator_params or {}
    pairs = [(endpoint, name) for endpoint in targets for name in ESTIMATORS]
    fulls = Parallel(n_jobs=n_jobs)(
        delayed(_fit_curve_model)(
            make_estimator(name, seed, estimator_params.get(name)), design, targets[endpoint]
        )
        for endpoint, name in pairs
    )
    full_of: dict[tuple[str, str], CurveModel] = dict(zip(pairs, fulls, strict=True))
    linear = [pair for pair in pairs if full_of[pair].coef is not None]
    with_members = [
        pair
        for pair in pairs
        if pair not in linear and (ensembles is None or ensembles[pair[0]] == pair[1])
    ]
    fitting = {"design": design, "seed": seed, "estimator_params": estimator_params}
    components_of = _fit_components(
        full_of, linear, targets, components or {}, n_jobs=n_jobs, **fitting
    )
    ensemble_of = _fit_members(
        full_of, with_members, targets, n_bootstrap, n_jobs=n_jobs, **fitting
    )
    models: dict[str, dict[str, EndpointModel]] = {endpoint: {} for endpoint in targets}
    for (endpoint, name), full in full_of.items():
        training_log_hazard = risk_quantiles(full.log_hazard(design.to_numpy()))
        ensemble = ensemble_of.get((endpoint, name), [])
        models[endpoint][name] = EndpointModel(
            name, full, ensemble, training_log_hazard, components_of.get((endpoint, name), [])
        )
    return models


def _fit_components(
    full_of, linear, targets, components, *, design, seed, estimator_params, n_jobs
):
    """Each linear family's relaxed Cox components, ``{(endpoint, family): [component, ...]}``."""
    tasks = [(pair, target) for pair in linear for target in components.get(pair[0], [])]
    # A component on the endpoint's own target (OS) is the full fit itself: no second tuning.
    fitted = Parallel(n_jobs=n_jobs)(
        delayed(component_inference)(full_of[pair].estimator, design, target)
        if np.array_equal(target, targets[pair[0]])
        else delayed(fit_component)(pair[1], seed, estimator_params.get(pair[1]), design, target)
        for pair, target in tasks
    )
    components_of: dict[tuple, list] = {}
    for (pair, _), inference in zip(tasks, fitted, strict=True):
        components_of.setdefault(pair, []).append(inference)
    return components_of


def _fit_members(
    full_of, with_members, targets, n_bootstrap, *, design, seed, estimator_params, n_jobs
):
    """Bootstrap members of each family in `with_members`, refitting its tuned choices."""
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, len(design), len(design)) for _ in range(n_bootstrap)]
    member_estimators = {
        pair: make_estimator(
            pair[1],
            seed,
            {**estimator_params.get(pair[1], {}), **full_of[pair].estimator.tuned_params()},
        )
        for pair in with_members
    }
    members = Parallel(n_jobs=n_jobs)(
        delayed(_fit_curve_model)(member_estimators[pair], design, targets[pair[0]], rows)
        for pair in with_members
        for rows in resamples
    )
    return {
        pair: members[i * n_bootstrap : (i + 1) * n_bootstrap]
        for i, pair in enumerate(with_members)
    }


def fit_propensity(cohort: pd.DataFrame, seed: int = 0):
    """Multinomial logistic model of the modality received given the baseline factors."""
    design = encode(cohort)[list(PROPENSITY_FEATURES)]
    model = make_pipeline(
        StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    )
    return model.fit(design.to_numpy(), cohort["modality"].to_numpy())


def support_counts(cohort: pd.DataFrame) -> pd.DataFrame:
    """Training patients per (grade, burden category) and modality received."""
    table = pd.crosstab(
        [
            effective_grades(cohort).rename("who_grade"),
            pd.Series(
                burden_categories(cohort["tumor_burden_percent"]),
                index=cohort.index,
                name="burden_category",
            ),
        ],
        cohort["modality"],
    )
    full_index = pd.MultiIndex.from_product(
        [GRADES, BURDEN_CATEGORIES], names=["who_grade", "burden_category"]
    )
    return table.reindex(index=full_index, columns=list(MODALITIES), fill_value=0).astype(int)


def adequately_followed_month(time: np.ndarray) -> float:
    """Largest time at which at least max(50, 5 % of the cohort) patients remain at risk.

    0 when the cohort is smaller than that: no month is then adequately followed.
    """
    ordered = np.sort(np.asarray(time, dtype=float))[::-1]
    needed = max(MIN_AT_RISK, int(np.ceil(MIN_AT_RISK_SHARE * len(ordered))))
    return float(ordered[needed - 1]) if len(ordered) >= needed else 0.0


def numbers_at_risk(time: np.ndarray, months=AT_RISK_MONTHS) -> dict[int, int]:
    """Patients whose follow-up reaches each month (still at risk there), as under a KM plot."""
    ordered = np.sort(np.asarray(time, dtype=float))
    return {int(m): int(len(ordered) - np.searchsorted(ordered, m, side="left")) for m in months}


def data_fingerprint(cohort: pd.DataFrame) -> str:
    """SHA-256 of the canonical cohort table (rows by patient_id, columns by name, CSV)."""
    canonical = cohort.sort_values("patient_id").reindex(sorted(cohort.columns), axis=1)
    text = canonical.to_csv(index=False, float_format="%.10g", date_format="%Y-%m-%d")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _with_evidence(models: dict, evidence: CohortSpec, n_patients: int) -> dict:
    """Give the Cox components the published estimates' uncertainty; the bundle's metadata."""
    evidence_base = load_evidence_base()
    n_source = evidence_base["baseline_source_patients"]
    for endpoint, families in models.items():
        # The boosted family has no components: its bootstrap intervals are sampling-only.
        for family in (f for f in families.values() if f.components):
            family.components = [
                with_literature_uncertainty(
                    component, literature_standard_errors(evidence, source), n_patients, n_source
                )
                for component, source in zip(
                    family.components, COMPONENT_ENDPOINTS[endpoint], strict=True
                )
            ]
    return {
        "uncertainty": {"kind": "literature", "text": LITERATURE_UNCERTAINTY},
        "evidence_base": evidence_base,
        "modality_effects": evidence.effects,
    }


def fit_bundle(
    cohort: pd.DataFrame,
    *,
    seed: int = 0,
    n_bootstrap: int = 20,
    n_jobs: int = 1,
    cohort_label: str = "synthetic",
    primary: dict[str, str] | None = None,
    background_size: int = 100,
    estimator_params: dict[str, dict] | None = None,
    primary_ensembles_only: bool = False,
    evidence: CohortSpec | None = None,
) -> ModelBundle:
    """Fit everything a prognosis needs on a validated cohort.

    Parameters
    ----------
    cohort : DataFrame, shape = (n_patients, n_columns)
        A validated cohort (`training.validate.validate_cohort`); `true_*` columns are ignored.
    seed, n_bootstrap : int
        Seeds every estimator, resample and the SHAP background's k-means; ensemble size.
    primary : dict, optional
        The primary model family per endpoint (from cross-validation); coxnet by default.
    estimator_params : dict, optional
        Extra constructor arguments per family, e.g. ``{"xgboost": {"device": "cuda"}}``.
    primary_ensembles_only : bool
        Fit bootstrap members for each endpoint's primary family only (the pipeline's choice:
        the other family, the check model, keeps its full fit alone); else for every family.
    evidence : CohortSpec, optional
        The specification of the built-in default's cohort: the Cox components then carry the
        published estimates' uncertainty and the bundle the evidence base
        (:func:`_with_evidence`), so the default never claims more precision than the real
        patients behind it.
    """
    if cohort_label not in ("synthetic", "real"):
        raise ValueError(f"cohort_label must be 'synthetic' or 'real', but got {cohort_label!r}")
    design = encode(cohort)
    primary = dict(primary or DEFAULT_PRIMARY)
    targets = {endpoint: survival_target(cohort, endpoint) for endpoint in ENDPOINTS}
    models = fit_endpoint_models(
        design, targets, seed=seed, n_bootstrap=n_bootstrap, n_jobs=n_jobs,
        estimator_params=estimator_params, components=component_targets(cohort),
        ensembles=primary if primary_ensembles_only else None,
    )  # fmt: skip
    metadata = {"uncertainty": {"kind": "sampling", "text": SAMPLING_UNCERTAINTY}}
    if evidence is not None:
        metadata = _with_evidence(models, evidence, len(cohort))
    return ModelBundle(
        schema_version=SCHEMA_VERSION,
        feature_names=FEATURE_NAMES,
        models=models,
        primary=primary,
        propensity=fit_propensity(cohort, seed),
        propensity_features=PROPENSITY_FEATURES,
        **_cohort_summaries(cohort, design, models, background_size, seed),
        metadata={**metadata, **_run_metadata(cohort, cohort_label, seed, n_bootstrap)},
    )


def _cohort_summaries(cohort, design, models, background_size: int, seed: int) -> dict:
    """What the bundle keeps of the training cohort: counts, summaries and coefficients, never
    a patient's row (docs/security.md)."""
    return {
        "support_counts": support_counts(cohort),
        **_background(design, background_size, seed),
        **_follow_up(cohort),
        "similar_patients": similarity_tables(cohort, design.to_numpy(), models),
        "imputer": fit_prediction_imputer([cohort], missing_mask(cohort), seed),
    }


def _background(design: pd.DataFrame, background_size: int, seed: int) -> dict:
    """The bundle's explanation background: weighted k-means centres, never a patient's row."""
    background = summarise_background(design, n_clusters=min(20, background_size), seed=seed)
    return {
        "shap_background": background.centres,
        "shap_background_weights": background.weights,
        "shap_background_patients": background.n_patients,
    }


def _follow_up(cohort: pd.DataFrame) -> dict:
    """The bundle's follow-up fields: adequately followed month and numbers at risk."""
    return {
        "max_follow_up_months": {
            e: adequately_followed_month(cohort[f"{e}_months"]) for e in ENDPOINTS
        },
        "numbers_at_risk": {e: numbers_at_risk(cohort[f"{e}_months"]) for e in ENDPOINTS},
    }


def _run_metadata(cohort: pd.DataFrame, cohort_label: str, seed: int, n_bootstrap: int) -> dict:
    """What the bundle records of its training run: data, date, seed and sizes."""
    return {
        "trained_on": cohort_label,
        "data_fingerprint": data_fingerprint(cohort),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "n_bootstrap": n_bootstrap,
        "n_patients": len(cohort),
        "n_events": {e: int(cohort[f"{e}_event"].sum()) for e in ENDPOINTS},
    }
