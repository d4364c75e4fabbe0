"""Contract and behaviour tests of the survival estimators: `model.estimators` and the published
Table 1 model (`training.evaluate.PublishedCox`), which joins the shared contract tests."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.model_selection import KFold
from sksurv.column import encode_categorical
from sksurv.datasets import load_gbsg2
from sksurv.functions import StepFunction
from sksurv.linear_model import CoxnetSurvivalAnalysis
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from model.cox_inference import fit_cox_coefficients
from model.estimators import (
    ESTIMATORS,
    MIN_SHRINKAGE_FACTOR,
    RELAXED_RIDGE,
    BoostedCox,
    PenalizedCox,
)
from model.exceptions import (
    FitDiverged,
    InvalidEstimatorParameter,
    InvalidSurvivalTarget,
    ModelError,
    NonFiniteFeatures,
)
from model.penalized import _breslow_partial_log_likelihood
from training.evaluate import PublishedCox
from training.exceptions import EvaluationInputError
from training.synthetic import simulate_cohort

FAST_PARAMS = {
    "coxnet": {"random_state": 0},
    "xgboost": {"n_estimators": 200, "random_state": 0},
}
MAX_RISK_SURVIVAL_RANK_CORRELATION = {"coxnet": -0.999, "xgboost": -0.95, "published": -0.999}
CONTRACT_ESTIMATORS = (*sorted(ESTIMATORS), "published")
"""Every estimator behind the scikit-survival contract: the two families training fits and the
published Table 1 model (`training.evaluate.PublishedCox`), which reads patient fields."""


def _simulate_cox_cohort(n_samples, coef, *, n_noise=0, loc=None, scale=None, seed=0):
    """Exponential proportional-hazards cohort with known log hazard ratios per unit.

    Parameters
    ----------
    n_samples : int
        Number of subjects.

    coef : ndarray, shape = (n_informative,)
        True log hazard ratio per unit of each informative feature.

    n_noise : int
        Number of extra standard-normal features with no effect.

    loc, scale : ndarray, shape = (n_informative,), optional
        Mean and standard deviation of the informative features (default 0 and 1).

    seed : int
        Seed of the generator.

    Returns
    -------
    X : DataFrame, shape = (n_samples, n_informative + n_noise)
        Features named ``x0, x1, ...``.

    y : structured array, shape = (n_samples,)
        About 60 % events, the rest censored by an independent exponential time.
    """
    rng = np.random.default_rng(seed)
    n_informative = len(coef)
    loc = np.zeros(n_informative) if loc is None else np.asarray(loc, dtype=float)
    scale = np.ones(n_informative) if scale is None else np.asarray(scale, dtype=float)
    X = np.hstack(
        [
            rng.normal(loc, scale, size=(n_samples, n_informative)),
            rng.normal(size=(n_samples, n_noise)),
        ]
    )
    log_hazard_ratio = (X[:, :n_informative] - loc) @ coef
    event_time = rng.exponential(np.exp(-log_hazard_ratio))
    censoring_time = rng.exponential(2.0, size=n_samples)
    columns = [f"x{j}" for j in range(X.shape[1])]
    y = Surv.from_arrays(event_time <= censoring_time, np.minimum(event_time, censoring_time))
    return pd.DataFrame(X, columns=columns), y


@pytest.fixture(scope="module")
def cohort():
    return _simulate_cox_cohort(400, np.array([0.8, -0.6, 0.5]), n_noise=4, seed=11)


@pytest.fixture(params=sorted(ESTIMATORS))
def estimator_name(request):
    return request.param


def _make(name, **params):
    return ESTIMATORS[name](**{**FAST_PARAMS[name], **params})


@dataclass(frozen=True)
class ContractCase:
    """One estimator of the shared contract tests, with data in the form it reads."""

    name: str
    X: pd.DataFrame
    y: np.ndarray

    def make(self):
        if self.name == "published":
            return PublishedCox(endpoint="os")
        return _make(self.name)


@pytest.fixture(scope="module")
def patient_cohort():
    """400 synthetic patients (fields and received modality) with their OS, for PublishedCox."""
    frame = simulate_cohort(400, seed=11)
    return frame, Surv.from_arrays(frame["os_event"].astype(bool), frame["os_months"])


@pytest.fixture(params=CONTRACT_ESTIMATORS)
def contract(request, cohort, patient_cohort) -> ContractCase:
    X, y = patient_cohort if request.param == "published" else cohort
    return ContractCase(request.param, X, y)


def test_registry_maps_names_to_the_two_estimator_classes():
    assert ESTIMATORS == {"coxnet": PenalizedCox, "xgboost": BoostedCox}


def test_fit_returns_the_estimator_itself_with_feature_bookkeeping(estimator_name, cohort):
    X, y = cohort
    estimator = _make(estimator_name)

    assert estimator.fit(X, y) is estimator
    assert estimator.n_features_in_ == 7
    assert list(estimator.feature_names_in_) == [f"x{j}" for j in range(7)]
    assert estimator.predict(X).shape == (400,)


def test_array_input_fits_without_feature_names(estimator_name, cohort):
    X, y = cohort
    estimator = _make(estimator_name).fit(X.to_numpy(), y)

    assert estimator.n_features_in_ == 7
    assert not hasattr(estimator, "feature_names_in_")
    np.testing.assert_allclose(
        estimator.predict(X.to_numpy()), _make(estimator_name).fit(X, y).predict(X)
    )


def test_clone_keeps_parameters_and_refits_to_the_same_predictions(contract):
    X, y = contract.X, contract.y
    fitted = contract.make().fit(X, y)
    unfitted_copy = clone(fitted)

    assert unfitted_copy.get_params() == fitted.get_params()
    assert not hasattr(unfitted_copy, "n_features_in_")
    np.testing.assert_array_equal(unfitted_copy.fit(X, y).predict(X), fitted.predict(X))


def test_set_params_round_trips_through_get_params(estimator_name):
    estimator = _make(estimator_name)
    estimator.set_params(random_state=7)

    assert estimator.get_params()["random_state"] == 7
    assert clone(estimator).get_params() == estimator.get_params()


def test_fits_with_the_same_random_state_give_identical_predictions(estimator_name, cohort):
    X, y = cohort
    first = _make(estimator_name, random_state=3).fit(X, y).predict(X)
    second = _make(estimator_name, random_state=3).fit(X, y).predict(X)

    np.testing.assert_array_equal(first, second)


def test_pickled_estimator_predicts_the_same_risks_and_curves(contract):
    X, y = contract.X, contract.y
    fitted = contract.make().fit(X, y)
    restored = pickle.loads(pickle.dumps(fitted))

    np.testing.assert_array_equal(restored.predict(X), fitted.predict(X))
    np.testing.assert_array_equal(
        restored.predict_survival_function(X, return_array=True),
        fitted.predict_survival_function(X, return_array=True),
    )


def test_survival_curves_are_finite_bounded_and_non_increasing(contract):
    X, y = contract.X, contract.y
    estimator = contract.make().fit(X, y)

    survival = estimator.predict_survival_function(X, return_array=True)
    cumulative_hazard = estimator.predict_cumulative_hazard_function(X, return_array=True)

    assert survival.shape == (400, estimator.unique_times_.shape[0])
    assert np.isfinite(survival).all()
    assert survival.min() >= 0.0
    assert survival.max() <= 1.0
    assert np.all(np.diff(survival, axis=1) <= 0.0)
    assert np.all(np.diff(cumulative_hazard, axis=1) >= 0.0)
    np.testing.assert_allclose(survival, np.exp(-cumulative_hazard), rtol=1e-10, atol=1e-12)


def test_step_functions_match_the_array_at_unique_times(contract):
    X, y = contract.X, contract.y
    estimator = contract.make().fit(X, y)

    functions = estimator.predict_survival_function(X.iloc[:5])
    survival = estimator.predict_survival_function(X.iloc[:5], return_array=True)

    assert functions.shape == (5,)
    assert all(isinstance(function, StepFunction) for function in functions)
    np.testing.assert_allclose(
        np.vstack([function(estimator.unique_times_) for function in functions]), survival
    )


def test_higher_risk_score_means_lower_survival_at_the_median_time(contract):
    X, y = contract.X, contract.y
    estimator = contract.make().fit(X, y)
    median_time = np.median(y["time"])

    survival_at_median = [
        function(median_time) for function in estimator.predict_survival_function(X)
    ]
    correlation = spearmanr(estimator.predict(X), survival_at_median).statistic

    assert correlation <= MAX_RISK_SURVIVAL_RANK_CORRELATION[contract.name]


def test_score_is_harrells_c_of_the_risk_score(contract):
    X, y = contract.X, contract.y
    estimator = contract.make().fit(X.iloc[:300], y[:300])

    expected = concordance_index_censored(
        y["event"][300:], y["time"][300:], estimator.predict(X.iloc[300:])
    )[0]

    assert estimator.score(X.iloc[300:], y[300:]) == pytest.approx(expected, abs=1e-12)
    assert 0.6 < expected < 0.9


def test_nan_in_features_is_rejected_with_the_column_and_a_remedy(estimator_name, cohort):
    X, y = cohort
    with_missing = X.copy()
    with_missing.loc[[3, 9], "x2"] = np.nan

    with pytest.raises(NonFiniteFeatures, match=r"2 NaN .* 1 column\(s\): x2\. .*impute") as error:
        _make(estimator_name).fit(with_missing, y)
    assert isinstance(error.value, ModelError)
    assert isinstance(error.value, ValueError)

    fitted = _make(estimator_name).fit(X, y)
    with pytest.raises(NonFiniteFeatures, match="pd.isnull"):
        fitted.predict(with_missing)


def test_target_that_is_not_a_survival_array_is_rejected_with_a_remedy(contract):
    X, y = contract.X, contract.y
    expected = EvaluationInputError if contract.name == "published" else InvalidSurvivalTarget

    with pytest.raises(expected, match="Surv.from_arrays") as error:
        contract.make().fit(X, y["time"])
    assert isinstance(error.value, ValueError)


def test_penalized_cox_does_not_pick_the_least_penalised_alpha_among_many_noise_features():
    X, y = _simulate_cox_cohort(300, np.array([0.8, -0.6, 0.5, -0.4, 0.3]), n_noise=40, seed=0)
    estimator = PenalizedCox(random_state=0).fit(X, y)
    results = estimator.cv_results_
    same_mix = results["l1_ratio"] == estimator.l1_ratio_
    path_end = np.argmin(np.where(same_mix, results["alpha"], np.inf))
    # Folds whose path saturated early leave the smallest alphas without a CV deviance.
    scored = same_mix & np.isfinite(results["mean_cv_deviance"])
    least_penalised_scored = np.argmin(np.where(scored, results["alpha"], np.inf))

    assert estimator.alpha_ > 5 * results["alpha"][path_end]
    assert (
        results["mean_cv_deviance"][estimator.best_index_]
        < results["mean_cv_deviance"][least_penalised_scored] - 0.05
    )
    assert estimator.best_index_ == np.nanargmin(results["mean_cv_deviance"])
    assert results["n_nonzero_coef"][estimator.best_index_] < 45


def test_penalized_cox_final_model_predicts_with_the_chosen_alpha(cohort):
    X, y = cohort
    estimator = PenalizedCox(random_state=0).fit(X, y)
    coxnet = estimator.pipeline_[-1]

    assert coxnet.alphas_[-1] == estimator.alpha_
    assert coxnet.l1_ratio == estimator.l1_ratio_
    np.testing.assert_allclose(
        estimator.predict(X), coxnet.predict(estimator.pipeline_[0].transform(X.to_numpy()))
    )


def test_penalized_cox_parallel_folds_choose_the_same_model_as_sequential(cohort):
    X, y = cohort
    sequential = PenalizedCox(random_state=0).fit(X, y)
    parallel = PenalizedCox(random_state=0, n_jobs=2).fit(X, y)

    assert parallel.alpha_ == sequential.alpha_
    assert parallel.l1_ratio_ == sequential.l1_ratio_
    np.testing.assert_allclose(
        parallel.cv_results_["mean_cv_deviance"], sequential.cv_results_["mean_cv_deviance"]
    )


def test_penalized_cox_recovers_known_coefficients_on_the_original_scale():
    true_coef = np.array([0.7, -0.05, 4.0, 0.1])
    X, y = _simulate_cox_cohort(
        2000, true_coef, n_noise=3, loc=[0.0, 60.0, 1.0, 20.0], scale=[1.0, 10.0, 0.1, 5.0]
    )
    estimator = PenalizedCox(random_state=0).fit(X, y)

    np.testing.assert_array_equal(np.sign(estimator.coef_[:4]), np.sign(true_coef))
    np.testing.assert_allclose(estimator.coef_[:4], true_coef, rtol=0.2)
    assert np.all(np.abs(estimator.coef_[4:]) < 0.1)


def test_penalized_cox_risk_score_is_coef_times_centred_features(cohort):
    X, y = cohort
    estimator = PenalizedCox(random_state=0).fit(X, y)
    risk_score = estimator.predict(X)

    np.testing.assert_allclose(
        risk_score - risk_score.mean(),
        (X.to_numpy() - estimator.feature_means_) @ estimator.coef_,
        atol=1e-10,
    )


def test_tuned_params_refit_the_chosen_model_without_tuning_it_again(estimator_name, cohort):
    X, y = cohort
    tuned = _make(estimator_name).fit(X, y)
    refit = clone(tuned).set_params(**tuned.tuned_params()).fit(X, y)

    np.testing.assert_allclose(refit.predict(X), tuned.predict(X), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        refit.predict_survival_function(X, return_array=True),
        tuned.predict_survival_function(X, return_array=True),
        rtol=1e-10,
        atol=1e-12,
    )


def test_penalized_cox_with_a_fixed_path_runs_no_cross_validation(cohort):
    X, y = cohort
    tuned = _make("coxnet").fit(X, y)
    refit = PenalizedCox(**tuned.tuned_params()).fit(X.iloc[:300], y[:300])

    assert refit.cv_results_ is None
    assert refit.best_index_ is None
    assert (refit.alpha_, refit.l1_ratio_) == (tuned.alpha_, tuned.l1_ratio_)
    assert not np.allclose(refit.coef_, tuned.coef_)  # other rows, same penalty


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"alphas": (0.1, 0.2)}, "strictly decreasing"),
        ({"alphas": (0.1, -0.01)}, "positive"),
        ({"alphas": ()}, "non-empty"),
        ({"alphas": (0.1, 0.01), "l1_ratios": (0.5, 1.0)}, "must hold one value"),
    ],
)
def test_penalized_cox_rejects_a_path_it_cannot_fit(cohort, params, message):
    X, y = cohort

    with pytest.raises(InvalidEstimatorParameter, match=message):
        PenalizedCox(**params).fit(X, y)


def test_boosted_cox_tuned_params_fix_the_rounds_early_stopping_chose(cohort):
    X, y = cohort
    tuned = _make("xgboost").fit(X, y)

    assert tuned.tuned_params() == {
        "n_estimators": tuned.best_iteration_ + 1,
        "early_stopping_rounds": None,
    }


@pytest.mark.parametrize(("many_events", "folds"), [(10**9, 5), (1, 3)])
def test_penalized_cox_auto_cv_uses_three_folds_only_for_many_events(
    cohort, monkeypatch, many_events, folds
):
    import model.penalized

    X, y = cohort
    monkeypatch.setattr(model.penalized, "MANY_EVENTS", many_events)
    auto = PenalizedCox(cv="auto", random_state=0).fit(X, y)
    explicit = PenalizedCox(cv=folds, random_state=0).fit(X, y)

    np.testing.assert_array_equal(
        auto.cv_results_["mean_cv_deviance"], explicit.cv_results_["mean_cv_deviance"]
    )


def test_penalized_cox_rejects_a_cv_that_is_neither_auto_a_count_nor_a_splitter(cohort):
    X, y = cohort

    with pytest.raises(InvalidEstimatorParameter, match="`cv` must be 'auto'"):
        PenalizedCox(cv="five").fit(X, y)


COXNET_OVERFLOW = "Numerical error, because weights are too large. Consider increasing alpha."
"""What scikit-survival's Coxnet raises (an ArithmeticError) when its estimates overflow."""


