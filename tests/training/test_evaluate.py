"""Tests for training.evaluate: metrics against the truth, Table 1, IPTW and the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sksurv.metrics import concordance_index_censored, concordance_index_ipcw
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from model.schema import MODALITIES
from training.evaluate import (
    DECISION_HORIZON,
    NOT_FOR_CLINICAL_USE,
    PAIRWISE_C_MAX_ROWS,
    SYNTHETIC_WARNING,
    PublishedCox,
    calibration,
    cohort_analyses,
    decision_curve,
    harrell_c,
    hazard_ratio_table,
    kaplan_meier_at,
    kaplan_meier_by,
    modality_effect,
    null_model_prediction,
    oracle_risk,
    oracle_survival,
    published_log_hazard_ratios,
    survival_metrics,
    survival_on_grid,
    to_jsonable,
    true_marginal_hazard_ratio,
    uno_c,
    write_report,
)
from training.evaluate.kaplan_meier import kaplan_meier_survival_at
from training.exceptions import EvaluationInputError, MissingTruthError
from training.synthetic import TRUTH_MONTHS, CohortSpec, simulate_cohort

TRAIN_SEED, TEST_SEED, TABLE_SEED, CONFOUNDED_SEED = 101, 102, 103, 104
GRID = np.arange(1.0, 121.0)


def outcomes(cohort: pd.DataFrame, endpoint: str) -> np.ndarray:
    return Surv.from_arrays(cohort[f"{endpoint}_event"].astype(bool), cohort[f"{endpoint}_months"])


@pytest.fixture(scope="module")
def spec() -> CohortSpec:
    return CohortSpec.load()


@pytest.fixture(scope="module")
def train_cohort() -> pd.DataFrame:
    return simulate_cohort(5000, seed=TRAIN_SEED)


@pytest.fixture(scope="module")
def test_cohort() -> pd.DataFrame:
    return simulate_cohort(5000, seed=TEST_SEED)


@pytest.fixture(scope="module")
def os_metrics(spec, train_cohort, test_cohort) -> dict[str, dict]:
    """OS metrics of the oracle, the published model, Kaplan-Meier and a random risk."""
    y_train, y_test = outcomes(train_cohort, "os"), outcomes(test_cohort, "os")
    published = PublishedCox(endpoint="os", spec=spec).fit(train_cohort, y_train)
    km_risk, km_survival = null_model_prediction(y_train, GRID, len(test_cohort))
    random_risk = np.random.default_rng(0).normal(size=len(test_cohort))
    predictions = {
        "oracle": (
            oracle_risk(test_cohort, "os"),
            oracle_survival(test_cohort, "os", GRID, spec),
        ),
        "published": (
            published.predict(test_cohort),
            survival_on_grid(published.predict_survival_function(test_cohort), GRID),
        ),
        "kaplan_meier": (km_risk, km_survival),
        "random": (random_risk, km_survival),
    }
    return {
        name: survival_metrics(y_train, y_test, risk, survival, times=GRID)
        for name, (risk, survival) in predictions.items()
    }


def test_oracle_harrell_c_beats_a_random_risk_and_the_published_model(os_metrics):
    oracle = os_metrics["oracle"]["harrell_c"]
    assert os_metrics["random"]["harrell_c"] == pytest.approx(0.5, abs=0.03)
    assert 0.75 < oracle < 0.88
    assert oracle > os_metrics["random"]["harrell_c"] + 0.2
    assert oracle > os_metrics["published"]["harrell_c"] - 0.01
    assert os_metrics["oracle"]["uno_c"] == pytest.approx(oracle, abs=0.03)


def test_oracle_calibration_slope_at_24_months_is_close_to_one(os_metrics):
    assert 0.85 <= os_metrics["oracle"]["horizons"]["24"]["calibration_slope"] <= 1.15


def test_oracle_integrated_brier_score_is_lower_than_kaplan_meier_without_covariates(os_metrics):
    assert os_metrics["oracle"]["ibs"] < 0.8 * os_metrics["kaplan_meier"]["ibs"]
    assert os_metrics["oracle"]["ibs_range"] == os_metrics["kaplan_meier"]["ibs_range"]


def test_oracle_calibration_table_agrees_with_kaplan_meier_in_every_decile(os_metrics):
    table = pd.DataFrame(os_metrics["oracle"]["horizons"]["24"]["calibration"])
    assert len(table) == 10
    assert table["n"].sum() == 5000
    assert (table["observed"] - table["predicted"]).abs().max() < 0.06


def test_kaplan_meier_reference_has_no_slope_and_says_why(os_metrics):
    km = os_metrics["kaplan_meier"]
    assert km["harrell_c"] == 0.5
    assert math.isnan(km["horizons"]["24"]["calibration_slope"])
    assert "must vary between patients" in km["skipped"]["calibration_slope_24"]


def test_horizons_beyond_the_test_follow_up_are_skipped_with_a_reason(train_cohort, test_cohort):
    y_train = outcomes(train_cohort, "os")
    time, event = test_cohort["os_months"].to_numpy(), test_cohort["os_event"].to_numpy(bool)
    y_short = Surv.from_arrays(event & (time <= 30.0), np.minimum(time, 30.0))
    metrics = survival_metrics(
        y_train,
        y_short,
        oracle_risk(test_cohort, "os"),
        oracle_survival(test_cohort, "os", GRID),
        times=GRID,
    )
    assert sorted(metrics["horizons"]) == ["12", "24"]
    assert metrics["skipped"]["horizon_36"].startswith("beyond the test follow-up")
    assert metrics["skipped"]["horizon_60"].startswith("beyond the test follow-up")
    assert metrics["uno_c_tau"] <= 30.0


def test_survival_metrics_rejects_a_survival_matrix_of_the_wrong_shape(train_cohort, test_cohort):
    y = outcomes(test_cohort, "os")
    with pytest.raises(EvaluationInputError, match=r"`survival` must have shape \(5000, 120\)"):
        survival_metrics(y, y, np.zeros(5000), np.ones((5000, 4)), times=GRID)


def test_net_benefit_tends_to_the_km_event_prevalence_and_treat_none_is_zero(test_cohort):
    y = outcomes(test_cohort, "os")
    survival_24 = oracle_survival(test_cohort, "os", [DECISION_HORIZON])[:, 0]
    curve = decision_curve(y, 1.0 - survival_24, thresholds=[1e-9, 0.05, 0.2, 0.5])
    prevalence = 1.0 - kaplan_meier_at(y["event"], y["time"], DECISION_HORIZON)[0]
    assert curve["prevalence"] == pytest.approx(prevalence)
    assert 0.1 < prevalence < 0.4
    assert curve["net_benefit_model"][0] == pytest.approx(prevalence, abs=1e-6)
    assert curve["net_benefit_all"][0] == pytest.approx(prevalence, abs=1e-6)
    assert curve["net_benefit_none"] == [0.0] * 4
    # A good model beats treating everyone once the threshold makes false positives costly.
    assert curve["net_benefit_model"][2] > curve["net_benefit_all"][2]


def test_published_model_uses_only_table1_hazard_ratios(spec, train_cohort):
    coefficients = published_log_hazard_ratios("os", spec)
    assert coefficients["age_decades_from_60"] == 0.0
    assert coefficients["burden_gt_75"] == pytest.approx(math.log(5.08))
    assert coefficients["SIRT_in_G3"] == pytest.approx(math.log(10.02))
    model = PublishedCox(endpoint="os", spec=spec).fit(train_cohort, outcomes(train_cohort, "os"))
    curves = model.predict_survival_function(train_cohort.iloc[:3], return_array=True)
    assert curves.shape == (3, len(model.unique_times_))
    assert (np.diff(curves, axis=1) <= 0).all()


def test_oracle_needs_the_generator_truth_columns(test_cohort):
    real_looking = test_cohort.drop(columns=[c for c in test_cohort if c.startswith("true_")])
    with pytest.raises(MissingTruthError, match="true_lp_os"):
        oracle_risk(real_looking, "os")


def test_the_hpfs_oracle_is_the_composite_survival_under_the_received_modality(spec, test_cohort):
    survival = oracle_survival(test_cohort, "hpfs", TRUTH_MONTHS, spec)
    codes = pd.Categorical(test_cohort["modality"], categories=MODALITIES).codes
    for column, month in enumerate(TRUTH_MONTHS):
        published = [test_cohort[f"true_surv_hpfs_{m}_{month}"] for m in MODALITIES]
        np.testing.assert_allclose(survival[:, column], np.choose(codes, published), rtol=1e-12)
    risk = oracle_risk(test_cohort, "hpfs", spec)
    assert (np.diff(survival[np.argsort(risk), 1]) <= 1e-12).all()


def test_the_hpfs_oracle_agrees_with_kaplan_meier_of_progression_or_death(spec, test_cohort):
    y = outcomes(test_cohort, "hpfs")
    horizons = [6.0, 12.0, DECISION_HORIZON]
    observed = np.array([kaplan_meier_at(y["event"], y["time"], month) for month in horizons])
    predicted = oracle_survival(test_cohort, "hpfs", horizons, spec).mean(axis=0)
    assert ((observed[:, 1] < predicted) & (predicted < observed[:, 2])).all()
    shape, scale = spec.baseline("hpfs")
    relative = np.exp(test_cohort["true_lp_hpfs"].to_numpy())[:, None]
    progression_only = np.exp(-relative * (np.array(horizons[:2]) / scale) ** shape).mean(axis=0)
    assert (progression_only > observed[:2, 2] + 0.03).all()


def test_the_hpfs_oracle_needs_the_death_log_hazard_too(test_cohort):
    without_death = test_cohort.drop(columns=["true_lp_os"])
    with pytest.raises(MissingTruthError, match="true_lp_os"):
        oracle_survival(without_death, "hpfs", [12.0])


@pytest.fixture(scope="module")
def large_cohort() -> pd.DataFrame:
    # 10,000 patients put the burden >75 % log hazard ratio's standard error near 0.05, so the
    # ±0.15 tolerance below is about three standard errors rather than two.
    return simulate_cohort(10_000, seed=TABLE_SEED)


@pytest.fixture(scope="module")
def os_table(spec, large_cohort) -> pd.DataFrame:
    return hazard_ratio_table(large_cohort, "os", spec).set_index("feature")


def test_multivariate_table_recovers_the_burden_above_75_percent_os_hazard_ratio(os_table):
    assert math.log(os_table.loc["burden_gt_75", "multivariate_hr"]) == pytest.approx(
        math.log(5.08), abs=0.15
    )
    assert os_table.loc["burden_gt_75", "published_hr"] == 5.08
    assert math.isnan(os_table.loc["age_decades_from_60", "published_hr"])


def test_univariate_g3_hazard_ratio_exceeds_the_multivariate_one_as_in_the_paper(os_table):
    g3 = os_table.loc["grade_G3"]
    assert g3["univariate_hr"] > 2.0 * g3["multivariate_hr"]
    assert g3["univariate_lower"] < g3["univariate_hr"] < g3["univariate_upper"]
    assert g3["multivariate_p"] < 0.05


def test_hazard_ratio_table_never_reads_the_true_columns(spec, test_cohort):
    cohort = test_cohort.iloc[:2000]
    shuffled = cohort.copy()
    rng = np.random.default_rng(7)
    for column in [c for c in cohort if c.startswith("true_")]:
        shuffled[column] = rng.permutation(shuffled[column].to_numpy())
    expected = hazard_ratio_table(cohort, "hpfs", spec)
    pd.testing.assert_frame_equal(hazard_ratio_table(shuffled, "hpfs", spec), expected)
    without = cohort.drop(columns=[c for c in cohort if c.startswith("true_")])
    pd.testing.assert_frame_equal(hazard_ratio_table(without, "hpfs", spec), expected)


@pytest.fixture(scope="module")
def confounded_cohort() -> pd.DataFrame:
    return simulate_cohort(5000, seed=CONFOUNDED_SEED)


@pytest.fixture(scope="module")
def sirt_vs_tace_os(spec, confounded_cohort) -> dict:
    effect = modality_effect(confounded_cohort, "os", ("SIRT", "TACE"))
    effect["true"] = true_marginal_hazard_ratio(confounded_cohort, "os", ("SIRT", "TACE"), spec)
    effect["true_observed"] = true_marginal_hazard_ratio(
        confounded_cohort, "os", ("SIRT", "TACE"), spec, follow_up="observed"
    )
    return effect


def test_iptw_sirt_vs_tace_os_hazard_ratio_is_closer_to_the_truth_than_unadjusted(sirt_vs_tace_os):
    truth = math.log(sirt_vs_tace_os["true"])
    unadjusted_error = abs(math.log(sirt_vs_tace_os["unadjusted"]["hr"]) - truth)
    iptw_error = abs(math.log(sirt_vs_tace_os["iptw"]["hr"]) - truth)
    assert iptw_error < unadjusted_error
    # Confounding by indication: SIRT goes to worse-prognosis patients, so the naive ratio is
    # biased upwards.
    assert sirt_vs_tace_os["unadjusted"]["hr"] > sirt_vs_tace_os["iptw"]["hr"]


def test_iptw_estimate_matches_the_true_effect_under_the_cohorts_own_follow_up(sirt_vs_tace_os):
    # The marginal hazards are not proportional (SIRT helps in G1-G2, harms in G3), so the Cox
    # estimand depends on follow-up; under the cohort's own censoring IPTW is unbiased.
    iptw = math.log(sirt_vs_tace_os["iptw"]["hr"])
    assert iptw == pytest.approx(math.log(sirt_vs_tace_os["true_observed"]), abs=0.12)
    ess = sirt_vs_tace_os["effective_sample_size"]["total"]
    assert 0.5 * (sirt_vs_tace_os["n_treated"] + sirt_vs_tace_os["n_reference"]) < ess


def test_iptw_sirt_vs_tace_hpfs_matches_the_true_progression_or_death_effect(
    spec, confounded_cohort
):
    effect = modality_effect(confounded_cohort, "hpfs", ("SIRT", "TACE"))
    truth = true_marginal_hazard_ratio(
        confounded_cohort, "hpfs", ("SIRT", "TACE"), spec, follow_up="observed"
    )
    assert math.log(effect["iptw"]["hr"]) == pytest.approx(math.log(truth), abs=0.12)


def test_kaplan_meier_by_grade_orders_the_medians_and_rejects_equality(test_cohort):
    result = kaplan_meier_by(test_cohort, "os", "who_grade")
    medians = [result["groups"][g]["median"] for g in ("G1", "G2", "G3")]
    assert medians[0] > medians[1] > medians[2]
    assert result["logrank_p"] < 1e-10
    assert result["groups"]["G1"]["at_risk"][0] == result["groups"]["G1"]["n"]


def test_report_is_self_contained_with_the_warning_and_its_json_has_no_nan(
    tmp_path, os_metrics, spec, train_cohort
):
    results = {
        "cohort_label": "synthetic",
        "model_tag": "netprog:test",
        "n_patients": 1500,
        "endpoints": {
            "os": {"models": os_metrics, **cohort_analyses(train_cohort.iloc[:1500], "os", spec)}
        },
    }
    html_path, json_path = tmp_path / "report.html", tmp_path / "report.json"
    write_report(results, html_path, json_path)

    page = html_path.read_text(encoding="utf-8")
    assert "http://" not in page
    assert "https://" not in page
    assert "<script" not in page
    assert "<link" not in page
    assert SYNTHETIC_WARNING in page
    assert NOT_FOR_CLINICAL_USE in page
    assert page.count("data:image/png;base64,") == 5  # calibration, decision, 3 Kaplan-Meier

    def refuse(constant):
        raise AssertionError(f"JSON holds {constant}")

    with open(json_path, encoding="utf-8") as handle:
        loaded = json.load(handle, parse_constant=refuse)
    assert loaded == to_jsonable(results)
    assert (
        loaded["endpoints"]["os"]["models"]["kaplan_meier"]["horizons"]["24"]["calibration_slope"]
        is None
    )


def _tied_outcomes(n: int, seed: int, *, rounded: bool):
    """Outcomes with ties in time (events and censorings on the same day) and in risk."""
    rng = np.random.default_rng(seed)
    event_time, censoring = rng.exponential(10, n), rng.exponential(15, n)
    time = np.minimum(event_time, censoring)
    risk = rng.normal(size=n) - time / 20
    if rounded:
        time, risk = np.maximum(np.round(time), 0.5), np.round(risk, 1)
    return Surv.from_arrays(event_time <= censoring, time), risk


@pytest.mark.parametrize(("n", "rounded"), [(500, True), (3000, True), (3000, False)])
def test_uno_c_equals_sksurvs_concordance_index_ipcw_with_ties_in_time_and_risk(n, rounded):
    y, risk = _tied_outcomes(n, seed=n, rounded=rounded)
    tau = float(np.quantile(y["time"], 0.8))

    expected = concordance_index_ipcw(y, y, risk, tau)[0]

    assert uno_c(y, y, risk, tau) == pytest.approx(expected, abs=1e-12)
    assert uno_c(y, y, -risk, tau) == pytest.approx(1 - expected, abs=1e-12)


def test_harrell_c_equals_sksurvs_on_both_sides_of_the_algorithm_switch():
    for n in (PAIRWISE_C_MAX_ROWS, PAIRWISE_C_MAX_ROWS + 1):
        y, risk = _tied_outcomes(n, seed=7, rounded=True)
        expected = concordance_index_censored(y["event"], y["time"], risk)[0]

        assert harrell_c(y["event"], y["time"], risk) == pytest.approx(expected, abs=1e-12)


def test_kaplan_meier_survival_alone_is_kaplan_meier_at_without_its_interval():
    rng = np.random.default_rng(5)
    for case in range(60):
        n = int(rng.integers(1, 300))
        time = np.round(rng.exponential(20.0, n), case % 2)  # ties in half of the cases
        event = rng.random(n) < rng.random()
        for horizon in (0.1, 12.0, 24.0, 60.0, 1000.0):
            expected = kaplan_meier_at(event, time, horizon)[0]
            assert kaplan_meier_survival_at(event, time, horizon) == pytest.approx(
                expected, abs=0, nan_ok=True
            )


def test_kaplan_meier_at_is_sksurvs_estimate_and_log_log_interval():
    rng = np.random.default_rng(11)
    for case in range(300):
        n = int(rng.integers(1, 80))
        time = np.round(rng.exponential(10.0, n), case % 2) + 0.5  # ties in half of the cases
        event = rng.random(n) < rng.random()
        times, survival, interval = kaplan_meier_estimator(event, time, conf_type="log-log")
        for horizon in (0.1, 6.0, 12.0, 24.0, 1000.0):
            index = int(np.searchsorted(times, horizon, side="right")) - 1
            if horizon > times[-1] and survival[-1] > 0:
                expected = (math.nan,) * 3
            elif index < 0:
                expected = (1.0, 1.0, 1.0)
            else:
                bounds = np.nan_to_num(interval[:, index], nan=survival[index])
                expected = (survival[index], *bounds)
            np.testing.assert_allclose(
                kaplan_meier_at(event, time, horizon), expected, rtol=1e-12, atol=1e-14
            )


def test_the_decision_curve_counts_its_subsets_without_their_intervals(monkeypatch, test_cohort):
    y = outcomes(test_cohort, "os")
    risk = 1 / (1 + np.exp(-oracle_risk(test_cohort, "os")))
    expected = decision_curve(y, risk)

    def with_interval(*_):
        raise AssertionError("the decision curve computed Kaplan-Meier intervals it does not use")

    monkeypatch.setattr(calibration, "kaplan_meier_at", with_interval)

    assert decision_curve(y, risk) == expected


def test_the_published_models_survival_at_times_is_its_step_functions_on_the_grid(
    spec, train_cohort, test_cohort
):
    model = PublishedCox(endpoint="hpfs", spec=spec).fit(
        train_cohort, outcomes(train_cohort, "hpfs")
    )
    rows = test_cohort.iloc[:300]
    grid = np.concatenate([[0.0, 0.5], GRID, [500.0]])  # before, inside and past the domain

    at_times = model.survival_at(rows, grid)

    expected = survival_on_grid(model.predict_survival_function(rows), grid)
    assert np.array_equal(at_times, expected)
