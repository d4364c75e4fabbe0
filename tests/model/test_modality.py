"""Tests of ``model.modality``: the same patient under TACE, TAE and SIRT, and its support."""

from __future__ import annotations

import numpy as np
import pytest

from model.bundle import MONTH_GRID
from model.modality import (
    COMPARISON_CAVEAT,
    median_months,
    percentile_interval,
    restricted_mean,
)
from model.predictor import Predictor
from model.schema import ENDPOINTS, MODALITIES
from model.support import MIN_PROPENSITY, MIN_SIMILAR_TREATED


def _entry(block, modality):
    return next(m for m in block["modalities"] if m["modality"] == modality)


def _survival(entry):
    return np.array([p["survival"] for p in entry["curve"]])


@pytest.mark.parametrize("planned", MODALITIES)
def test_rmst_differences_equal_the_area_between_the_returned_curves(
    prognosis_predictor, prognosis_patient, planned
):
    result = prognosis_predictor.prognosis(prognosis_patient(planned_modality=planned))
    months = np.array([p["month"] for p in result["os"]["curve"]], dtype=float)
    upto_60 = months <= 60
    for endpoint in ENDPOINTS:
        block = result[endpoint]
        reference = _survival(_entry(block, planned))
        for entry in block["modalities"]:
            curve = _survival(entry)
            rmst = np.trapezoid(curve[upto_60], months[upto_60])
            assert entry["rmst_60_months"]["value"] == pytest.approx(rmst, abs=0.1)
            if entry["modality"] == planned:
                assert entry["difference_vs_planned"] is None
                continue
            area = np.trapezoid(curve[upto_60] - reference[upto_60], months[upto_60])
            difference = entry["difference_vs_planned"]["rmst_60_months"]
            assert difference["value"] == pytest.approx(area, abs=0.1)
            assert difference["lower"] <= difference["value"] <= difference["upper"]


def test_survival_differences_are_the_modality_minus_the_planned_one(
    prognosis_predictor, prognosis_patient
):
    block = prognosis_predictor.prognosis(prognosis_patient(planned_modality="TAE"))["hpfs"]
    planned = _entry(block, "TAE")
    for name in ("TACE", "SIRT"):
        entry = _entry(block, name)
        for horizon, difference in entry["difference_vs_planned"]["survival_at"].items():
            expected = (
                entry["survival_at"][horizon]["value"] - planned["survival_at"][horizon]["value"]
            )
            assert difference["value"] == pytest.approx(expected, abs=2e-4)
            assert difference["lower"] <= difference["value"] <= difference["upper"]


def test_paired_intervals_are_narrower_than_unpaired_ones(prognosis_predictor, prognosis_patient):
    block = prognosis_predictor.prognosis(prognosis_patient(planned_modality="TACE"))["os"]
    tace, sirt = _entry(block, "TACE"), _entry(block, "SIRT")
    paired = sirt["difference_vs_planned"]["rmst_60_months"]
    paired_width = paired["upper"] - paired["lower"]
    # Widths add for independent intervals; pairing removes the shared uncertainty.
    unpaired_width = sum(
        e["rmst_60_months"]["upper"] - e["rmst_60_months"]["lower"] for e in (tace, sirt)
    )
    assert 0.0 < paired_width < unpaired_width


@pytest.mark.parametrize("predictor_name", ["prognosis_predictor", "prognosis_boosted_predictor"])
def test_a_g3_patient_has_shorter_predicted_os_under_sirt_than_under_tace(
    request, predictor_name, prognosis_patient
):
    # 004 Table 1: SIRT vs TACE within grade 3, OS HR 10.02.
    predictor = request.getfixturevalue(predictor_name)
    patient = prognosis_patient(who_grade="G3", tumor_burden_percent=40.0, planned_modality="TACE")
    block = predictor.prognosis(patient)["os"]
    tace, sirt = _entry(block, "TACE"), _entry(block, "SIRT")
    assert sirt["median_months"]["value"] < 0.7 * tace["median_months"]["value"]
    assert sirt["rmst_60_months"]["value"] < tace["rmst_60_months"]["value"] - 5.0
    assert sirt["difference_vs_planned"]["rmst_60_months"]["upper"] < 0.0


@pytest.mark.parametrize("predictor_name", ["prognosis_predictor", "prognosis_boosted_predictor"])
@pytest.mark.parametrize("grade", ["G1", "G2"])
def test_g1_and_g2_patients_have_longer_predicted_hpfs_under_sirt_than_under_tace(
    request, predictor_name, prognosis_patient, grade
):
    # 004 Table 1: SIRT vs TACE HPFS HR 0.47 in grade 1 and 0.41 in grade 2.
    predictor = request.getfixturevalue(predictor_name)
    block = predictor.prognosis(prognosis_patient(who_grade=grade))["hpfs"]
    tace, sirt = _entry(block, "TACE"), _entry(block, "SIRT")
    assert sirt["median_months"]["value"] > 1.2 * tace["median_months"]["value"]
    assert sirt["rmst_60_months"]["value"] > tace["rmst_60_months"]["value"]
    assert sirt["difference_vs_planned"]["survival_at"]["12"]["lower"] > 0.0


