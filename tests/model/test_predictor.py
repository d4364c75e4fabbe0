"""Tests of ``model.predictor``: the prognosis of one patient and of a batch."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pytest

from model.bundle import MONTH_GRID
from model.endpoint_predictor import _medians_disagree
from model.exceptions import ConditionalSurvivalUndefined, ModelError
from model.predictor import DEFAULT_MODALITY, Predictor
from model.schema import ENDPOINTS, MODALITIES

HORIZON_KEYS = ("12", "24", "36", "60")


def _walk(value):
    """Every leaf of a JSON-like structure."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)
    else:
        yield value


def _curves(endpoint_block):
    """(name, records) of the main curve and of every modality's curve."""
    yield "main", endpoint_block["curve"]
    for entry in endpoint_block["modalities"]:
        yield entry["modality"], entry["curve"]


@pytest.fixture(scope="module")
def g3_patient(prognosis_patient):
    return prognosis_patient(
        who_grade="G3",
        ki67_percent=35.0,
        tumor_burden_percent=60.0,
        extrahepatic_metastases=True,
        cytotoxic_chemotherapy=True,
        somatostatin_analog=False,
        planned_modality="SIRT",
    )


@pytest.fixture(scope="module")
def prognosis(prognosis_predictor, g3_patient):
    return prognosis_predictor.prognosis(g3_patient, months_since_treatment=3)


def test_prognosis_is_plain_json_with_the_contract_fields(prognosis):
    text = json.dumps(prognosis, allow_nan=False)
    assert json.loads(text) == prognosis
    leaf_types = {type(leaf) for leaf in _walk(prognosis)}
    assert leaf_types <= {str, int, float, bool, type(None)}
    assert {"model", "hpfs", "os", "warnings", "disclaimer", "patient_summary"} <= set(prognosis)
    for endpoint in ENDPOINTS:
        block = prognosis[endpoint]
        assert {"lower", "upper", "value", "reached"} <= set(block["median_months"])
        assert tuple(block["survival_at"]) == HORIZON_KEYS
        assert [p["month"] for p in block["curve"]] == list(range(121))
        assert [m["modality"] for m in block["modalities"]] == list(MODALITIES)
        assert block["explanation"]["scale"] == "log relative hazard"
        assert all("support" in m and "caveat" in m for m in block["modalities"])


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_curves_are_non_increasing_and_inside_the_unit_interval(prognosis, endpoint):
    for name, curve in _curves(prognosis[endpoint]):
        for key in ("survival", "lower", "upper"):
            values = np.array([p[key] for p in curve])
            assert values[0] == 1.0, (name, key)
            assert np.all(np.diff(values) <= 0.0), (name, key)
            assert values.min() >= 0.0, (name, key)
            assert values.max() <= 1.0, (name, key)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_intervals_contain_the_point_estimate(prognosis, endpoint):
    block = prognosis[endpoint]
    for _, curve in _curves(block):
        assert all(p["lower"] <= p["survival"] <= p["upper"] for p in curve)
    for entry in [block, *block["modalities"]]:
        for value in entry["survival_at"].values():
            assert value["lower"] <= value["value"] <= value["upper"]
        median = entry["median_months"]
        if median["reached"]:
            assert median["lower"] <= median["value"]
            assert median["upper"] is None or median["value"] <= median["upper"]
        rmst = entry["rmst_60_months"]
        assert rmst["lower"] <= rmst["value"] <= rmst["upper"]
    # Where the G3 patient's curves are far from flat the intervals have real width.
    widths = [p["upper"] - p["lower"] for p in block["curve"] if 0.1 < p["survival"] < 0.9]
    assert len(widths) >= 3
    assert min(widths) > 0.005


def _with_members_copied_from_full(bundle):
    models = {
        endpoint: {
            # Without components the Cox family falls back to its members, as a boosted one does.
            name: dataclasses.replace(
                model, members=[model.full] * max(len(model.members), 20), components=[]
            )
            for name, model in families.items()
        }
        for endpoint, families in bundle.models.items()
    }
    return dataclasses.replace(bundle, models=models)


@pytest.mark.parametrize("primary", ["coxnet", "xgboost"])
def test_members_that_all_agree_give_zero_width_intervals(prognosis_bundle, g3_patient, primary):
    bundle = dataclasses.replace(
        _with_members_copied_from_full(prognosis_bundle), primary=dict.fromkeys(ENDPOINTS, primary)
    )
    result = Predictor(bundle).prognosis(g3_patient)
    for endpoint in ENDPOINTS:
        block = result[endpoint]
        assert all(p["lower"] == p["survival"] == p["upper"] for p in block["curve"])
        median = block["median_months"]
        assert median["lower"] == median["value"] == median["upper"]
        for entry in block["modalities"]:
            if entry["difference_vs_planned"] is not None:
                rmst = entry["difference_vs_planned"]["rmst_60_months"]
                assert rmst["lower"] == rmst["value"] == rmst["upper"]


