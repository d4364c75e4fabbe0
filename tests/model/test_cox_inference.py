"""Delta-method intervals of Cox predictions against brute force and resampling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.linear_model.coxph import BreslowEstimator
from sksurv.util import Surv

from model.bundle import MONTH_GRID
from model.cox_inference import (
    CoxCurves,
    CoxDeltaMethod,
    cumulative_incidence,
    fit_breslow_inference,
    fit_cox_coefficients,
)
from model.endpoint_predictor import interp_rows


@pytest.fixture(scope="module")
def competing_data():
    rng = np.random.default_rng(7)
    n = 800
    X = np.column_stack([rng.random(n) < 0.4, rng.random(n) < 0.3, rng.normal(0, 1, n)]).astype(
        float
    )
    progression = rng.weibull(1.5, n) * 20.0 * np.exp(-(X @ [0.7, -0.5, 0.2]) / 1.5)
    death = rng.weibull(1.2, n) * 90.0 * np.exp(-(X @ [0.3, 0.4, 0.1]) / 1.2)
    censor = rng.uniform(10, 80, n)
    months = np.round(np.minimum.reduce([progression, death, censor]), 1)
    first_progression = (progression <= death) & (progression <= censor)
    first_death = (death < progression) & (death <= censor)
    return X, first_progression, first_death, np.maximum(months, 0.1)


def _inference(X, event, months):
    coef = fit_cox_coefficients(X, event, months, ridge=0.0)
    return fit_breslow_inference(X, event, months, coef, MONTH_GRID)


def test_newton_fit_equals_scikit_survival_breslow_coefficients(competing_data):
    X, progression, _, months = competing_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = (
            CoxPHSurvivalAnalysis(alpha=0.0, ties="breslow")
            .fit(X, Surv.from_arrays(progression, months))
            .coef_
        )
    np.testing.assert_allclose(fit_cox_coefficients(X, progression, months), expected, atol=1e-8)


def test_coefficient_of_a_level_without_events_stays_finite_with_the_ridge():
    X = np.array([[0.0], [0.0], [1.0], [1.0], [0.0], [1.0]])
    event = np.array([True, True, False, False, True, False])
    months = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    coef = fit_cox_coefficients(X, event, months, ridge=0.01)
    assert np.isfinite(coef).all()
    assert coef[0] < -2.0


def test_breslow_baseline_matches_scikit_survival(competing_data):
    X, progression, _, months = competing_data
    inference = _inference(X, progression, months)
    step = BreslowEstimator().fit(X @ inference.coef, progression, months).cum_baseline_hazard_
    np.testing.assert_allclose(inference.cumulative_hazard[[12, 36]], step([12.0, 36.0]))


def test_delta_method_variance_matches_resampling_from_the_same_distribution(competing_data):
    X, progression, _, months = competing_data
    curves = CoxCurves([_inference(X, progression, months)])
    patients = X[:4]
    weights = np.zeros((1, len(MONTH_GRID)))
    weights[0, 24] = 1.0
    _, variance = curves.functional(patients, weights)
    draws = curves.draw_survival(patients, 40_000, np.random.default_rng(0))[:, :, 24]
    np.testing.assert_allclose(np.sqrt(variance[0]), draws.std(axis=0), rtol=0.08)


def test_paired_difference_variance_matches_resampling(competing_data):
    X, progression, death, months = competing_data
    curves = CoxCurves([_inference(X, progression, months), _inference(X, death, months)])
    treated, untreated = X[:5].copy(), X[:5].copy()
    treated[:, 0], untreated[:, 0] = 1.0, 0.0
    weights = np.zeros((1, len(MONTH_GRID)))
    weights[0, 36] = 1.0
    difference, variance = curves.functional(treated, weights, reference=untreated)
    draws = curves.draw_survival(np.stack([treated, untreated]), 40_000, np.random.default_rng(1))
    drawn = draws[:, 0, :, 36] - draws[:, 1, :, 36]
    np.testing.assert_allclose(np.sqrt(variance[0]), drawn.std(axis=0), rtol=0.08)
    np.testing.assert_allclose(difference[0], drawn.mean(axis=0), atol=0.01)


def test_seeded_draws_are_kept_and_give_the_same_curves_as_a_fresh_generator(competing_data):
    X, progression, death, months = competing_data
    curves = CoxCurves([_inference(X, progression, months), _inference(X, death, months)])
    for patient in (X[0], X[:3]):
        expected = curves.draw_survival(patient, 500, np.random.default_rng(0))
        np.testing.assert_array_equal(curves.draw_survival_seeded(patient, 500, seed=0), expected)
    assert len(curves._seeded) == 1


def test_interpolating_every_drawn_curve_at_once_matches_np_interp():
    rows = np.sort(np.random.default_rng(2).random((30, len(MONTH_GRID))), axis=1)[:, ::-1]
    for x in (-1.0, 0.0, 0.5, 3.3, 12.0, float(MONTH_GRID[-1]), float(MONTH_GRID[-1]) + 1):
        expected = [np.interp(x, MONTH_GRID, row) for row in rows]
        np.testing.assert_allclose(interp_rows(x, MONTH_GRID, rows), expected, rtol=0, atol=1e-15)


def test_survival_interval_holds_its_estimate_without_widening(competing_data):
    X, progression, _, months = competing_data
    survival, lower, upper = CoxCurves([_inference(X, progression, months)]).survival_interval(X)
    assert np.all(lower <= survival)
    assert np.all(survival <= upper)
    assert np.all(lower[:, 1:] < upper[:, 1:])
    assert np.all((lower >= 0) & (upper <= 1))


def test_cumulative_incidence_and_its_interval_agree_with_resampling(competing_data):
    X, progression, death, months = competing_data
    cause, competing = _inference(X, progression, months), _inference(X, death, months)
    patients = X[:3]
    incidence, lower, upper = cumulative_incidence(
        CoxDeltaMethod(cause), CoxDeltaMethod(competing), patients
    )
    hazards = [
        CoxDeltaMethod(c).draw_cumulative_hazards(patients, 20_000, np.random.default_rng(i))
        for i, c in enumerate((cause, competing))
    ]
    steps = [np.diff(h, axis=-1, prepend=0.0) for h in hazards]
    total = steps[0] + steps[1]
    before = np.exp(-(np.cumsum(total, -1) - total))
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, steps[0] / total, 0.0)
    drawn = np.cumsum(before * share * -np.expm1(-total), -1)[..., 36]
    low, high = np.quantile(drawn, [0.025, 0.975], axis=0)
    np.testing.assert_allclose(lower[:, 36], low, atol=0.015)
    np.testing.assert_allclose(upper[:, 36], high, atol=0.015)
    survival = CoxCurves([cause, competing]).survival(patients)
    assert np.all(incidence <= 1.0 - survival + 1e-12)
    assert np.all((lower <= incidence) & (incidence <= upper))