def _overflowing_coxnet(self, X, y):
    raise ArithmeticError(COXNET_OVERFLOW)


@pytest.mark.parametrize("params", [{}, {"alphas": (0.1, 0.01), "l1_ratios": (0.5,)}])
def test_penalized_cox_turns_a_diverging_coxnet_into_a_model_error_that_says_what_to_check(
    cohort, monkeypatch, params
):
    X, y = cohort
    monkeypatch.setattr(CoxnetSurvivalAnalysis, "fit", _overflowing_coxnet)

    with pytest.raises(FitDiverged, match="weights are too large") as raised:
        PenalizedCox(random_state=0, **params).fit(X, y)

    assert isinstance(raised.value, ValueError)
    assert "duplicated patients" in str(raised.value)
    assert isinstance(raised.value.__cause__, ArithmeticError)


def test_penalized_cox_rejects_l1_ratios_outside_zero_to_one(cohort):
    X, y = cohort

    with pytest.raises(InvalidEstimatorParameter, match=r"`l1_ratios` must be .* \(0, 1\]"):
        PenalizedCox(l1_ratios=(0.0, 0.5)).fit(X, y)


def test_boosted_cox_early_stopping_picks_fewer_rounds_than_the_maximum_on_noise():
    rng = np.random.default_rng(5)
    X = pd.DataFrame(rng.normal(size=(200, 5)), columns=list("abcde"))
    y = Surv.from_arrays(rng.random(200) < 0.6, rng.exponential(size=200))
    estimator = BoostedCox(n_estimators=1000, random_state=0).fit(X, y)

    assert estimator.n_estimators_ < 100
    assert estimator.n_estimators_ == estimator.best_iteration_ + 1
    assert estimator.booster_.num_boosted_rounds() == estimator.n_estimators_