def test_a_bundle_fitted_on_few_patients_gives_wider_intervals_than_one_fitted_on_many(
    prognosis_fit_bundle, prognosis_predictor, prognosis_patient
):
    from training.synthetic import simulate_cohort

    small = Predictor(prognosis_fit_bundle(simulate_cohort(300, seed=21)))
    patient = prognosis_patient()
    for endpoint in ENDPOINTS:
        widths = {}
        for label, predictor in (("few", small), ("many", prognosis_predictor)):
            curve = predictor.prognosis(patient)[endpoint]["curve"][1:61]
            widths[label] = np.mean([p["upper"] - p["lower"] for p in curve])
        # Expected about sqrt(10)-fold; measured 4.2 (HPFS) and 1.8 (OS) with these seeds.
        assert widths["few"] > 1.3 * widths["many"], (endpoint, widths)


def test_conditional_survival_equals_the_ratio_of_the_unconditional_curve(
    prognosis_predictor, prognosis_patient
):
    patient = prognosis_patient()
    start = 12
    result = prognosis_predictor.prognosis(patient, months_since_treatment=start)
    for endpoint in ENDPOINTS:
        curve = np.array([p["survival"] for p in result[endpoint]["curve"]])
        conditional = result[endpoint]["conditional"]
        assert conditional["months_since_treatment"] == start
        assert conditional["survival_at_start"] == pytest.approx(curve[start], abs=1e-4)
        months = [p["month"] for p in conditional["curve"]]
        assert months == list(range(start, 121))
        values = np.array([p["survival"] for p in conditional["curve"]])
        np.testing.assert_allclose(values, curve[start:] / curve[start], atol=2e-3)
        assert all(p["lower"] <= p["survival"] <= p["upper"] for p in conditional["curve"])
        expected_12 = curve[start + 12] / curve[start]
        assert conditional["additional_survival_at"]["12"]["value"] == pytest.approx(
            expected_12, abs=2e-3
        )
        median = conditional["median_months"]
        if median["reached"]:
            # The conditional median is where S(t) falls to half of S(start).
            t = median["value"]
            interpolated = np.interp(t, MONTH_GRID, curve) / curve[start]
            assert interpolated == pytest.approx(0.5, abs=0.01)
            assert conditional["median_remaining_months"] == pytest.approx(t - start, abs=0.11)


def test_conditional_survival_at_a_fractional_month_starts_at_one(
    prognosis_predictor, prognosis_patient
):
    result = prognosis_predictor.prognosis(prognosis_patient(), months_since_treatment=7.5)
    curve = result["os"]["conditional"]["curve"]
    assert curve[0] == {"month": 7.5, "survival": 1.0, "lower": 1.0, "upper": 1.0}
    assert curve[1]["month"] == 8


@pytest.mark.parametrize("months", [-1.0, 121.0, math.nan, math.inf, True, "6"])
def test_conditional_survival_outside_the_grid_is_refused(
    prognosis_predictor, prognosis_patient, months
):
    with pytest.raises(ConditionalSurvivalUndefined, match="months_since_treatment"):
        prognosis_predictor.prognosis(prognosis_patient(), months_since_treatment=months)


def test_conditional_survival_where_the_curve_is_about_zero_is_refused(
    prognosis_predictor, g3_patient
):
    # The G3 patient under SIRT is predicted to progress within months: S_hpfs(100) ~ 0.
    with pytest.raises(ConditionalSurvivalUndefined, match="hpfs survival curve"):
        prognosis_predictor.prognosis(g3_patient, months_since_treatment=100)


@pytest.mark.parametrize("predictor_name", ["prognosis_predictor", "prognosis_boosted_predictor"])
def test_batch_equals_single_predictions(request, predictor_name, prognosis_patient, g3_patient):
    predictor = request.getfixturevalue(predictor_name)
    patients = [
        g3_patient,
        prognosis_patient(),
        prognosis_patient(who_grade=None, ki67_percent=1.2, planned_modality=None),
        prognosis_patient(primary_site="gut", tumor_burden_percent=80.0, planned_modality="TAE"),
    ]
    months = [None, 6.0, 12, None]
    batch = predictor.batch(patients, months)
    assert len(batch) == len(patients)
    for patient, m, from_batch in zip(patients, months, batch, strict=True):
        assert from_batch == predictor.prognosis(patient, months_since_treatment=m)


def test_empty_batch_gives_an_empty_list(prognosis_predictor):
    assert prognosis_predictor.batch([]) == []


