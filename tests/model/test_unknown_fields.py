"""Unknown fields at prediction: the mixture over their likely values, and what it says."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from model.exceptions import ConditionalSurvivalUndefined, UnknownFieldsUnsupported
from model.predictor import Predictor
from model.unknown_fields import LIKELY

HORIZONS = ("12", "24", "36", "60")


def _tolerance(number: float) -> float:
    """One unit in the last shown decimal: the answers are rounded independently."""
    text = repr(float(number))
    return 10.0 ** -len(text.split(".")[1]) if "." in text else 1.0


def _likely_completions(predictor, patient):
    completed, weights, _ = predictor.imputer.completions(patient)
    return [(p, w) for p, w in zip(completed, weights, strict=True) if w >= LIKELY]


@pytest.fixture(scope="module")
def constructed(prognosis_predictor, prognosis_patient):
    """A G3 patient with large burden whose extrahepatic disease is unknown: both values likely."""
    patient = prognosis_patient(
        who_grade="G3", tumor_burden_percent=60.0, extrahepatic_metastases=None
    )
    likely = _likely_completions(prognosis_predictor, patient)
    assert len(likely) == 2, "the constructed case needs both values at >= 10 % probability"
    return patient, likely


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_one_unknown_field_gives_an_interval_never_narrower_holding_every_likely_value(
    prognosis_predictor, constructed, endpoint
):
    patient, likely = constructed
    unknown = prognosis_predictor.prognosis(patient)[endpoint]
    for completion, _ in likely:
        known = prognosis_predictor.prognosis(completion)[endpoint]
        pairs = [(unknown["survival_at"][h], known["survival_at"][h]) for h in HORIZONS]
        pairs += list(zip(unknown["curve"], known["curve"], strict=True))
        for mixed, single in pairs:
            value_key = "value" if "value" in single else "survival"
            slack = _tolerance(single[value_key]) + 1e-9
            assert mixed["upper"] - mixed["lower"] >= single["upper"] - single["lower"] - 2 * slack
            assert mixed["lower"] <= single[value_key] + slack
            assert single[value_key] <= mixed["upper"] + slack


def test_the_point_prediction_is_the_probability_weighted_mean_of_the_completions(
    prognosis_predictor, constructed
):
    patient, likely = constructed
    completed, weights, _ = prognosis_predictor.imputer.completions(patient)
    values = [
        prognosis_predictor.prognosis(p)["os"]["survival_at"]["24"]["value"] for p in completed
    ]
    mixed = prognosis_predictor.prognosis(patient)["os"]["survival_at"]["24"]["value"]
    assert mixed == pytest.approx(float(np.dot(weights, values)), abs=2e-4)
    assert weights.sum() == pytest.approx(1.0)


def test_the_answer_names_the_imputed_field_and_how_much_it_moves_the_answer(
    prognosis_predictor, constructed
):
    patient, likely = constructed
    answer = prognosis_predictor.prognosis(patient)
    [warning] = [w for w in answer["warnings"] if w["code"] == "imputed_fields"]
    assert warning["fields"] == ["extrahepatic_metastases"]
    assert "Extrahepatic metastases" in warning["message"]
    [effect] = warning["effects"]
    assert sum(effect["probabilities"].values()) == pytest.approx(1.0, abs=2e-3)
    low, high = effect["survival_24_months_range"]["os"]
    known = sorted(
        prognosis_predictor.prognosis(p)["os"]["survival_at"]["24"]["value"] for p, _ in likely
    )
    assert (low, high) == pytest.approx((known[0], known[-1]), abs=2e-3)
    assert answer["patient_summary"]["imputed_fields"] == ["extrahepatic_metastases"]


def test_several_unknown_fields_are_integrated_together(prognosis_predictor, prognosis_patient):
    patient = prognosis_patient(who_grade=None, tumor_burden_percent=None, somatostatin_analog=None)
    completed, weights, states = prognosis_predictor.imputer.completions(patient)
    assert len(completed) > 3
    assert weights.sum() == pytest.approx(1.0)
    assert all(p.unknown_fields == () for p in completed)
    answer = prognosis_predictor.prognosis(patient)
    summary = answer["patient_summary"]
    assert summary["grade_source"] == "imputed"
    assert summary["imputed_fields"] == ["who_grade", "tumor_burden_percent", "somatostatin_analog"]
    for endpoint in ("hpfs", "os"):
        for entry in answer[endpoint]["survival_at"].values():
            assert 0.0 <= entry["lower"] <= entry["value"] <= entry["upper"] <= 1.0
        median = answer[endpoint]["median_months"]
        assert median["text"].startswith(
            "Not reached" if median["value"] is None else f"{median['value']} months"
        )


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_the_conditional_answer_is_the_conditional_of_the_mixed_curve(
    prognosis_predictor, prognosis_patient, endpoint
):
    # Grade unknown: the completions' curves differ most. The answer given event-free survival
    # to s weighs each completion by w_k S_k(s), so its curve is S_mix(t) / S_mix(s).
    patient = prognosis_patient(who_grade=None, ki67_percent=None, tumor_burden_percent=60.0)
    mixed = prognosis_predictor.prognosis(patient)[endpoint]["curve"]
    survival = np.array([point["survival"] for point in mixed])
    since = 6.0
    start = float(np.interp(since, np.arange(len(survival)), survival))

    conditional = prognosis_predictor.prognosis(patient, since)[endpoint]["conditional"]

    assert conditional["survival_at_start"] == pytest.approx(start, abs=2e-4)
    for point in conditional["curve"][1:]:
        expected = survival[int(point["month"])] / start
        assert point["survival"] == pytest.approx(expected, abs=2e-3)
        assert point["lower"] <= point["survival"] <= point["upper"]
    curve = np.array([p["survival"] for p in conditional["curve"]])
    median = conditional["median_months"]["value"]
    if median is not None:
        months = np.array([p["month"] for p in conditional["curve"]], dtype=float)
        assert np.interp(median + 0.05, months, curve) <= 0.5 + 1e-4
        assert np.interp(max(median - 0.05, since), months, curve) >= 0.5 - 1e-4


def test_an_unlikely_completion_near_zero_survival_does_not_refuse_the_conditional_answer(
    prognosis_predictor, prognosis_patient
):
    # Grade unknown, seen late: the G3 completion's HPFS is about zero by then, the mixture's
    # is not. Refused only where the mixture's own S(s) is below the floor, as when known.
    patient = prognosis_patient(who_grade=None, ki67_percent=None, tumor_burden_percent=80.0)
    completed, weights, _ = prognosis_predictor.imputer.completions(patient)
    point = prognosis_predictor.prognosis(patient)["hpfs"]["curve"]
    survival = np.array([p["survival"] for p in point])
    singles = [
        np.array([p["survival"] for p in prognosis_predictor.prognosis(c)["hpfs"]["curve"]])
        for c in completed
    ]
    lows = [int(np.argmax(curve < 1e-3)) for curve in singles if (curve < 1e-3).any()]
    assert lows, "the case needs a completion whose HPFS falls below the floor"
    since = float(min(lows))
    assert survival[int(since)] >= 2e-3, "and a mixture above it there"

    answer = prognosis_predictor.prognosis(patient, since)

    assert answer["hpfs"]["conditional"]["survival_at_start"] == pytest.approx(
        survival[int(since)], abs=2e-4
    )
    last = int(np.argmax(survival < 1e-3)) if (survival < 1e-3).any() else None
    if last is not None:
        with pytest.raises(ConditionalSurvivalUndefined):
            prognosis_predictor.prognosis(patient, float(last) + 0.5)


def test_a_patient_with_every_field_known_is_answered_as_before(
    prognosis_predictor, prognosis_patient
):
    patient = prognosis_patient()
    answer = prognosis_predictor.prognosis(patient)
    assert answer == prognosis_predictor._batch_known([patient], [None], [1e-3], False)[0]
    assert all(w["code"] != "imputed_fields" for w in answer["warnings"])


def test_a_bundle_without_imputation_models_refuses_unknown_fields_saying_what_to_do(
    prognosis_bundle, prognosis_patient
):
    old = Predictor(dataclasses.replace(prognosis_bundle, imputer=None))
    with pytest.raises(UnknownFieldsUnsupported, match="tumor_burden_percent must be given"):
        old.prognosis(prognosis_patient(tumor_burden_percent=None))


def test_the_imputation_models_hold_coefficients_not_patients(prognosis_bundle):
    imputer = prognosis_bundle.imputer
    for name, model in imputer.models.items():
        assert model.coef.shape == (len(model.levels), len(model.features)), name
        assert "burden" not in " ".join(model.features) or name != "tumor_burden_percent"
    arrays = [v for m in imputer.models.values() for v in (m.coef, m.intercept)]
    assert max(a.size for a in arrays) < 100


def test_the_clinician_views_follow_the_mixture_and_say_whose_group_they_show(
    prognosis_predictor, constructed
):
    patient, likely = constructed
    answer = prognosis_predictor.prognosis(patient, contributions_over_time=True)
    most_probable = prognosis_predictor.prognosis(likely[0][0])

    # The counts out of 100 are the mixed survival's, not the most probable completion's.
    [tace] = [m for m in answer["out_of_100"]["modalities"] if m["modality"] == "TACE"]
    [os_tace] = [m for m in answer["os"]["modalities"] if m["modality"] == "TACE"]
    alive_24 = next(a for a in tace["at"] if a["month"] == 24)["alive"]
    assert alive_24 == round(100 * os_tace["survival_at"]["24"]["value"])
    assert answer["out_of_100"] != most_probable["out_of_100"]
    # The group and the contributions are the most probable completion's, and say so.
    for view in ("similar_patients", "contributions_over_time"):
        assert "extrahepatic_metastases" in answer[view]["imputed_note"]
        assert "most probable" in answer[view]["imputed_note"]
    assert "imputed_note" not in most_probable["similar_patients"]


def test_served_survival_of_registry_rows_mixes_the_rows_with_holes_and_keeps_the_others(
    prognosis_bundle, prognosis_cohort
):
    from model.schema import encode, patients_frame
    from model.unknown_fields import served_survival

    model = prognosis_bundle.models["os"][prognosis_bundle.primary["os"]]

    def survival_of(rows):
        return model.survival(encode(rows).to_numpy())

    rows = prognosis_cohort.head(6).copy()
    rows["extrahepatic_metastases"] = rows["extrahepatic_metastases"].astype(object)
    rows.loc[rows.index[1], "extrahepatic_metastases"] = None
    rows.loc[rows.index[3], ["who_grade", "ki67_percent"]] = None
    whole = [0, 2, 4, 5]

    served = served_survival(prognosis_bundle.imputer, survival_of, rows)

    np.testing.assert_allclose(served[whole], survival_of(rows.iloc[whole]))
    for position in (1, 3):
        row = rows.iloc[[position]]
        patient = _patient_of(row)
        assert patient.unknown_fields
        completed, weights, _ = prognosis_bundle.imputer.completions(patient)
        frame = patients_frame(completed).assign(modality=row["modality"].iloc[0])
        np.testing.assert_allclose(served[position], weights @ survival_of(frame))
    with pytest.raises(ValueError, match="unknown"):
        survival_of(rows)
    with pytest.raises(UnknownFieldsUnsupported):
        served_survival(None, survival_of, rows)


def _patient_of(row):
    from model.schema import PATIENT_FIELDS, Patient
    from model.unknown_fields import _python

    values = row.iloc[0]
    return Patient(**{name: _python(values[name]) for name in PATIENT_FIELDS if name in row})