@pytest.fixture(scope="module")
def no_sirt_in_g3_predictor(prognosis_fit_bundle):
    from training.synthetic import simulate_cohort

    cohort = simulate_cohort(1500, seed=23)
    rows = (cohort["who_grade"] == "G3") & (cohort["modality"] == "SIRT")
    rng = np.random.default_rng(23)
    cohort.loc[rows, "modality"] = rng.choice(["TACE", "TAE"], size=int(rows.sum()))
    return Predictor(prognosis_fit_bundle(cohort, n_bootstrap=10))


def test_without_sirt_among_g3_training_patients_a_g3_sirt_entry_is_extrapolation(
    no_sirt_in_g3_predictor, prognosis_patient
):
    patient = prognosis_patient(who_grade="G3", tumor_burden_percent=60.0, planned_modality="TACE")
    result = no_sirt_in_g3_predictor.prognosis(patient)
    for endpoint in ENDPOINTS:
        support = _entry(result[endpoint], "SIRT")["support"]
        assert support["similar_treated"] == 0
        assert support["extrapolation"] is True
        assert "extrapolation" in support["warning"]
        assert _entry(result[endpoint], "TACE")["support"]["extrapolation"] is False
    warnings = [w for w in result["warnings"] if w["code"] == "modality_extrapolated"]
    assert [w["modality"] for w in warnings] == ["SIRT"]
    assert "SIRT (a comparison)" in warnings[0]["message"]


def test_a_planned_modality_without_support_is_warned_about_as_the_planned_one(
    no_sirt_in_g3_predictor, prognosis_patient
):
    patient = prognosis_patient(who_grade="G3", tumor_burden_percent=60.0, planned_modality="SIRT")
    warnings = no_sirt_in_g3_predictor.prognosis(patient)["warnings"]
    messages = [w["message"] for w in warnings if w["code"] == "modality_extrapolated"]
    assert len(messages) == 1
    assert messages[0].startswith("SIRT (the planned modality)")


def test_support_holds_the_propensity_and_the_similar_treated_count(
    prognosis_predictor, prognosis_bundle, prognosis_patient
):
    patient = prognosis_patient(who_grade="G1", tumor_burden_percent=20.0)
    block = prognosis_predictor.prognosis(patient)["os"]
    propensities = [m["support"]["propensity"] for m in block["modalities"]]
    assert sum(propensities) == pytest.approx(1.0, abs=2e-3)
    for entry in block["modalities"]:
        support = entry["support"]
        expected = prognosis_bundle.support_counts.loc[("G1", "<25"), entry["modality"]]
        assert support["similar_treated"] == expected
        assert support["similar_treated"] >= MIN_SIMILAR_TREATED
        assert support["propensity"] >= MIN_PROPENSITY
        assert support["extrapolation"] is False
        assert support["warning"] is None
        assert "grade G1 and tumour burden <25 %" in support["similar_definition"]


def test_every_comparison_carries_the_observational_caveat(prognosis_predictor, prognosis_patient):
    result = prognosis_predictor.prognosis(prognosis_patient())
    for endpoint in ENDPOINTS:
        for entry in result[endpoint]["modalities"]:
            assert entry["caveat"] == COMPARISON_CAVEAT
    assert "not a randomised comparison" in COMPARISON_CAVEAT


def test_median_months_interpolates_the_crossing_and_reports_not_reached_as_nan():
    months = np.array([0.0, 1.0, 2.0, 3.0])
    curves = np.array([[1.0, 0.8, 0.4, 0.2], [1.0, 0.9, 0.7, 0.6], [1.0, 0.5, 0.5, 0.1]])
    medians = median_months(curves, months)
    assert medians[0] == pytest.approx(1.75)
    assert np.isnan(medians[1])
    assert medians[2] == pytest.approx(1.0)


def test_restricted_mean_integrates_the_linearly_joined_curve():
    flat = np.ones(len(MONTH_GRID))
    assert restricted_mean(flat) == pytest.approx(60.0)
    linear = np.clip(1.0 - MONTH_GRID / 60.0, 0.0, 1.0)
    assert restricted_mean(linear) == pytest.approx(30.0)
    with pytest.raises(ValueError, match="`horizon` must be a month of the grid"):
        restricted_mean(flat, horizon=60.5)


def test_percentile_interval_is_not_widened_to_contain_the_point():
    members = np.arange(1.0, 21.0)[:, None] * np.ones((20, 3))
    point = np.array([0.0, 10.0, 30.0])
    lower, upper = percentile_interval(members, point)
    np.testing.assert_allclose(lower, [1.475, 1.475, 1.475])
    np.testing.assert_allclose(upper, [19.525, 19.525, 19.525])
    assert not (lower[0] <= point[0] <= upper[0])
    assert not (lower[2] <= point[2] <= upper[2])