def test_a_patient_with_ki67_only_gets_the_derived_grade_and_a_warning(
    prognosis_predictor, prognosis_patient
):
    patient = prognosis_patient(who_grade=None, ki67_percent=25.0)
    result = prognosis_predictor.prognosis(patient)
    assert result["patient_summary"]["who_grade"] == "G3"
    assert result["patient_summary"]["grade_source"] == "ki67_percent"
    codes = [w["code"] for w in result["warnings"]]
    assert "grade_derived_from_ki67" in codes
    message = next(
        w["message"] for w in result["warnings"] if w["code"] == "grade_derived_from_ki67"
    )
    assert "G3" in message
    assert "25 %" in message
    labels = [item["label"] for item in result["os"]["explanation"]["items"]]
    assert "grade G3 (derived from Ki-67 25 %)" in labels
    assert "TACE in a G3 tumour" in labels
    # Same prediction as a patient recorded as G3.
    recorded = prognosis_predictor.prognosis(prognosis_patient(who_grade="G3"))
    assert result["os"]["median_months"] == recorded["os"]["median_months"]


def test_a_recorded_grade_that_contradicts_ki67_is_used_with_a_warning(
    prognosis_predictor, prognosis_patient
):
    result = prognosis_predictor.prognosis(prognosis_patient(who_grade="G1", ki67_percent=30.0))
    assert result["patient_summary"]["who_grade"] == "G1"
    assert "grade_ki67_mismatch" in [w["code"] for w in result["warnings"]]


def test_a_patient_without_planned_modality_gets_tace_and_a_warning(
    prognosis_predictor, prognosis_patient
):
    result = prognosis_predictor.prognosis(prognosis_patient(planned_modality=None))
    assert DEFAULT_MODALITY == "TACE"
    assert result["patient_summary"]["modality"] == "TACE"
    assert result["patient_summary"]["planned_modality_given"] is False
    assert "no_planned_modality" in [w["code"] for w in result["warnings"]]
    for endpoint in ENDPOINTS:
        assert result[endpoint]["modality"] == "TACE"
        planned = [m["modality"] for m in result[endpoint]["modalities"] if m["planned"]]
        assert planned == ["TACE"]


def test_synthetic_training_is_disclosed_with_the_model_identity(prognosis, prognosis_bundle):
    assert prognosis["disclaimer"].startswith("Trained on synthetic data, not for clinical use")
    assert prognosis["warnings"][0]["code"] == "synthetic_training_data"
    model = prognosis["model"]
    assert model["trained_on"] == "synthetic"
    assert model["data_fingerprint"] == prognosis_bundle.metadata["data_fingerprint"]
    assert model["trained_at"] == prognosis_bundle.metadata["trained_at"]
    assert model["primary_model"] == {"hpfs": "coxnet", "os": "coxnet"}
    assert model["check_model"] == {"hpfs": "xgboost", "os": "xgboost"}
    # The Cox primary's intervals are analytic: no bootstrap members behind them.
    assert model["n_bootstrap"] == {"hpfs": 0, "os": 0}
    assert all(m.startswith("delta method") for m in model["interval_method"].values())
    assert model["schema_version"] == "1"


def test_a_real_cohort_bundle_gets_the_decision_support_disclaimer(
    prognosis_bundle, prognosis_patient
):
    bundle = dataclasses.replace(
        prognosis_bundle, metadata={**prognosis_bundle.metadata, "trained_on": "real"}
    )
    result = Predictor(bundle).prognosis(prognosis_patient())
    assert "synthetic" not in result["disclaimer"]
    assert "synthetic_training_data" not in [w["code"] for w in result["warnings"]]


def test_the_patient_summary_holds_derived_categories_not_raw_values(prognosis):
    assert prognosis["patient_summary"] == {
        "who_grade": "G3",
        "grade_source": "who_grade",
        "burden_category": "50-75",
        "modality": "SIRT",
        "planned_modality_given": True,
    }


def test_risk_percentile_ranks_a_high_risk_patient_above_a_low_risk_one(
    prognosis_predictor, prognosis_patient, g3_patient
):
    low = prognosis_patient(who_grade="G1", tumor_burden_percent=10.0, age_years=45)
    low_result = prognosis_predictor.prognosis(low)
    high_result = prognosis_predictor.prognosis(g3_patient)
    for endpoint in ENDPOINTS:
        assert 0.0 <= low_result[endpoint]["risk_percentile"] < 40.0
        assert 90.0 < high_result[endpoint]["risk_percentile"] <= 100.0


def test_median_not_reached_is_null_with_an_explaining_text(prognosis_predictor, prognosis_patient):
    patient = prognosis_patient(
        who_grade="G1", tumor_burden_percent=10.0, primary_site="other", age_years=40
    )
    median = prognosis_predictor.prognosis(patient)["os"]["median_months"]
    assert median["reached"] is False
    assert median["value"] is None
    assert median["upper"] is None
    assert median["text"].startswith("Not reached within 120 months")


