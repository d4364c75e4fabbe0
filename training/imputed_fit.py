"""Fitting on a multiply imputed cohort: a fit per imputation, pooled by Rubin's rules.

The hyperparameters are chosen once, on the first imputation (the full tuned fit of
:func:`training.fit.fit_bundle`); every other imputation refits those choices, as the bootstrap
members do, so that `m` imputations cost `m` refits rather than `m` tunings. Then:

- **Cox family.** Each delta-method component (:class:`model.cox_inference.BreslowInference`)
  is refitted per imputation and pooled by Rubin's rules: the mean coefficients, the covariance
  ``W + (1 + 1/m) B`` (mean within-imputation covariance plus the between-imputation covariance
  of the coefficients), the mean baseline cumulative hazard, whose martingale variance gains
  ``(1 + 1/m)`` times its between-imputation variance. The intervals therefore include the
  uncertainty of the imputations (Rubin 1987; Wood, White and Royston 2008 for prediction
  models). The cross-covariance of the coefficients' and the baseline's between-imputation
  errors is left out, as it is within imputations.
- **Point predictions** of every linear fit are the average over imputations (the mean of the
  linear predictors and of the baselines). The boosted family's point fit is the first
  imputation's; its bootstrap members are spread over the imputations (member ``k`` is a
  resample of imputation ``k mod m``), so its intervals carry the between-imputation spread.

References
----------
Rubin DB. Multiple Imputation for Nonresponse in Surveys. Wiley; 1987.
Wood AM, White IR, Royston P. How should variable selection be performed with multiply imputed
data? Stat Med. 2008;27(17):3227-46.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from model.bundle import MONTH_GRID, CurveModel, ModelBundle
from model.cox_inference import BreslowInference, fit_breslow_inference, fit_cox_coefficients
from model.estimators import RELAXED_RIDGE
from model.schema import encode
from training import fit
from training.unknowns_fit import fit_prediction_imputer

__all__ = ["fit_imputed_bundle", "pool_components"]


def pool_components(fits: list[BreslowInference]) -> BreslowInference:
    """One component from its fit on each imputation, by Rubin's rules (module docstring)."""
    m = len(fits)
    if m == 1:
        return fits[0]
    coefs = np.stack([f.coef for f in fits])
    hazards = np.stack([f.cumulative_hazard for f in fits])
    inflation = 1.0 + 1.0 / m
    between = np.cov(coefs, rowvar=False, ddof=1).reshape(coefs.shape[1], coefs.shape[1])
    return BreslowInference(
        coef=coefs.mean(axis=0),
        covariance=np.mean([f.covariance for f in fits], axis=0) + inflation * between,
        grid=fits[0].grid,
        cumulative_hazard=hazards.mean(axis=0),
        hazard_variance=np.mean([f.hazard_variance for f in fits], axis=0)
        + inflation * hazards.var(axis=0, ddof=1),
        hazard_mean=np.mean([f.hazard_mean for f in fits], axis=0),
    )


def _relaxed_refit(design: pd.DataFrame, target: np.ndarray) -> BreslowInference:
    X = design.to_numpy()
    coef = fit_cox_coefficients(X, target["event"], target["months"], ridge=RELAXED_RIDGE)
    return fit_breslow_inference(
        X, target["event"], target["months"], coef, MONTH_GRID, ridge=RELAXED_RIDGE,
        selected=np.ones(X.shape[1], dtype=bool),
    )  # fmt: skip


def _is_relaxed(component: BreslowInference, design: pd.DataFrame, target) -> bool:
    """Whether a component is the all-terms relaxed refit (so each imputation refits alike)."""
    refit = _relaxed_refit(design, target)
    return bool(np.allclose(refit.coef, component.coef, rtol=1e-5, atol=1e-7))


def _component_refitter(first, name, seed, params, design, target):
    """How every imputation refits one component: the all-terms relaxed refit where the first
    imputation's is one, else the penalised fit with the first imputation's tuned choices (one
    tuning, not one per imputation)."""
    if _is_relaxed(first, design, target):
        return _relaxed_refit, {}
    tuned = fit.make_estimator(name, seed, params).fit(design, target).tuned_params()
    return _penalised_refit, {"name": name, "seed": seed, "params": {**(params or {}), **tuned}}


def _penalised_refit(design, target, *, name, seed, params) -> BreslowInference:
    estimator = fit.make_estimator(name, seed, params).fit(design, target)
    return fit.component_inference(estimator, design, target)


def _pooled_curve(fulls: list[CurveModel]) -> CurveModel:
    """The average linear fit: mean coefficients, intercepts and baselines."""
    return dataclasses.replace(
        fulls[0],
        coef=np.mean([f.coef for f in fulls], axis=0),
        intercept=float(np.mean([f.intercept for f in fulls])),
        baseline_cumulative_hazard=np.mean([f.baseline_cumulative_hazard for f in fulls], axis=0),
    )


def _refit_curve(full: CurveModel, name, seed, params, design, target) -> CurveModel:
    tuned = {**(params or {}), **full.estimator.tuned_params()}
    estimator = fit.make_estimator(name, seed, tuned).fit(design, target)
    return CurveModel.from_estimator(estimator, design)


