"""Tests of ``model.explain``: SHAP values on the log relative hazard scale, grouped per field."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.explain import FIELD_FACTORS, Explainer, field_labels
from model.schema import FEATURE_NAMES, encode, patients_frame


@pytest.fixture(scope="module")
def designs(prognosis_cohort):
    """200 encoded training patients under their received modality."""
    return encode(prognosis_cohort.iloc[:200]).to_numpy()


def _explainer(bundle, endpoint, name, **kwargs):
    return Explainer(
        bundle.models[endpoint][name].full,
        bundle.shap_background,
        weights=bundle.shap_background_weights,
        n_patients=bundle.shap_background_patients,
        **kwargs,
    )


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
@pytest.mark.parametrize("name", ["coxnet", "xgboost"])
def test_shap_values_add_up_to_the_margin_minus_the_base_value(
    prognosis_bundle, designs, endpoint, name
):
    import xgboost as xgb

    model = prognosis_bundle.models[endpoint][name].full
    # The margin each model computes itself, not the explainer's `margin` (which, for
    # path-dependent TreeSHAP, is defined as the sum of the values).
    margin = (
        designs @ model.coef + model.intercept
        if name == "coxnet"
        else model.estimator.booster_.predict(xgb.DMatrix(designs), output_margin=True)
    )
    explainer = _explainer(prognosis_bundle, endpoint, name)
    shap = explainer.shap_values(designs)
    assert shap.values.shape == (len(designs), len(FEATURE_NAMES))
    np.testing.assert_allclose(shap.values.sum(axis=1), margin - shap.base_value, atol=1e-5)
    grouped = explainer.field_contributions(shap.values)
    np.testing.assert_allclose(grouped.sum(axis=1), margin - shap.base_value, atol=1e-5)


SHAP_WARNING = pytest.mark.filterwarnings(
    r"ignore:The set_\w+ function will be deprecated:PendingDeprecationWarning"
)
"""shap's plotting module calls matplotlib colormap setters pending deprecation (see below)."""


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
@pytest.mark.parametrize(
    "tree_shap", ["path_dependent", pytest.param("interventional", marks=SHAP_WARNING)]
)
def test_boosted_shap_values_add_up_to_the_margin_xgboost_predicts_itself(
    prognosis_bundle, designs, endpoint, tree_shap
):
    import xgboost as xgb

    booster = prognosis_bundle.models[endpoint]["xgboost"].full.estimator.booster_
    margin = booster.predict(xgb.DMatrix(designs[:50]), output_margin=True).astype(float)
    shap = _explainer(prognosis_bundle, endpoint, "xgboost", tree_shap=tree_shap).shap_values(
        designs[:50]
    )
    assert np.ptp(margin) > 0.5
    np.testing.assert_allclose(shap.values.sum(axis=1) + shap.base_value, margin, atol=1e-5)


@pytest.mark.parametrize("name", ["coxnet", "xgboost"])
def test_the_explained_margin_is_the_curve_log_hazard(prognosis_bundle, designs, name):
    model = prognosis_bundle.models["os"][name].full
    shap = _explainer(prognosis_bundle, "os", name).shap_values(designs)
    # xgboost adds float32 leaf values, so its own sum differs from its margin by ~1e-6.
    np.testing.assert_allclose(shap.margin, model.log_hazard(designs), atol=1e-5)


def test_linear_shap_values_are_coefficient_times_distance_from_the_background_mean(
    prognosis_bundle, designs
):
    model = prognosis_bundle.models["hpfs"]["coxnet"].full
    background = prognosis_bundle.shap_background.to_numpy()
    weights = prognosis_bundle.shap_background_weights
    shap = _explainer(prognosis_bundle, "hpfs", "coxnet").shap_values(designs[:5])
    means = np.average(background, axis=0, weights=weights)
    np.testing.assert_allclose(shap.values, (designs[:5] - means) * model.coef)
    assert shap.base_value == pytest.approx(
        np.average(model.log_hazard(background), weights=weights), abs=1e-12
    )


def test_the_path_dependent_base_value_is_xgboosts_bias_term(prognosis_bundle, designs):
    import xgboost as xgb

    booster = prognosis_bundle.models["os"]["xgboost"].full.estimator.booster_
    explainer = _explainer(prognosis_bundle, "os", "xgboost")
    contributions = booster.predict(xgb.DMatrix(designs[:3]), pred_contribs=True)
    assert explainer.base_value == pytest.approx(float(contributions[0, -1]), abs=1e-7)
    assert "Hessian" in explainer.baseline
    assert f"{explainer.background_mean_margin:.3f}" in explainer.baseline