def test_boosted_cox_monotone_constraint_holds_with_other_features_fixed():
    rng = np.random.default_rng(8)
    X = pd.DataFrame(rng.normal(size=(600, 3)), columns=["ki67", "age", "noise"])
    u_shaped_risk = X["ki67"] ** 2 + 0.5 * X["age"]
    event_time = rng.exponential(np.exp(-u_shaped_risk))
    y = Surv.from_arrays(np.ones(600, dtype=bool), event_time)
    grid = np.linspace(-2.5, 2.5, 41)
    profiles = pd.DataFrame(
        {
            "ki67": np.tile(grid, 5),
            "age": np.repeat(X["age"].to_numpy()[:5], grid.size),
            "noise": np.repeat(X["noise"].to_numpy()[:5], grid.size),
        }
    )

    def risk_profiles(**params):
        estimator = BoostedCox(random_state=0, **params).fit(X, y)
        return estimator.predict(profiles).reshape(5, grid.size)

    constrained = risk_profiles(monotone_constraints={"ki67": 1})

    assert np.all(np.diff(constrained, axis=1) >= 0.0)
    assert np.any(np.diff(risk_profiles(), axis=1) < 0.0)
    np.testing.assert_array_equal(risk_profiles(monotone_constraints=(1, 0, 0)), constrained)


