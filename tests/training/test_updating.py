"""Tests of model updating: the tests that choose a method, the methods, and the centres."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model.bundle import MONTH_GRID
from model.schema import ENDPOINTS, MODALITIES, encode
from training.synthetic import CohortSpec
from training.synthetic_centre import centre_spec, simulate_centre
from training.update_apply import scaled_booster_estimator, tail_start
from training.update_run import update_bundle
from training.updating import (
    ALPHA,
    expected_events,
    recalibration_test,
    revision_fit,
    revision_screen,
)
from training.validate import validate_cohort

from .updating_reference import reference_bundle


def _exponential_cohort(n, coef, hazard, seed):
    """Binary design, exponential event times with `hazard` at lp 0, uniform censoring."""
    rng = np.random.default_rng(seed)
    design = (rng.random((n, len(coef))) < 0.4).astype(float)
    lp = design @ np.asarray(coef, dtype=float)
    event_time = rng.exponential(1.0 / (hazard * np.exp(lp)))
    censor = rng.uniform(0, 30, n)
    return design, np.minimum(event_time, censor), event_time <= censor


def test_expected_events_interpolate_the_cumulative_hazard_at_each_patients_time():
    survival = np.exp(-0.1 * MONTH_GRID)[None, :].repeat(2, axis=0)

    expected = expected_events(survival, np.array([10.5, 200.0]))

    np.testing.assert_allclose(expected, [1.05, 12.0], rtol=1e-9)


def test_a_model_that_is_right_is_kept():
    design, months, event = _exponential_cohort(400, [0.5, -0.4], 0.05, seed=1)
    lp = design @ np.array([0.5, -0.4])

    method, tests, ratio = recalibration_test(event, 0.05 * months * np.exp(lp), lp)

    assert method == 0
    assert tests[0]["p_value"] > ALPHA
    assert 0.85 < ratio < 1.15


def test_a_baseline_hazard_times_1_5_is_re_estimated_without_a_slope():
    design, months, event = _exponential_cohort(400, [0.5, -0.4], 0.075, seed=2)
    lp = design @ np.array([0.5, -0.4])

    method, tests, ratio = recalibration_test(event, 0.05 * months * np.exp(lp), lp)

    assert method == 1
    assert tests[0]["p_value"] < 1e-4
    assert 1.35 < ratio < 1.65
    assert not tests[1]["rejected"]


def test_a_linear_predictor_twice_too_spread_gets_a_slope():
    design, months, event = _exponential_cohort(600, [0.6, -0.6, 0.6], 0.1, seed=3)
    lp = design @ np.array([0.6, -0.6, 0.6])

    method, tests, _ = recalibration_test(event, 0.05 * months * np.exp(2 * lp), 2 * lp)

    assert method == 2
    assert [t["rejected"] for t in tests] == [True, True]


def test_the_revision_screen_flags_only_the_term_whose_effect_departs():
    design, months, event = _exponential_cohort(600, [0.5, -0.5, 0.3], 0.05, seed=4)
    original = np.array([0.5, 0.8, 0.3])

    flagged, tests = revision_screen(design, event, months, design @ original, ("a", "b", "c"))

    assert flagged.tolist() == [False, True, False]
    assert tests[0]["rejected"]
    assert tests[1]["term"] == "b"


def test_the_revision_screen_flags_centres_whose_effects_agree_at_most_at_its_level():
    flagged = []
    for seed in range(200):
        design, months, event = _exponential_cohort(200, [0.5, -0.5, 0.3], 0.05, seed=seed)
        offset = design @ np.array([0.5, -0.5, 0.3])
        flagged.append(revision_screen(design, event, months, offset, ("a", "b", "c"))[0].any())

    assert np.mean(flagged) <= ALPHA + 0.02


def test_a_revised_term_is_shrunk_toward_its_original_value_not_toward_zero():
    design, months, event = _exponential_cohort(300, [0.5, -0.5, 0.3], 0.05, seed=6)
    original = np.array([0.5, 0.8, 0.3])
    from model.cox_inference import fit_cox_coefficients

    theta, covariance, penalty = revision_fit(
        design @ original, design, event, months, np.array([False, True, False])
    )
    revised = theta[0] * original[1] + theta[1]
    unpenalised = fit_cox_coefficients(design, event, months)[1]

    assert penalty > 0
    assert covariance.shape == (2, 2)
    assert unpenalised < revised < original[1]
    assert revised < 0.2  # the data move it most of the way from +0.8 toward the truth, -0.5


def test_a_centre_with_baseline_hazard_times_k_has_k_times_the_cumulative_hazard():
    reference = CohortSpec.load()
    centre = centre_spec(hazard_multiplier=1.5, reference=reference)
    for endpoint in ENDPOINTS:
        (shape, scale), (centre_shape, centre_scale) = (
            reference.baseline(endpoint),
            centre.baseline(endpoint),
        )
        months = np.array([6.0, 24.0, 60.0])
        np.testing.assert_allclose(
            (months / centre_scale) ** centre_shape, 1.5 * (months / scale) ** shape, rtol=1e-12
        )


def test_a_reversed_effect_is_negated_for_progression_and_death_and_nothing_else():
    reference = CohortSpec.load()
    centre = centre_spec(effect_multipliers={"SIRT_in_G2": -1.0}, reference=reference)
    for endpoint in ENDPOINTS:
        before, after = reference.log_hazard_ratios(endpoint), centre.log_hazard_ratios(endpoint)
        assert after["SIRT_in_G2"] == pytest.approx(-before["SIRT_in_G2"])
        assert after.drop("SIRT_in_G2").equals(before.drop("SIRT_in_G2"))


def test_a_centres_case_mix_and_modality_policy_are_those_asked():
    spec = centre_spec(
        grade_shares={"G1": 0.2, "G2": 0.5, "G3": 0.3},
        burden_shares={"<25": 0.1, "25-50": 0.2, "50-75": 0.3, ">75": 0.4},
        modality_log_odds_shift={"SIRT": 1.0},
    )
    reference = simulate_centre(4000, 8, centre_spec())
    cohort = simulate_centre(4000, 8, spec)

    shares = cohort["who_grade"].value_counts(normalize=True)
    assert shares["G1"] == pytest.approx(0.2, abs=0.02)
    assert shares["G3"] == pytest.approx(0.3, abs=0.02)
    assert (cohort["tumor_burden_percent"] > 75).mean() == pytest.approx(0.4, abs=0.03)
    sirt, sirt_before = (c["modality"].eq("SIRT").mean() for c in (cohort, reference))
    assert sirt > sirt_before + 0.1
    assert cohort["patient_id"].str.startswith("LOCAL-8-").all()
    assert cohort["patient_id"].is_unique


def test_a_centre_with_an_unknown_design_column_is_rejected_with_the_allowed_ones():
    with pytest.raises(ValueError, match="must name design columns .*SIRT_in_G2"):
        centre_spec(effect_multipliers={"SIRT_in_G4": -1.0})
    with pytest.raises(ValueError, match="grade_shares must give"):
        centre_spec(grade_shares={"G1": 1.0})


def test_tail_start_is_the_last_month_with_ten_patients_at_risk():
    months = np.array([1.0] * 5 + [13.5] * 10 + [30.0] * 3)

    assert MONTH_GRID[tail_start(months)] == 13.0


def test_a_scaled_booster_has_the_original_margin_times_the_factor():
    estimator = reference_bundle().models["os"]["xgboost"].full.estimator
    design = encode(simulate_centre(200, 3, centre_spec())).to_numpy(dtype=float)

    scaled = scaled_booster_estimator(estimator, 0.6)

    original = estimator.booster_.inplace_predict(design, predict_type="margin")
    np.testing.assert_allclose(
        scaled.booster_.inplace_predict(design, predict_type="margin"), 0.6 * original, atol=1e-4
    )


def _ici(bundle, test: pd.DataFrame, endpoint: str) -> float:
    design = encode(test).to_numpy(dtype=float)
    predicted = bundle.models[endpoint]["coxnet"].survival(design)[:, 24]
    received = test["modality"].to_numpy()
    truth = np.select(
        [received == m for m in MODALITIES],
        [test[f"true_surv_{endpoint}_{m}_24"].to_numpy() for m in MODALITIES],
    )
    return float(np.mean(np.abs(predicted - truth)))


def test_a_centre_equal_to_the_reference_keeps_the_model_unchanged():
    bundle = reference_bundle()
    local = validate_cohort(simulate_centre(100, 0, centre_spec()))

    updated, decisions = update_bundle(bundle, local, cohort_label="synthetic")

    for endpoint in ENDPOINTS:
        assert decisions[endpoint]["coxnet"].method == 0
        assert updated.models[endpoint]["coxnet"] is bundle.models[endpoint]["coxnet"]
    assert updated.metadata["updating"]["n_local"] == 100


def test_a_baseline_hazard_times_two_is_re_estimated_and_halves_the_calibration_error():
    bundle = reference_bundle()
    spec = centre_spec(hazard_multiplier=2.0)
    local = validate_cohort(simulate_centre(200, 1, spec))
    test = simulate_centre(1000, 99, spec, centre="TEST")

    updated, decisions = update_bundle(bundle, local, cohort_label="synthetic")

    for endpoint in ENDPOINTS:
        assert decisions[endpoint]["coxnet"].method in (1, 2)
        assert decisions[endpoint]["coxnet"].tests[0]["observed_over_expected"] > 1.5
        before, after = _ici(bundle, test, endpoint), _ici(updated, test, endpoint)
        assert before > 0.08
        assert after < 0.5 * before
    card = updated.metadata["updating"]
    assert card["local_events"]["os"] == int(local["os_event"].sum())
    assert set(card["paths"]["hpfs"]) == {"coxnet", "xgboost"}


def test_a_reversed_sirt_effect_in_g2_is_revised_and_the_comparison_for_g2_turns():
    bundle = reference_bundle()
    spec = centre_spec(effect_multipliers={"SIRT_in_G2": -1.0})
    local = validate_cohort(simulate_centre(400, 2, spec))

    updated, decisions = update_bundle(bundle, local, cohort_label="synthetic")

    decision = decisions["hpfs"]["coxnet"]
    assert decision.method >= 3
    assert "SIRT_in_G2" in decision.revised
    assert decisions["hpfs"]["xgboost"].method <= 2
    g2 = local[local["who_grade"] == "G2"].iloc[:1]
    survival = {
        m: updated.models["hpfs"]["coxnet"].survival(encode(g2, m).to_numpy(dtype=float))[0, 24]
        for m in ("SIRT", "TACE")
    }
    original = {
        m: bundle.models["hpfs"]["coxnet"].survival(encode(g2, m).to_numpy(dtype=float))[0, 24]
        for m in ("SIRT", "TACE")
    }
    assert original["SIRT"] > original["TACE"]
    assert survival["SIRT"] < survival["TACE"]


def test_an_updated_bundle_serves_a_prognosis_with_intervals_and_explanations():
    from model.predictor import Predictor
    from model.schema import Patient

    bundle = reference_bundle()
    local = validate_cohort(simulate_centre(200, 1, centre_spec(hazard_multiplier=2.0)))
    updated, _ = update_bundle(bundle, local, cohort_label="synthetic")
    patient = Patient(
        age_years=64, who_grade="G2", tumor_burden_percent=40, primary_site="pancreas",
        prior_hepatic_treatment=True, extrahepatic_metastases=False, somatostatin_analog=True,
        biologic_therapy=False, cytotoxic_chemotherapy=False, planned_modality="SIRT",
    )  # fmt: skip

    before = Predictor(bundle).prognosis(patient)
    after = Predictor(updated).prognosis(patient)

    for endpoint in ENDPOINTS:
        median = after[endpoint]["median_months"]
        assert median["lower"] < median["value"] < median["upper"]
        assert median["value"] < before[endpoint]["median_months"]["value"]
        assert len(after[endpoint]["modalities"]) == 3
        assert after[endpoint]["explanation"]


def test_the_baseline_shape_test_rejects_a_local_hazard_that_doubles_only_late():
    from training.updating import baseline_shape_test

    rng = np.random.default_rng(9)
    unit, censor, split = rng.exponential(size=800), rng.uniform(0.1, 40, 800), 20.0
    same = unit / 0.02
    doubled_late = np.where(unit < 0.4, unit / 0.02, split + (unit - 0.4) / 0.04)

    def observed(latent):
        months = np.minimum(latent, censor)
        return latent <= censor, months, 0.02 * months, 0.02 * np.minimum(months, split)

    kept = baseline_shape_test(*observed(same), split)
    changed = baseline_shape_test(*observed(doubled_late), split)

    assert kept["p_value"] > ALPHA
    assert changed["p_value"] < 1e-3
    assert changed["split_month"] == 20.0


def test_a_proportional_baseline_update_keeps_the_original_shape():
    bundle = reference_bundle()
    local = validate_cohort(simulate_centre(200, 1, centre_spec(hazard_multiplier=2.0)))

    updated, decisions = update_bundle(bundle, local, cohort_label="synthetic")

    decision = decisions["os"]["coxnet"]
    assert decision.baseline == "proportional"
    (before,), (after,) = (
        m["coxnet"].components for m in (bundle.models["os"], updated.models["os"])
    )
    ratio = after.cumulative_hazard[1:] / before.cumulative_hazard[1:]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)
    assert 1.5 < ratio[0] < 2.6


def test_a_local_cohort_with_missing_predictors_is_imputed_and_the_update_pooled():
    bundle = reference_bundle()
    local = simulate_centre(200, 1, centre_spec(hazard_multiplier=2.0))
    rng = np.random.default_rng(0)
    local.loc[rng.random(200) < 0.2, "tumor_burden_percent"] = np.nan
    local["somatostatin_analog"] = local["somatostatin_analog"].astype(object)
    local.loc[rng.random(200) < 0.1, "somatostatin_analog"] = None
    local = validate_cohort(local)

    updated, decisions = update_bundle(bundle, local, cohort_label="synthetic")

    record = updated.metadata["missing_data"]
    assert record["n_incomplete"] == int(
        local[["tumor_burden_percent", "somatostatin_analog"]].isna().any(axis=1).sum()
    )
    assert "Rubin" in updated.metadata["updating"]["imputation"]
    assert decisions["os"]["coxnet"].method in (1, 2)
    for endpoint in ENDPOINTS:
        for component in updated.models[endpoint]["coxnet"].components:
            assert np.isfinite(component.cumulative_hazard).all()
            assert np.isfinite(component.covariance).all()
