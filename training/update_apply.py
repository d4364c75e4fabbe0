"""Applying an updating method to one endpoint's model family: new coefficients, new baseline.

Every method but "no change" re-estimates the baseline hazard on the local patients, with the
updated linear predictor as offset: by default the original baseline's shape with its level
estimated from every local event (one parameter), unless the local events show another shape
(:func:`training.updating.baseline_shape_test`); then the local Breslow estimate. Where the
local patients thin out (fewer than :data:`TAIL_AT_RISK` still at risk) a Breslow estimate
stops being one, so from there on the original's shape is carried on from the local level.
The coefficients' covariance of an updated Cox component is the original's, carried through
the update by the delta method (``Var(b beta) = b^2 V + beta beta' Var(b)``), plus the local
estimates' own; a full refit has the local covariance alone.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pandas as pd
import xgboost as xgb

from model.background import risk_quantiles
from model.bundle import MONTH_GRID, CurveModel, EndpointModel
from model.cox_inference import (
    BreslowInference,
    cox_log_likelihood,
    fit_breslow_inference,
    fit_cox_coefficients,
)
from training.fit import component_inference, component_targets, make_estimator, survival_target
from training.updating import Decision, revision_fit

__all__ = [
    "MIN_COMPONENT_EVENTS",
    "TAIL_AT_RISK",
    "scaled_booster_estimator",
    "tail_start",
    "update_family",
]

TAIL_AT_RISK = 10
MIN_COMPONENT_EVENTS = 5
"""A Cox component (e.g. death before progression) with fewer local events is kept as it was:
its baseline cannot be re-estimated from so few."""


def tail_start(months: np.ndarray) -> int:
    """Index on :data:`MONTH_GRID` of the last month with :data:`TAIL_AT_RISK` still at risk."""
    ordered = np.sort(np.asarray(months, dtype=float))
    at_risk = len(ordered) - np.searchsorted(ordered, MONTH_GRID, side="left")
    return int(max(np.flatnonzero(at_risk >= TAIL_AT_RISK).max(initial=0), 0))


def _carried_on(local: BreslowInference, original: BreslowInference, start: int):
    """`local` up to grid index `start`, then carried on with the shape of `original`.

    Beyond `start`, ``H(t) = H(start) g(t)`` with ``g(t) = 1 + (H_o(t) - H_o(start)) /
    H_o(start)`` (the original's growth from `start`): the local level, the original's shape.
    Its derivative in the coefficients and the local part of its variance scale by ``g(t)``
    and ``g(t)^2``, so the relative error stays that of the local estimate at `start`; the
    original's own increments add their (scaled) variance.
    """
    cumulative = np.array(local.cumulative_hazard, dtype=float, copy=True)
    variance = np.array(local.hazard_variance, dtype=float, copy=True)
    mean = np.array(local.hazard_mean, dtype=float, copy=True)
    reference = original.cumulative_hazard[start]
    if start + 1 >= len(MONTH_GRID) or reference <= 0 or cumulative[start] <= 0:
        return cumulative, variance, mean
    growth = 1.0 + (original.cumulative_hazard[start + 1 :] - reference) / reference
    ratio = cumulative[start] / reference
    added_variance = original.hazard_variance[start + 1 :] - original.hazard_variance[start]
    cumulative[start + 1 :] = cumulative[start] * growth
    variance[start + 1 :] = growth**2 * variance[start] + ratio**2 * added_variance
    mean[start + 1 :] = growth[:, None] * mean[start]
    return cumulative, variance, mean


def _level(original: np.ndarray, log_hazard, event, months) -> tuple[float, np.ndarray]:
    """MLE of the factor on the original baseline, and each patient's expected events."""
    expected = np.interp(months, MONTH_GRID, original) * np.exp(log_hazard)
    return float(np.sum(event) / max(expected.sum(), 1e-300)), expected


def _rebased(
    original: BreslowInference, design, event, months, coef, covariance, proportional: bool
) -> BreslowInference:
    """A component with new coefficients and a local baseline.

    Proportional: the original baseline times the factor its local events estimate (with the
    new linear predictor as offset), whose relative variance is one over the local events;
    ``dH0/dbeta = -H0(t) x_E``, with ``x_E`` the expected-events-weighted mean of the local
    designs. Otherwise the local Breslow estimate, carried on past the tail.
    """
    coef = np.asarray(coef, dtype=float)
    if proportional:
        factor, expected = _level(original.cumulative_hazard, design @ coef, event, months)
        weighted_mean = expected @ design / max(expected.sum(), 1e-300)
        cumulative = factor * original.cumulative_hazard
        return BreslowInference(
            coef=coef,
            covariance=covariance,
            grid=MONTH_GRID,
            cumulative_hazard=cumulative,
            hazard_variance=cumulative**2 / max(np.sum(event), 1)
            + factor**2 * original.hazard_variance,
            hazard_mean=cumulative[:, None] * weighted_mean[None, :],
        )
    local = fit_breslow_inference(design, event, months, coef, MONTH_GRID)
    cumulative, variance, mean = _carried_on(local, original, tail_start(months))
    return BreslowInference(
        coef=coef,
        covariance=covariance,
        grid=MONTH_GRID,
        cumulative_hazard=cumulative,
        hazard_variance=variance,
        hazard_mean=mean,
    )


def _slope(log_hazard, event, months) -> tuple[float, float]:
    """Calibration slope (Cox, the log hazard as sole covariate) and its variance."""
    column = np.asarray(log_hazard, dtype=float)[:, None]
    slope = fit_cox_coefficients(column, event, months)
    information = cox_log_likelihood(column, event, months, slope)[2]
    return float(slope[0]), float(1.0 / max(information[0, 0], 1e-12))


def _updated_coefficients(coef, covariance, log_hazard, design, event, months, decision, mask):
    """Coefficients, covariance and slope after method 1, 2 or 3 (`mask`: revised columns).

    `log_hazard` is the model's whole linear predictor (an intercept included): the slope
    multiplies it, so a caller with an intercept multiplies that by the returned slope too.
    """
    if decision.method == 1:
        return coef, covariance, 1.0
    if decision.method == 2:
        slope, variance = _slope(log_hazard, event, months)
        return slope * coef, slope**2 * covariance + variance * np.outer(coef, coef), slope
    theta, sigma, _ = revision_fit(log_hazard, design, event, months, mask)
    new = theta[0] * coef
    new[mask] += theta[1:]
    jacobian = np.column_stack([coef, np.eye(len(coef))[:, mask]])
    covariance = theta[0] ** 2 * covariance + jacobian @ sigma @ jacobian.T
    return new, covariance, float(theta[0])


def _local_baseline(original: np.ndarray, log_hazard, event, months, proportional) -> np.ndarray:
    """Baseline at log hazard 0 on the grid, with `log_hazard` as offset (see :func:`_rebased`)."""
    if proportional:
        return _level(original, log_hazard, event, months)[0] * np.asarray(original)
    column = np.asarray(log_hazard, dtype=float)[:, None]
    local = fit_breslow_inference(column, event, months, np.ones(1), MONTH_GRID)
    shape = dataclasses.replace(local, cumulative_hazard=np.asarray(original, dtype=float))
    return _carried_on(local, shape, tail_start(months))[0]


def _linear_curve(full: CurveModel, design, event, months, decision, mask) -> CurveModel:
    """The full-data fit (explanations, risk percentiles) updated like its components."""
    no_covariance = np.zeros((design.shape[1],) * 2)
    coef, _, slope = _updated_coefficients(
        full.coef, no_covariance, full.log_hazard(design), design, event, months, decision, mask
    )
    intercept = slope * full.intercept
    baseline = _local_baseline(
        full.baseline_cumulative_hazard, design @ coef + intercept, event, months,
        decision.baseline == "proportional",
    )  # fmt: skip
    return CurveModel(full.estimator, baseline, coef, intercept)


def _update_linear(model, decision, design, cohort, endpoint, seed) -> EndpointModel:
    names = tuple(design.columns)
    matrix = design.to_numpy(dtype=float)
    mask = np.array([n in decision.revised for n in names], dtype=bool)
    composite = survival_target(cohort, endpoint)
    targets = component_targets(cohort)[endpoint]
    if decision.method == 4:
        return _refit_linear(model, design, composite, targets, seed)
    proportional = decision.baseline == "proportional"
    components = []
    for component, target in zip(model.components, targets, strict=True):
        event, months = target["event"], target["months"]
        if event.sum() < MIN_COMPONENT_EVENTS:
            components.append(component)
            continue
        coef, covariance, _ = _updated_coefficients(
            component.coef, component.covariance, matrix @ component.coef, matrix, event,
            months, decision, mask,
        )  # fmt: skip
        components.append(
            _rebased(component, matrix, event, months, coef, covariance, proportional)
        )
    full = _linear_curve(
        model.full, matrix, composite["event"], composite["months"], decision, mask
    )
    quantiles = risk_quantiles(full.log_hazard(matrix))
    return EndpointModel(model.name, full, [], quantiles, components)


def _refit_linear(model, design: pd.DataFrame, composite, targets, seed) -> EndpointModel:
    """Method 4: the training family's own tuned fit, on the local patients alone."""
    matrix = design.to_numpy(dtype=float)
    estimator = make_estimator(model.name, seed).fit(design, composite)
    full = CurveModel.from_estimator(estimator, design)
    components = []
    for original, target in zip(model.components, targets, strict=True):
        if np.array_equal(target, composite):
            fitted = component_inference(estimator, design, target)
        else:
            fitted = component_inference(
                make_estimator(model.name, seed).fit(design, target), design, target
            )
        cumulative, variance, mean = _carried_on(fitted, original, tail_start(target["months"]))
        components.append(
            dataclasses.replace(
                fitted, cumulative_hazard=cumulative, hazard_variance=variance, hazard_mean=mean
            )
        )
    quantiles = risk_quantiles(full.log_hazard(matrix))
    return EndpointModel(model.name, full, [], quantiles, components)


def scaled_booster_estimator(estimator, factor: float):
    """A copy of a fitted `BoostedCox` whose margin is `factor` times the original's.

    Every leaf value is multiplied by `factor` and the base score raised to its power (a Cox
    booster's margin starts at ``log(base_score)``), so that TreeSHAP, bootstrap members and
    every other reader of the booster see the recalibrated margin without knowing of it.
    """
    scaled = copy.deepcopy(estimator)
    raw = json.loads(bytes(estimator.booster_.save_raw("json")))
    learner = raw["learner"]
    for tree in learner["gradient_booster"]["model"]["trees"]:
        leaves = np.asarray(tree["left_children"]) == -1
        conditions = np.asarray(tree["split_conditions"], dtype=float)
        conditions[leaves] *= factor
        tree["split_conditions"] = conditions.tolist()
        tree["base_weights"] = (np.asarray(tree["base_weights"], dtype=float) * factor).tolist()
    parameters = learner["learner_model_param"]
    base_score = float(parameters["base_score"].strip("[]"))
    parameters["base_score"] = f"[{base_score**factor:.9E}]"
    booster = xgb.Booster()
    booster.load_model(bytearray(json.dumps(raw).encode("utf-8")))
    scaled.booster_ = booster
    return scaled


def _boosted_curve(curve: CurveModel, slope: float, design, event, months, proportional):
    estimator = (
        curve.estimator if slope == 1.0 else scaled_booster_estimator(curve.estimator, slope)
    )
    scaled = CurveModel(estimator, curve.baseline_cumulative_hazard)
    baseline = _local_baseline(
        curve.baseline_cumulative_hazard, scaled.log_hazard(design), event, months, proportional
    )
    return CurveModel(estimator, baseline)


def _update_boosted(model, decision, design, cohort, endpoint) -> EndpointModel:
    matrix = design.to_numpy(dtype=float)
    target = survival_target(cohort, endpoint)
    event, months = target["event"], target["months"]
    slope = 1.0
    if decision.method >= 2:
        slope = _slope(model.full.log_hazard(matrix), event, months)[0]
    proportional = decision.baseline == "proportional"
    full = _boosted_curve(model.full, slope, matrix, event, months, proportional)
    members = [_boosted_curve(m, slope, matrix, event, months, proportional) for m in model.members]
    quantiles = risk_quantiles(full.log_hazard(matrix))
    return EndpointModel(model.name, full, members, quantiles, [])


def update_family(
    model: EndpointModel,
    decision: Decision,
    design: pd.DataFrame,
    cohort: pd.DataFrame,
    endpoint: str,
    seed: int = 0,
) -> EndpointModel:
    """`model` updated by `decision`'s method on the local patients (`design` is encoded)."""
    if decision.method == 0:
        return model
    if model.full.coef is None:
        return _update_boosted(model, decision, design, cohort, endpoint)
    return _update_linear(model, decision, design, cohort, endpoint, seed)