def test_boosted_cox_rejects_monotone_constraints_on_unknown_features(cohort):
    X, y = cohort

    with pytest.raises(InvalidEstimatorParameter, match=r"columns of `X`, but got \['ki67'\]"):
        BoostedCox(monotone_constraints={"ki67": 1}).fit(X, y)


def test_boosted_cox_rejects_zero_times_that_xgboost_cannot_encode(cohort):
    X, y = cohort
    with_zero = y.copy()
    with_zero["time"][0] = 0.0

    with pytest.raises(InvalidSurvivalTarget, match="smaller or equal to zero"):
        BoostedCox().fit(X, with_zero)


@pytest.fixture(scope="module")
def gbsg2_folds():
    X, y = load_gbsg2()
    X = encode_categorical(X).astype(float)
    y = Surv.from_arrays(y["cens"], y["time"])
    folds = list(KFold(n_splits=5, shuffle=True, random_state=0).split(X))
    return X, y, folds


@pytest.fixture(scope="module")
def lifelines_gbsg2_concordance(gbsg2_folds):
    X, y, folds = gbsg2_folds
    concordances = []
    for train, test in folds:
        frame = X.iloc[train].assign(time=y["time"][train], event=y["event"][train])
        fitter = CoxPHFitter().fit(frame, duration_col="time", event_col="event")
        risk_score = fitter.predict_partial_hazard(X.iloc[test]).to_numpy()
        concordances.append(
            concordance_index_censored(y["event"][test], y["time"][test], risk_score)[0]
        )
    return float(np.mean(concordances))


