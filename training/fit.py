"""Fitting: per endpoint and model family, the full fit, its bootstrap ensemble, the propensity."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.util import Surv

from model.bundle import CurveModel, EndpointModel, ModelBundle
from model.estimators import ESTIMATORS
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

PROPENSITY_FEATURES = tuple(n for n in FEATURE_NAMES if "_in_" not in n)
"""Design columns that describe the patient, not the modality: the propensity model's inputs."""

MIN_AT_RISK = 10
DEFAULT_PRIMARY = {"hpfs": "coxnet", "os": "coxnet"}


def survival_target(cohort: pd.DataFrame, endpoint: str) -> np.ndarray:
    """The sksurv structured target of `endpoint` (event, months)."""
    return Surv.from_arrays(
        cohort[f"{endpoint}_event"].astype(bool).to_numpy(),
        cohort[f"{endpoint}_months"].astype(float).to_numpy(),
        name_event="event",
        name_time="months",
    )


def make_estimator(name: str, seed: int, params: dict | None = None):
    """A fresh estimator of family `name` with its random state set."""
    return ESTIMATORS[name](random_state=seed, **(params or {}))


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
) -> dict[str, dict[str, EndpointModel]]:
    """Every model family for every endpoint: a tuned fit on all rows and its bootstrap ensemble.

    The full-data fits choose their hyperparameters (PenalizedCox: alpha and l1_ratio by
    cross-validation; BoostedCox: the rounds by early stopping); the `n_bootstrap` members
    refit those choices on resampled rows (``tuned_params``) instead of tuning again, which
    made the ensembles about 20 times cheaper on large cohorts. The intervals therefore show
    the sampling variability of the chosen model, not of the tuning. With `ensembles`
    (``{endpoint: family}``) only that family of each endpoint gets members; the others keep
    their full fit alone.

    Returns
    -------
    dict
        ``{endpoint: {family: EndpointModel}}``.
    """
    estimator_params = estimator_params or {}
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, len(design), len(design)) for _ in range(n_bootstrap)]
    pairs = [(endpoint, name) for endpoint in targets for name in ESTIMATORS]
    fulls = Parallel(n_jobs=n_jobs)(
        delayed(_fit_curve_model)(
            make_estimator(name, seed, estimator_params.get(name)), design, targets[endpoint]
        )
        for endpoint, name in pairs
    )
    member_estimators = {
        pair: make_estimator(
            pair[1], seed, {**estimator_params.get(pair[1], {}), **full.estimator.tuned_params()}
        )
        for pair, full in zip(pairs, fulls, strict=True)
    }
    with_members = [pair for pair in pairs if ensembles is None or ensembles[pair[0]] == pair[1]]
    members = Parallel(n_jobs=n_jobs)(
        delayed(_fit_curve_model)(member_estimators[pair], design, targets[pair[0]], rows)
        for pair in with_members
        for rows in resamples
    )
    ensemble_of = {
        pair: members[i * n_bootstrap : (i + 1) * n_bootstrap]
        for i, pair in enumerate(with_members)
    }
    models: dict[str, dict[str, EndpointModel]] = {endpoint: {} for endpoint in targets}
    for (endpoint, name), full in zip(pairs, fulls, strict=True):
        training_log_hazard = np.sort(full.log_hazard(design.to_numpy()))
        ensemble = ensemble_of.get((endpoint, name), [])
        models[endpoint][name] = EndpointModel(name, full, ensemble, training_log_hazard)
    return models


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


def last_well_followed_month(time: np.ndarray, minimum_at_risk: int = MIN_AT_RISK) -> float:
    """Largest time at which at least `minimum_at_risk` patients are still followed."""
    ordered = np.sort(np.asarray(time))[::-1]
    return float(ordered[min(minimum_at_risk, len(ordered)) - 1])


def data_fingerprint(cohort: pd.DataFrame) -> str:
    """SHA-256 of the canonical cohort table (rows by patient_id, columns by name, CSV)."""
    canonical = cohort.sort_values("patient_id").reindex(sorted(cohort.columns), axis=1)
    text = canonical.to_csv(index=False, float_format="%.10g", date_format="%Y-%m-%d")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
) -> ModelBundle:
    """Fit everything a prognosis needs on a validated cohort.

    Parameters
    ----------
    cohort : DataFrame, shape = (n_patients, n_columns)
        A validated cohort (`training.validate.validate_cohort`); `true_*` columns are ignored.
    seed : int
        Seeds every estimator, bootstrap resample and the SHAP background sample.
    n_bootstrap : int
        Ensemble size per endpoint and model family, for prediction intervals.
    primary : dict, optional
        The primary model family per endpoint (from cross-validation); coxnet by default.
    estimator_params : dict, optional
        Extra constructor arguments per family, e.g. ``{"xgboost": {"device": "cuda"}}``.
    primary_ensembles_only : bool
        Fit bootstrap members for each endpoint's primary family only (the training
        pipeline's choice: the other family serves as the check model, whose full fit alone
        is used); otherwise for every family, so that either can be made primary later.
    """
    if cohort_label not in ("synthetic", "real"):
        raise ValueError(f"cohort_label must be 'synthetic' or 'real', but got {cohort_label!r}")
    design = encode(cohort)
    primary = dict(primary or DEFAULT_PRIMARY)
    models = fit_endpoint_models(
        design,
        {endpoint: survival_target(cohort, endpoint) for endpoint in ENDPOINTS},
        seed=seed,
        n_bootstrap=n_bootstrap,
        n_jobs=n_jobs,
        estimator_params=estimator_params,
        ensembles=primary if primary_ensembles_only else None,
    )
    return ModelBundle(
        schema_version=SCHEMA_VERSION,
        feature_names=FEATURE_NAMES,
        models=models,
        primary=primary,
        propensity=fit_propensity(cohort, seed),
        propensity_features=PROPENSITY_FEATURES,
        support_counts=support_counts(cohort),
        shap_background=design.sample(min(background_size, len(design)), random_state=seed),
        max_follow_up_months={
            e: last_well_followed_month(cohort[f"{e}_months"]) for e in ENDPOINTS
        },
        metadata={
            "trained_on": cohort_label,
            "data_fingerprint": data_fingerprint(cohort),
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seed": seed,
            "n_bootstrap": n_bootstrap,
            "n_patients": len(cohort),
            "n_events": {e: int(cohort[f"{e}_event"].sum()) for e in ENDPOINTS},
        },
    )
