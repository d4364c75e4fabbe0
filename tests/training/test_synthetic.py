"""Tests that the synthetic cohort reproduces the published aggregates and its own truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from lifelines import CoxPHFitter

from model.schema import FEATURE_NAMES, MODALITIES, encode
from training.calibrate import CHEN2017_MEDIANS, km_medians_by_grade
from training.synthetic import DEFAULT_SPEC_PATH, CohortSpec, simulate_cohort, true_survival

MAIN_EFFECTS = [n for n in FEATURE_NAMES if "_in_" not in n]


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return simulate_cohort(20_000, seed=2026)


@pytest.fixture(scope="module")
def spec() -> CohortSpec:
    return CohortSpec.load()


def cox_fit(frame: pd.DataFrame, endpoint: str, columns) -> CoxPHFitter:
    data = frame[columns].assign(T=frame[f"{endpoint}_months"], E=frame[f"{endpoint}_event"])
    return CoxPHFitter().fit(data, "T", "E")


def test_the_same_seed_gives_the_same_cohort_and_another_seed_does_not():
    first, again, other = simulate_cohort(500, 7), simulate_cohort(500, 7), simulate_cohort(500, 8)
    pd.testing.assert_frame_equal(first, again)
    assert not first["os_months"].equals(other["os_months"])


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_kaplan_meier_medians_by_grade_are_within_15_percent_of_chen_2017(cohort, endpoint):
    medians = km_medians_by_grade(cohort, endpoint)
    for grade, published in CHEN2017_MEDIANS[endpoint].items():
        assert medians[grade] == pytest.approx(published, rel=0.15), (grade, medians[grade])


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_a_multivariate_cox_fit_recovers_every_main_effect_within_0_15(cohort, spec, endpoint):
    design = encode(cohort).assign(**cohort[[f"{endpoint}_months", f"{endpoint}_event"]])
    fitted = cox_fit(design, endpoint, list(FEATURE_NAMES)).params_
    truth = spec.log_hazard_ratios(endpoint)
    errors = (fitted - truth)[MAIN_EFFECTS].abs()
    assert errors.max() < 0.15, errors.sort_values().tail(3).to_dict()
    within_grade = (fitted - truth).drop(MAIN_EFFECTS).abs()
    standard_errors = cox_fit(design, endpoint, list(FEATURE_NAMES)).standard_errors_
    assert (within_grade < 4 * standard_errors[within_grade.index]).all()


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
@pytest.mark.parametrize("grade", ["G1", "G2", "G3"])
def test_the_unadjusted_sirt_vs_tace_hazard_ratio_is_confounded(cohort, spec, endpoint, grade):
    rows = cohort[(cohort["who_grade"] == grade) & cohort["modality"].isin(["SIRT", "TACE"])]
    rows = rows.assign(sirt=(rows["modality"] == "SIRT").astype(float))
    fit = cox_fit(rows, endpoint, ["sirt"])
    true_log_hr = spec.log_hazard_ratios(endpoint)[f"SIRT_in_{grade}"]
    assert abs(fit.params_["sirt"] - true_log_hr) > 3 * fit.standard_errors_["sirt"]


def test_modality_choice_depends_on_grade_and_burden_with_overall_shares_near_chen_2017(cohort):
    shares = cohort["modality"].value_counts(normalize=True)
    assert shares["TACE"] == pytest.approx(50 / 155, abs=0.03)
    assert shares["SIRT"] == pytest.approx(64 / 155, abs=0.03)
    assert shares["TAE"] == pytest.approx(41 / 155, abs=0.03)
    sirt_by_grade = cohort.groupby("who_grade")["modality"].apply(lambda m: (m == "SIRT").mean())
    assert sirt_by_grade["G2"] > sirt_by_grade["G1"] + 0.1
    large = cohort["tumor_burden_percent"] > 50
    assert (cohort.loc[large, "modality"] == "SIRT").mean() > (
        cohort.loc[~large, "modality"] == "SIRT"
    ).mean() + 0.15


def test_mean_follow_up_is_between_20_and_36_months_with_about_15_percent_lost_early(cohort):
    assert 20 <= cohort["os_months"].mean() <= 36
    censored_in_first_year = ((cohort["os_event"] == 0) & (cohort["os_months"] < 12)).mean()
    assert 0.08 < censored_in_first_year < 0.2


def test_progression_never_comes_after_death(cohort):
    assert (cohort["hpfs_months"] <= cohort["os_months"]).all()
    assert (cohort["hpfs_months"] > 0).all()
    died_first = (cohort["hpfs_event"] == 0) & (cohort["hpfs_months"] == cohort["os_months"])
    assert cohort.loc[died_first & (cohort["os_event"] == 1)].shape[0] > 0


def test_truth_columns_give_the_true_log_hazard_under_every_modality(cohort, spec):
    design = encode(cohort, "SIRT").to_numpy()
    expected = design @ spec.log_hazard_ratios("os").to_numpy()
    np.testing.assert_allclose(cohort["true_lp_os_SIRT"], expected)
    received = np.choose(
        pd.Categorical(cohort["modality"], categories=MODALITIES).codes,
        [cohort[f"true_lp_os_{m}"] for m in MODALITIES],
    )
    np.testing.assert_allclose(cohort["true_lp_os"], received)


def test_true_survival_is_a_proper_curve_and_matches_the_simulated_deaths(cohort, spec):
    months = np.array([0.0, 12.0, 24.0, 60.0])
    curves = true_survival(cohort["true_lp_os"].to_numpy(), months, "os", spec)
    assert np.all(np.diff(curves, axis=1) <= 0)
    assert curves[:, 0] == pytest.approx(1.0)
    followed = cohort["os_months"] >= 12
    died_by_12 = ((cohort["os_event"] == 1) & (cohort["os_months"] < 12)).sum()
    fully_observed = died_by_12 + followed.sum()
    assert died_by_12 / fully_observed == pytest.approx(1 - curves[:, 1].mean(), abs=0.03)


def test_every_parameter_in_the_cohort_spec_names_its_source_or_is_marked_an_assumption():
    with open(DEFAULT_SPEC_PATH, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)

    def unsourced(node, path):
        if isinstance(node, dict) and ("source" in node or "assumption" in node):
            return []
        if isinstance(node, dict) and path and all(not isinstance(v, dict) for v in node.values()):
            return [path]
        if isinstance(node, dict):
            return [p for key, value in node.items() for p in unsourced(value, f"{path}.{key}")]
        return [path]

    missing = [
        p
        for section in ("covariates", "modality_assignment", "hazards", "follow_up")
        for p in unsourced(raw[section], section)
    ]
    assert missing == []