def test_lifelines_reference_concordance_on_gbsg2_is_in_the_published_range(
    lifelines_gbsg2_concordance,
):
    assert 0.66 < lifelines_gbsg2_concordance < 0.70


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_cross_validated_concordance_on_gbsg2_is_no_worse_than_lifelines_cox(
    name, gbsg2_folds, lifelines_gbsg2_concordance
):
    X, y, folds = gbsg2_folds
    concordances = [
        ESTIMATORS[name](random_state=0).fit(X.iloc[train], y[train]).score(X.iloc[test], y[test])
        for train, test in folds
    ]

    assert np.mean(concordances) >= lifelines_gbsg2_concordance - 0.01


def _partial_log_likelihood_by_double_loop(linear_predictor, event, time):
    """Breslow's partial log-likelihood, one event and one risk-set member at a time."""
    n_samples, n_predictors = linear_predictor.shape
    total = np.zeros(n_predictors)
    for k in range(n_predictors):
        for i in range(n_samples):
            if not event[i]:
                continue
            risk_set = 0.0
            for j in range(n_samples):
                if time[j] >= time[i]:
                    risk_set += np.exp(linear_predictor[j, k])
            total[k] += linear_predictor[i, k] - np.log(risk_set)
    return total


def test_the_breslow_partial_likelihood_equals_a_double_loop_on_tied_times():
    rng = np.random.default_rng(7)
    n_samples = 40
    time = rng.integers(1, 7, n_samples).astype(float)
    event = rng.random(n_samples) < 0.6
    # Tied events, and events tied with censorings, at the same time.
    time[:6], event[:6] = 3.0, [True, True, True, False, False, True]
    linear_predictor = np.column_stack(
        [np.zeros(n_samples), rng.normal(size=n_samples), 30.0 + 3.0 * rng.normal(size=n_samples)]
    )
    assert len(np.unique(time[event])) < event.sum()
    expected = _partial_log_likelihood_by_double_loop(linear_predictor, event, time)
    got = _breslow_partial_log_likelihood(linear_predictor, event, time)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-9)
    shuffled = rng.permutation(n_samples)
    np.testing.assert_allclose(
        _breslow_partial_log_likelihood(
            linear_predictor[shuffled], event[shuffled], time[shuffled]
        ),
        expected,
        rtol=1e-10,
        atol=1e-9,
    )