def _pool_linear(bundle, completed, designs, seed, params, n_jobs) -> None:
    """Replace each Cox family's full fit and components by their pooled versions."""
    components = [fit.component_targets(c) for c in completed]
    targets = [{e: fit.survival_target(c, e) for e in bundle.models} for c in completed]
    for endpoint, families in bundle.models.items():
        for name, model in families.items():
            if model.full.coef is None:
                continue
            extra = Parallel(n_jobs=n_jobs)(
                delayed(_refit_curve)(model.full, name, seed, params.get(name), d, t[endpoint])
                for d, t in zip(designs[1:], targets[1:], strict=True)
            )
            model.full = _pooled_curve([model.full, *extra])
            pooled = []
            for k, first in enumerate(model.components):
                refit, options = _component_refitter(
                    first, name, seed, params.get(name), designs[0], components[0][endpoint][k]
                )
                fits = Parallel(n_jobs=n_jobs)(
                    delayed(refit)(d, c[endpoint][k], **options)
                    for d, c in zip(designs[1:], components[1:], strict=True)
                )
                pooled.append(pool_components([first, *fits]))
            model.components = pooled


def _members_over_imputations(bundle, completed, designs, seed, params, n_jobs) -> None:
    """Refit each boosted ensemble with member k on a resample of imputation k mod m."""
    rng = np.random.default_rng(seed)
    for endpoint, families in bundle.models.items():
        for name, model in families.items():
            if not model.members or model.full.coef is not None:
                continue
            tuned = {**params.get(name, {}), **model.full.estimator.tuned_params()}
            n = len(model.members)
            picks = [(k % len(designs), rng.integers(0, len(designs[0]), len(designs[0])))
                     for k in range(n)]  # fmt: skip
            model.members = Parallel(n_jobs=n_jobs)(
                delayed(fit._fit_curve_model)(
                    fit.make_estimator(name, seed, tuned), designs[j],
                    fit.survival_target(completed[j], endpoint), rows,
                )
                for j, rows in picks
            )  # fmt: skip


def fit_imputed_bundle(
    completed: list[pd.DataFrame],
    missing: pd.DataFrame,
    *,
    seed: int = 0,
    n_jobs: int = 1,
    estimator_params: dict[str, dict] | None = None,
    **fitting,
) -> ModelBundle:
    """:func:`training.fit.fit_bundle` on `m` completed copies of one cohort, pooled.

    Parameters
    ----------
    completed : list of DataFrame, length m
        The cohort completed by :func:`training.imputation.impute_cohort`.
    missing : DataFrame
        :func:`training.imputation.missing_mask` of the incomplete cohort.
    **fitting
        The other arguments of :func:`training.fit.fit_bundle` (`evidence` among them is
        applied to the pooled components).
    """
    params = estimator_params or {}
    evidence = fitting.pop("evidence", None)
    bundle = fit.fit_bundle(
        completed[0], seed=seed, n_jobs=n_jobs, estimator_params=estimator_params, **fitting
    )
    designs = [encode(c) for c in completed]
    if len(completed) > 1:
        _pool_linear(bundle, completed, designs, seed, params, n_jobs)
        _members_over_imputations(bundle, completed, designs, seed, params, n_jobs)
    if evidence is not None:
        bundle.metadata.update(fit._with_evidence(bundle.models, evidence, len(completed[0])))
    bundle.imputer = fit_prediction_imputer(completed, missing, seed)
    return bundle


@dataclasses.dataclass
class ImputedCohort:
    """A cohort with holes, completed: what training fits and evaluates on instead.

    Attributes
    ----------
    development : list of DataFrame
        The development rows completed `m` times (MICE on the development rows alone).
    held_out : DataFrame
        The held-out rows completed once, by MICE on the held-out rows alone, so that no
        held-out value informs the models' imputations.
    cohort : DataFrame
        The first imputation of the development rows with the completed held-out rows.
    missing : DataFrame
        Which imputed quantity each development patient lacked.
    record : dict
        :func:`training.missing_data.missing_data_record` of the whole cohort as given.
    fingerprint : str
        The data fingerprint of the development rows as given (not as imputed).
    """

    development: list[pd.DataFrame]
    held_out: pd.DataFrame
    cohort: pd.DataFrame
    missing: pd.DataFrame
    record: dict
    fingerprint: str


def imputed_cohort(
    cohort: pd.DataFrame, development: pd.DataFrame, held_out: pd.DataFrame, seed: int
) -> ImputedCohort | None:
    """The completed cohort, or None when no patient lacks an imputable predictor (training is
    then exactly as on a complete cohort)."""
    from training.imputation import impute_cohort, is_incomplete, missing_mask, n_imputations
    from training.missing_data import missing_data_record

    if not is_incomplete(cohort):
        return None
    m = n_imputations(development)
    completed = impute_cohort(development, m, seed)
    held = impute_cohort(held_out, 1, seed + 1)[0] if is_incomplete(held_out) else held_out
    combined = pd.concat([completed[0], held], ignore_index=True)
    order = pd.Index(combined["patient_id"]).get_indexer(cohort["patient_id"])
    return ImputedCohort(
        development=completed,
        held_out=held,
        cohort=combined.iloc[order].set_axis(cohort.index),
        missing=missing_mask(development),
        record=missing_data_record(cohort, m),
        fingerprint=fit.data_fingerprint(development),
    )


def imputation_note(record: dict) -> str:
    """The report's note on how the missing values were handled."""
    how = record["imputation"]
    return (
        f"{record['n_incomplete']} of {record['n_patients']} patients lacked at least one "
        f"imputable predictor: {how['method']}, m = {how['m']} imputations, imputation models "
        f"with {how['variables']}; {how['pooling']}. Cross-validation and the cohort analyses "
        "use the first imputation; the held-out patients were imputed separately. "
        "Missing at random is assumed (see the missing-data section)."
    )
