"""`model.estimators.PrimarySurvival` and the restricted cubic splines its Cox candidates use."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from model.estimators import PrimarySurvival
from model.primary import ENSEMBLE, one_se_choice
from model.splines import RestrictedCubicSplines, restricted_cubic_basis

SMALL_GRID = {"max_depth": (1, 2), "learning_rate": (0.1,)}


def _nonlinear_cohort(n, seed):
    """A U-shaped effect of `x0` (hazard lowest at 0), a linear `x1` and a binary `x2`."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=n), rng.normal(size=n), rng.integers(0, 2, size=n)])
    log_hazard = 0.8 * X[:, 0] ** 2 + 0.5 * X[:, 1] + 0.4 * X[:, 2]
    event_time = rng.exponential(np.exp(-log_hazard))
    censoring = rng.exponential(2.0, size=n)
    y = Surv.from_arrays(event_time <= censoring, np.minimum(event_time, censoring) + 1e-6)
    return X.astype(float), y, log_hazard


@pytest.fixture(scope="module")
def nonlinear():
    return _nonlinear_cohort(600, seed=3)


@pytest.fixture(scope="module")
def fitted(nonlinear):
    X, y, _ = nonlinear
    model = PrimarySurvival(boosted_grid=SMALL_GRID, cv=3, keep_families=True, random_state=0)
    return model.fit(X, y)


def test_the_spline_terms_are_linear_beyond_the_outer_knots():
    knots = np.array([-1.0, 0.0, 0.5, 2.0])
    x = np.array([3.0, 4.0, 5.0, -3.0, -2.0])
    terms = restricted_cubic_basis(x, knots)
    assert terms.shape == (5, 2)
    np.testing.assert_allclose(np.diff(terms[:3], axis=0)[0], np.diff(terms[:3], axis=0)[1])
    np.testing.assert_allclose(terms[3:], 0.0)


def test_splines_are_added_only_to_columns_with_many_values(nonlinear):
    X, _, _ = nonlinear
    splines = RestrictedCubicSplines().fit(X)
    assert sorted(splines.knots_) == [0, 1]
    out = splines.transform(X)
    assert out.shape == (len(X), 3 + 2 + 2)
    np.testing.assert_array_equal(out[:, :3], X)
    assert splines.source_columns_.tolist() == [0, 1, 2, 0, 0, 1, 1]


def test_every_candidate_is_scored_on_every_inner_fold(fitted):
    names = set(fitted.cv_results_)
    assert {"cox", "cox_splines", ENSEMBLE} <= names
    assert sum(name.startswith("boosted(") for name in names) == 2
    assert all(len(c) == 3 and np.isfinite(c).all() for c in fitted.cv_results_.values())
    assert fitted.choice_ in names


def test_a_u_shaped_effect_is_chosen_away_from_the_linear_cox_model(fitted, nonlinear):
    X, y, truth = nonlinear
    assert fitted.choice_ != "cox"
    linear = np.nanmean(fitted.cv_results_["cox"])
    assert np.nanmean(fitted.cv_results_[fitted.choice_]) > linear + 0.02
    X_new, y_new, truth_new = _nonlinear_cohort(1000, seed=4)
    c = concordance_index_censored(y_new["event"], y_new["time"], fitted.predict(X_new))[0]
    oracle = concordance_index_censored(y_new["event"], y_new["time"], truth_new)[0]
    assert c > oracle - 0.03


def test_the_survival_curves_are_proper(fitted, nonlinear):
    X, _, _ = nonlinear
    curves = fitted.predict_survival_function(X[:20], return_array=True)
    assert curves.shape == (20, fitted.unique_times_.size)
    assert (np.diff(curves, axis=1) <= 1e-12).all()
    assert ((curves >= 0) & (curves <= 1)).all()


def test_the_families_are_kept_for_scoring_each_alone(fitted, nonlinear):
    X, _, _ = nonlinear
    assert set(fitted.family_estimators_) == {"cox", "boosted"}
    for family, estimator in fitted.family_estimators_.items():
        assert estimator.predict(fitted.family_input(family, X)).shape == (len(X),)


def test_preferring_cox_keeps_it_unless_another_wins_by_one_standard_error():
    folds = {"cox": np.array([0.70, 0.71, 0.69]), "boosted": np.array([0.71, 0.70, 0.70])}
    assert one_se_choice(folds, ["cox"]) == "cox"
    folds["boosted"] = folds["cox"] + np.array([0.03, 0.031, 0.029])
    assert one_se_choice(folds, ["cox"]) == "boosted"


def test_an_ensemble_rescales_its_score_out_of_fold():
    X, y, _ = _nonlinear_cohort(400, seed=5)
    model = PrimarySurvival(boosted_grid=SMALL_GRID, cv=3, random_state=1).fit(X, y)
    clone(model)
    forced = PrimarySurvival(boosted_grid=SMALL_GRID, cv=3, splines=False, random_state=1)
    forced.fit(X, y)
    assert forced.predict(X).shape == (len(X),)
    if forced.choice_ == ENSEMBLE:
        assert len(forced.estimators_) == 2
        assert (forced.weights_ >= 0).all()