def test_auto_relaxation_refits_every_term_once_the_cohort_supports_them_all():
    # Strong effects and six noise columns in 2,000 subjects: the full model's heuristic
    # shrinkage factor is far above 0.9, so no term (not even the noise columns the lasso
    # drops here) is left out of the unpenalised refit whose covariance the delta-method
    # intervals use: a dropped term would count as known to be zero.
    X, y = _simulate_cox_cohort(2000, np.array([0.8, -0.6, 0.5]), n_noise=6, seed=3)
    assert not PenalizedCox(random_state=0).fit(X, y).selected_.all()
    relaxed = PenalizedCox(random_state=0, relax="auto").fit(X, y)
    full = fit_cox_coefficients(X.to_numpy(), y["event"], y["time"], ridge=RELAXED_RIDGE)

    assert relaxed.relaxed_
    assert relaxed.shrinkage_factor_ > 0.95
    assert relaxed.selected_.all()
    np.testing.assert_allclose(relaxed.coef_, full, rtol=1e-6, atol=1e-9)


def test_a_fit_that_refits_every_term_fits_no_penalised_path(monkeypatch):
    # The unpenalised refit replaces whatever the penalised path would choose, so the path
    # (and its cross-validation, most of the cost on large cohorts) is not fitted at all.
    X, y = _simulate_cox_cohort(2000, np.array([0.8, -0.6, 0.5]), n_noise=6, seed=3)

    def no_path(*args, **kwargs):
        raise AssertionError("the penalised path was fitted")

    monkeypatch.setattr(PenalizedCox, "_alpha_path", no_path)
    monkeypatch.setattr(PenalizedCox, "_cross_validate", no_path)
    for relax in ("auto", "all"):
        fitted = PenalizedCox(random_state=0, relax=relax).fit(X, y)
        assert fitted.relaxed_
        assert fitted.pipeline_ is None
        assert fitted.cv_results_ is None
        assert (fitted.alpha_, fitted.l1_ratio_) == (0.0, None)
        np.testing.assert_allclose(fitted.feature_means_, X.to_numpy().mean(axis=0))
        np.testing.assert_allclose(fitted.predict(X), X.to_numpy() @ fitted.coef_)