# Importing shap imports its plotting module, whose colormap set-up calls Colormap.set_bad and
# set_over, which matplotlib has pending for deprecation; that is shap's code, not ours.
@pytest.mark.filterwarnings(
    r"ignore:The set_\w+ function will be deprecated:PendingDeprecationWarning"
)
def test_interventional_tree_shap_adds_up_and_averages_over_the_background(
    prognosis_bundle, designs
):
    model = prognosis_bundle.models["os"]["xgboost"].full
    explainer = _explainer(prognosis_bundle, "os", "xgboost", tree_shap="interventional")
    shap = explainer.shap_values(designs[:20])
    rows = explainer.summary.repeated()
    # shap's own base over the weighted centres: within a few thousandths of their mean margin
    # (shap computes it in its tree code, with duplicated rows; additivity is what is exact).
    assert shap.base_value == pytest.approx(model.log_hazard(rows).mean(), abs=0.01)
    np.testing.assert_allclose(shap.values.sum(axis=1), shap.margin - shap.base_value, atol=1e-6)
    assert (
        f"average log relative hazard of the {prognosis_bundle.shap_background_patients} "
        "training patients" in explainer.baseline
    )
    assert "weighted cluster centres" in explainer.baseline


def test_an_unknown_tree_shap_method_is_rejected(prognosis_bundle):
    with pytest.raises(ValueError, match="`tree_shap` must be one of"):
        _explainer(prognosis_bundle, "os", "xgboost", tree_shap="exact")


def test_modality_columns_are_summed_into_one_modality_within_grade_item(
    prognosis_bundle, prognosis_patient
):
    patient = prognosis_patient(who_grade="G3", tumor_burden_percent=60.0, planned_modality="SIRT")
    design = encode(patients_frame([patient])).to_numpy()
    explainer = _explainer(prognosis_bundle, "os", "coxnet")
    shap = explainer.shap_values(design)
    grouped = explainer.field_contributions(shap.values)[0]
    columns = list(FEATURE_NAMES)
    modality_columns = [columns.index(c) for c in columns if "_in_" in c]
    burden_columns = [columns.index(c) for c in columns if c.startswith("burden_")]
    fields = list(explainer.fields)
    assert grouped[fields.index("planned_modality")] == pytest.approx(
        shap.values[0, modality_columns].sum()
    )
    assert grouped[fields.index("tumor_burden_percent")] == pytest.approx(
        shap.values[0, burden_columns].sum()
    )
    assert grouped[fields.index("who_grade")] == pytest.approx(
        shap.values[0, [columns.index("grade_G2"), columns.index("grade_G3")]].sum()
    )
    # SIRT in G3 carries a hazard ratio near 10 in the synthetic truth: the largest item.
    item = explainer.explanation(grouped, float(shap.margin[0]), field_labels(patient, "SIRT"))
    top = item["items"][0]
    assert top["field"] == "planned_modality"
    assert top["label"] == "SIRT in a G3 tumour"
    assert top["factor"] == "modality (within grade)"
    assert top["contribution"] > 1.0


def test_explanation_items_are_sorted_and_carry_hazard_ratios(
    prognosis_predictor, prognosis_patient
):
    patient = prognosis_patient(tumor_burden_percent=60.0, prior_hepatic_treatment=True)
    explanation = prognosis_predictor.prognosis(patient)["hpfs"]["explanation"]
    items = explanation["items"]
    assert {i["field"] for i in items} == set(FIELD_FACTORS)
    magnitudes = [abs(i["contribution"]) for i in items]
    assert magnitudes == sorted(magnitudes, reverse=True)
    for item in items:
        assert item["hazard_ratio"] == pytest.approx(math.exp(item["contribution"]), rel=1e-3)
    total = sum(i["contribution"] for i in items)
    assert total == pytest.approx(explanation["margin"] - explanation["base_value"], abs=1e-3)
    assert explanation["scale"] == "log relative hazard"
    assert explanation["hazard_ratio_vs_baseline"] == pytest.approx(
        math.exp(explanation["margin"] - explanation["base_value"]), rel=1e-3
    )
    labels = {i["field"]: i["label"] for i in items}
    assert labels["tumor_burden_percent"] == "tumour burden 50–75 %"
    assert labels["prior_hepatic_treatment"] == "prior hepatic resection or ablation"
    assert labels["biologic_therapy"] == "no biologic therapy"
    assert labels["age_years"] == "age 62 years"
    assert labels["planned_modality"] == "TACE in a G2 tumour"


def test_the_boosted_primary_explains_with_path_dependent_tree_shap(
    prognosis_boosted_predictor, prognosis_patient
):
    explanation = prognosis_boosted_predictor.prognosis(prognosis_patient())["os"]["explanation"]
    assert explanation["method"] == "path-dependent TreeSHAP (xgboost pred_contribs)"
    total = sum(i["contribution"] for i in explanation["items"])
    assert total == pytest.approx(explanation["margin"] - explanation["base_value"], abs=1e-3)
