"""Tests that the synthetic cohort reproduces the published aggregates and its own truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from lifelines import CoxPHFitter
from scipy import integrate

from model.schema import FEATURE_NAMES, encode
from training.calibrate import (
    CHEN2017_MEDIANS,
    g3_plausibility,
    km_medians_by_grade,
    shrunk_modality_record,
)
from training.evidence import (
    shrink_random_effects,
    shrunk_modality_effects,
    standard_error_from_p,
)
from training.synthetic import (
    DEFAULT_SPEC_PATH,
    MODALITIES,
    TRUTH_MONTHS,
    CohortSpec,
    draw_progression_and_death,
    simulate_cohort,
    true_cif_death_before_progression,
    true_cif_progression,
    true_hpfs_survival,
    true_median,
    true_survival,
    true_values_at,
)
from training.validate import validate_cohort

MAIN_EFFECTS = [n for n in FEATURE_NAMES if "_in_" not in n]


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return simulate_cohort(20_000, seed=2026)


@pytest.fixture(scope="module")
def spec() -> CohortSpec:
    return CohortSpec.load()


def cox_fit(frame: pd.DataFrame, endpoint: str, columns) -> CoxPHFitter:
    """Cox fit of the spec's model for `endpoint`: for "hpfs" the cause-specific hazard of
    progression (a death before it censors), which is what `hazards.hpfs` holds."""
    event = frame[f"{endpoint}_event"]
    if endpoint == "hpfs":
        event = (frame["hpfs_event_type"] == "progression").astype(int)
    data = frame[columns].assign(T=frame[f"{endpoint}_months"], E=event)
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


def test_composite_hpfs_medians_by_grade_are_18_5_12_2_and_4_9_months_within_15_percent(cohort):
    hpfs_event = cohort["hpfs_event_type"].isin(["progression", "death"])
    assert (cohort["hpfs_event"] == hpfs_event).all()
    assert (cohort["hpfs_event_type"] == "death").mean() > 0.1
    medians = km_medians_by_grade(cohort, "hpfs")
    assert medians["G1"] == pytest.approx(18.5, rel=0.15)
    assert medians["G2"] == pytest.approx(12.2, rel=0.15)
    assert medians["G3"] == pytest.approx(4.9, rel=0.15)


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_a_multivariate_cox_fit_recovers_every_main_effect_within_0_15(cohort, spec, endpoint):
    outcome = [f"{endpoint}_months", f"{endpoint}_event", "hpfs_event_type"]
    design = encode(cohort).assign(**cohort[outcome])
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


def test_hpfs_never_ends_after_os_and_a_death_first_ends_it_as_an_event_at_the_death(cohort):
    assert (cohort["hpfs_months"] <= cohort["os_months"]).all()
    assert (cohort["hpfs_months"] > 0).all()
    died_first = cohort[cohort["hpfs_event_type"] == "death"]
    assert len(died_first) > 2000
    assert (died_first["hpfs_event"] == 1).all()
    assert (died_first["os_event"] == 1).all()
    assert (died_first["hpfs_months"] == died_first["os_months"]).all()
    censored = cohort[cohort["hpfs_event_type"] == "censored"]
    assert (censored["hpfs_event"] == 0).all()
    assert (censored["os_event"] == 0).all()
    assert (censored["hpfs_months"] == censored["os_months"]).all()
    censored_at_a_death = (cohort["hpfs_event"] == 0) & (cohort["os_event"] == 1)
    assert not (censored_at_a_death & (cohort["hpfs_months"] == cohort["os_months"])).any()


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


@pytest.fixture(scope="module")
def one_patient_under_every_modality() -> pd.DataFrame:
    """A G3 patient (death competes hard there), with its truth columns."""
    cohort = simulate_cohort(200, seed=3)
    return cohort[cohort["who_grade"] == "G3"].iloc[[0]]


@pytest.mark.parametrize("modality", MODALITIES)
def test_true_survival_and_cumulative_incidence_columns_match_200_000_simulated_copies(
    one_patient_under_every_modality, spec, modality
):
    patient = one_patient_under_every_modality
    n = 200_000
    progression, death = draw_progression_and_death(
        np.repeat(patient[f"true_lp_hpfs_{modality}"].to_numpy(), n),
        np.repeat(patient[f"true_lp_os_{modality}"].to_numpy(), n),
        np.random.default_rng(17),
        spec,
    )
    hpfs = np.minimum(progression, death)
    for month in TRUTH_MONTHS:
        truth = patient.iloc[0]
        assert np.mean(hpfs > month) == pytest.approx(
            truth[f"true_surv_hpfs_{modality}_{month}"], abs=0.01
        )
        assert np.mean(death > month) == pytest.approx(
            truth[f"true_surv_os_{modality}_{month}"], abs=0.01
        )
        assert np.mean((progression <= month) & (progression < death)) == pytest.approx(
            truth[f"true_cif_progression_{modality}_{month}"], abs=0.01
        )


def test_the_simulated_g3_patient_has_cumulative_incidence_well_below_one_minus_hpfs(
    one_patient_under_every_modality,
):
    truth = one_patient_under_every_modality.iloc[0]
    gap = (1 - truth["true_surv_hpfs_SIRT_24"]) - truth["true_cif_progression_SIRT_24"]
    assert gap > 0.05


@pytest.fixture(scope="module")
def log_hazards(cohort) -> tuple[np.ndarray, np.ndarray]:
    return cohort["true_lp_hpfs"].to_numpy()[:2000], cohort["true_lp_os"].to_numpy()[:2000]


def test_cumulative_incidences_of_progression_and_of_death_first_add_up_to_one_minus_hpfs(
    spec, log_hazards
):
    months = np.array([0.5, 3.0, 12.0, 24.0, 36.0, 60.0, 120.0])
    progression = true_cif_progression(*log_hazards, months, spec)
    death_first = true_cif_death_before_progression(*log_hazards, months, spec)
    survival = true_hpfs_survival(*log_hazards, months, spec)
    np.testing.assert_allclose(progression + death_first, 1.0 - survival, atol=1e-8)
    assert (np.diff(progression, axis=1) >= -1e-9).all()
    assert (progression >= 0).all()
    assert (death_first > 0).all()


def test_the_cumulative_incidence_agrees_with_adaptive_quadrature_to_1e_6(spec, log_hazards):
    (prog_shape, prog_scale), (death_shape, death_scale) = (
        spec.baseline("hpfs"),
        spec.baseline("os"),
    )
    rows = np.linspace(0, 1999, 25).astype(int)
    months = [12.0, 60.0]
    fast = true_cif_progression(log_hazards[0][rows], log_hazards[1][rows], months, spec)
    for i, row in enumerate(rows):
        prog, death = np.exp(log_hazards[0][row]), np.exp(log_hazards[1][row])

        def density(u, prog=prog, death=death):
            hazard = prog * prog_shape / prog_scale * (u / prog_scale) ** (prog_shape - 1)
            cumulative = prog * (u / prog_scale) ** prog_shape
            return hazard * np.exp(-cumulative - death * (u / death_scale) ** death_shape)

        for j, month in enumerate(months):
            exact = integrate.quad(density, 0.0, month, epsabs=1e-12, epsrel=1e-10, limit=200)[0]
            assert fast[i, j] == pytest.approx(exact, abs=1e-6)


def test_true_values_at_other_months_agree_with_the_published_columns(cohort, spec):
    values = true_values_at(cohort.iloc[:50], spec, months=(24, 30.5))
    np.testing.assert_allclose(
        values["true_cif_progression_TAE_24"], cohort["true_cif_progression_TAE_24"][:50]
    )
    assert values["true_surv_hpfs_SIRT_30.5"].shape == (50,)
    assert (values["true_surv_hpfs_SIRT_30.5"] < values["true_surv_hpfs_SIRT_24"]).all()


def test_hpfs_survival_needs_the_death_log_hazard_and_its_median_halves_it(spec, log_hazards):
    with pytest.raises(ValueError, match="needs `log_hazard_death`"):
        true_survival(log_hazards[0], [12.0], "hpfs", spec)
    medians = true_median(log_hazards[0], "hpfs", spec, log_hazard_death=log_hazards[1])
    at_median = true_hpfs_survival(log_hazards[0][:100], log_hazards[1][:100], [1.0], spec)
    assert at_median.shape == (100, 1)
    for row in range(100):
        survival = true_hpfs_survival(
            log_hazards[0][[row]], log_hazards[1][[row]], [medians[row]], spec
        )
        assert survival[0, 0] == pytest.approx(0.5, abs=1e-9)
    progression_only = true_median(log_hazards[0], "hpfs", spec, log_hazards[0] - np.inf)
    assert (medians < progression_only).all()


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


def _table1_entries(raw: dict):
    for endpoint in ("hpfs", "os"):
        for name, entry in raw["hazards"][endpoint]["hazard_ratios"].items():
            if entry.get("source", "").startswith("table1_004"):
                yield endpoint, name, entry


def test_every_table1_standard_error_is_derived_from_its_recorded_p_value_to_1e_3(spec):
    entries = list(_table1_entries(spec.raw))
    assert len(entries) == 38
    for endpoint, name, entry in entries:
        derived = standard_error_from_p(entry["value"], entry["p"])
        assert entry["se_log"] == pytest.approx(derived, abs=1e-3), (endpoint, name)
    sirt_g3_os = spec.raw["hazards"]["os"]["hazard_ratios"]["SIRT_in_G3"]
    assert sirt_g3_os["se_log"] == pytest.approx(np.log(10.02) / 3.0902, abs=1e-3)


def test_a_standard_error_needs_a_p_value_strictly_between_0_and_1():
    with pytest.raises(ValueError, match="strictly between 0 and 1, but got 1.0"):
        standard_error_from_p(1.2, 1.0)


def test_dersimonian_laird_finds_no_heterogeneity_in_equal_estimates_and_pools_them():
    fit = shrink_random_effects([0.3, 0.3, 0.3], [0.2, 0.4, 0.8])
    assert fit.tau2 == 0.0
    np.testing.assert_allclose(fit.shrunk, 0.3)
    expected_pooled_se = 1 / np.sqrt(1 / 0.04 + 1 / 0.16 + 1 / 0.64)
    np.testing.assert_allclose(fit.shrunk_se, expected_pooled_se)


def test_dersimonian_laird_tau2_and_shrinkage_match_a_hand_computation():
    y, se = np.array([0.0, 1.0, 3.0]), np.array([0.5, 0.5, 1.0])
    w = 1 / se**2
    q = np.sum(w * (y - np.sum(w * y) / w.sum()) ** 2)
    tau2 = (q - 2) / (w.sum() - np.sum(w**2) / w.sum())
    mu = np.sum(y / (se**2 + tau2)) / np.sum(1 / (se**2 + tau2))
    fit = shrink_random_effects(y, se)
    assert fit.tau2 == pytest.approx(tau2)
    assert fit.pooled == pytest.approx(mu)
    np.testing.assert_allclose(fit.shrunk, mu + tau2 / (tau2 + se**2) * (y - mu))
    assert (fit.shrunk_se < se).all()


def test_shrunk_g3_sirt_os_hazard_ratio_is_below_10_02_and_closer_to_the_pooled_value(spec):
    fit = shrunk_modality_effects(spec.raw["hazards"]["os"]["hazard_ratios"])["SIRT"]
    shrunk = spec.log_hazard_ratios("os")["SIRT_in_G3"]
    published = spec.with_modality_effects("published").log_hazard_ratios("os")["SIRT_in_G3"]
    assert published == pytest.approx(np.log(10.02))
    assert np.exp(shrunk) < 10.02
    assert abs(shrunk - fit.pooled) < 0.8 * abs(published - fit.pooled)
    assert np.exp(shrunk) == pytest.approx(6.18, abs=0.01)


def test_the_recorded_shrunk_effects_in_the_spec_are_the_computed_ones(spec):
    recorded = spec.raw["modality_effects"]["shrunk_record"]
    computed = shrunk_modality_record(spec)
    for endpoint in ("hpfs", "os"):
        for key in ("tau2", "pooled_hr"):
            for modality, value in computed[endpoint][key].items():
                assert recorded[endpoint][key][modality] == pytest.approx(value, abs=1e-3)
        for name, value in computed[endpoint]["hazard_ratios"].items():
            assert recorded[endpoint]["hazard_ratios"][name] == pytest.approx(value, abs=1e-3)
            assert np.log(value["HR"]) == pytest.approx(
                spec.log_hazard_ratios(endpoint)[name], abs=1e-3
            )


def test_an_unknown_modality_effects_option_is_rejected_with_the_allowed_values(spec):
    with pytest.raises(ValueError, match="one of shrunk, published, but got 'raw'"):
        spec.with_modality_effects("raw")


@pytest.fixture(scope="module")
def published_cohort() -> pd.DataFrame:
    return simulate_cohort(20_000, seed=2026, modality_effects="published")


def test_shrunk_and_published_cohorts_are_valid_share_patients_and_differ_in_outcome(
    cohort, published_cohort
):
    for frame in (cohort.iloc[:2000], published_cohort.iloc[:2000]):
        assert len(validate_cohort(frame)) == 2000
    patient_fields = ["who_grade", "modality", "tumor_burden_percent", "age_years"]
    pd.testing.assert_frame_equal(cohort[patient_fields], published_cohort[patient_fields])
    g3 = cohort["who_grade"] == "G3"
    for frame, hazard_ratio in ((cohort, 6.182), (published_cohort, 10.02)):
        contrast = frame.loc[g3, "true_lp_os_SIRT"] - frame.loc[g3, "true_lp_os_TACE"]
        np.testing.assert_allclose(contrast, np.log(hazard_ratio), atol=1e-3)
    assert not cohort["os_months"].equals(published_cohort["os_months"])


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_published_effects_are_also_calibrated_to_chen_2017_within_15_percent(
    published_cohort, endpoint
):
    medians = km_medians_by_grade(published_cohort, endpoint)
    for grade, published in CHEN2017_MEDIANS[endpoint].items():
        assert medians[grade] == pytest.approx(published, rel=0.15), (grade, medians[grade])


def test_g3_os_by_modality_is_plausible_with_shrunk_effects_and_not_with_published(
    cohort, published_cohort, spec
):
    shrunk = g3_plausibility(cohort, spec)
    assert shrunk["plausible"], shrunk
    assert shrunk["km_range"] == [3.1, 27.9]
    assert shrunk["worst_g3_to_g2_ratio"] < 1.0
    published = g3_plausibility(published_cohort, spec.with_modality_effects("published"))
    assert not published["plausible"]
    assert published["km_median_os_by_modality"]["TACE"] > 27.9