def test_a_refit_from_the_tuned_parameters_of_an_auto_relaxed_fit_keeps_every_term():
    # Bootstrap members and the fits on imputed copies refit `tuned_params()` on other rows:
    # they must fit the chosen model (every term, unpenalised), not the terms their own
    # penalised path keeps (the lasso drops noise columns here).
    X, y = _simulate_cox_cohort(2000, np.array([0.8, -0.6, 0.5]), n_noise=6, seed=3)
    tuned = PenalizedCox(random_state=0, relax="auto").fit(X, y).tuned_params()
    rows = np.random.default_rng(1).integers(0, len(X), len(X))
    X_other, y_other = X.iloc[rows], y[rows]
    refit = PenalizedCox(random_state=0, **tuned).fit(X_other, y_other)
    full = fit_cox_coefficients(
        X_other.to_numpy(), y_other["event"], y_other["time"], ridge=RELAXED_RIDGE
    )

    assert tuned["relax"] == "all"
    assert refit.selected_.all()
    np.testing.assert_allclose(refit.coef_, full, rtol=1e-6, atol=1e-9)


def test_auto_relaxation_keeps_the_penalised_fit_where_the_cohort_is_too_small():
    # 60 subjects, weak effects, 10 terms: the shrinkage factor is far below 0.9.
    X, y = _simulate_cox_cohort(60, np.array([0.3, -0.2]), n_noise=8, seed=4)
    auto = PenalizedCox(random_state=0, relax="auto").fit(X, y)
    penalised = PenalizedCox(random_state=0).fit(X, y)

    assert not auto.relaxed_
    assert auto.shrinkage_factor_ < MIN_SHRINKAGE_FACTOR
    np.testing.assert_allclose(auto.coef_, penalised.coef_)
    np.testing.assert_array_equal(auto.selected_, penalised.selected_)