def test_curve_points_beyond_follow_up_are_flagged_as_extrapolation(
    prognosis_bundle, prognosis_patient
):
    bundle = dataclasses.replace(prognosis_bundle, max_follow_up_months={"hpfs": 30.0, "os": 40.5})
    result = Predictor(bundle).prognosis(prognosis_patient())
    assert result["hpfs"]["extrapolated_from_month"] == 31
    assert result["os"]["extrapolated_from_month"] == 41
    flags = {k: v["extrapolated"] for k, v in result["hpfs"]["survival_at"].items()}
    assert flags == {"12": False, "24": False, "36": True, "60": True}
    beyond = [w for w in result["warnings"] if w["code"] == "beyond_follow_up"]
    assert {w["endpoint"] for w in beyond} == {"hpfs", "os"}


def test_default_bundle_follow_up_is_reported(prognosis, prognosis_bundle):
    for endpoint in ENDPOINTS:
        follow_up = prognosis_bundle.max_follow_up_months[endpoint]
        assert prognosis[endpoint]["max_follow_up_months"] == pytest.approx(follow_up, abs=0.05)
        expected = int(np.floor(follow_up)) + 1 if follow_up < 120 else None
        assert prognosis[endpoint]["extrapolated_from_month"] == expected


@pytest.mark.parametrize(
    ("primary", "check", "disagree"),
    [
        (10.0, 14.9, False),
        (10.0, 15.1, True),
        (30.0, 10.0, True),
        (math.nan, math.nan, False),
        (math.nan, 70.0, True),  # not reached means > 120, at least 1.7-fold 70
        (math.nan, 90.0, False),  # 120 / 90 < 1.5: could be within the ratio
        (50.0, math.nan, True),
    ],
)
def test_models_disagree_when_medians_differ_more_than_one_and_a_half_fold(
    primary, check, disagree
):
    assert _medians_disagree(primary, check)[0] is disagree


def test_model_disagreement_is_reported_with_a_warning(prognosis_bundle, prognosis_patient):
    # Shift the check model's baseline hazard tenfold so its medians fall far below.
    bundle = copy.deepcopy(prognosis_bundle)
    for families in bundle.models.values():
        families["xgboost"].full.baseline_cumulative_hazard *= 10.0
    result = Predictor(bundle).prognosis(prognosis_patient())
    for endpoint in ENDPOINTS:
        check = result[endpoint]["check_model"]
        assert check["model"] == "xgboost"
        assert check["models_disagree"] is True
    codes = [(w["code"], w.get("endpoint")) for w in result["warnings"]]
    assert ("models_disagree", "hpfs") in codes
    assert ("models_disagree", "os") in codes


def test_the_check_model_agrees_with_the_primary_on_the_synthetic_cohort(prognosis):
    for endpoint in ENDPOINTS:
        check = prognosis[endpoint]["check_model"]
        assert check["models_disagree"] is False
        assert 1.0 <= check["median_ratio"] < 1.5
        primary_12 = prognosis[endpoint]["survival_at"]["12"]["value"]
        assert check["survival_at"]["12"] == pytest.approx(primary_12, abs=0.1)


def test_a_bundle_for_another_schema_version_is_rejected(prognosis_bundle):
    with pytest.raises(ModelError, match="schema version"):
        Predictor(dataclasses.replace(prognosis_bundle, schema_version="0"))


def test_an_unknown_primary_model_is_rejected(prognosis_bundle):
    with pytest.raises(ModelError, match="primary model"):
        Predictor(dataclasses.replace(prognosis_bundle, primary={"hpfs": "cox", "os": "coxnet"}))


def test_a_primary_family_fitted_without_its_interval_source_is_rejected():
    from training.fit import fit_bundle
    from training.synthetic import simulate_cohort

    bundle = fit_bundle(
        simulate_cohort(300, seed=5),
        n_bootstrap=2,
        primary={"hpfs": "coxnet", "os": "coxnet"},
        primary_ensembles_only=True,
        estimator_params={"coxnet": {"cv": 3, "n_alphas": 20, "l1_ratios": (0.9,)}},
    )

    # The Cox family's intervals come from its components (two cause-specific models for
    # HPFS); only a boosted primary needs bootstrap members, and the check model has none.
    assert [len(bundle.models[e]["coxnet"].components) for e in ("hpfs", "os")] == [2, 1]
    assert [len(bundle.models["os"][name].members) for name in ("coxnet", "xgboost")] == [0, 0]
    assert Predictor(bundle).endpoints["os"].curves is not None
    with pytest.raises(ModelError, match="Cox components or bootstrap members"):
        Predictor(dataclasses.replace(bundle, primary={"hpfs": "coxnet", "os": "xgboost"}))
