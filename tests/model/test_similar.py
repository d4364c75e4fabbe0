"""Patients like this one: the stated rule, a Kaplan-Meier curve of exactly the selected
training patients, aggregates only, and nothing below the minimum group size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter

from model.similar import MIN_AT_RISK_SHOWN, MIN_SIMILAR, SimilarPatients, similarity_tables

ANSWER_KEYS = {"rule", "k", "minimum", "synthetic", "note", "hpfs", "os"}


def _log_hazards(predictor, patient) -> dict:
    from model.schema import encode, patients_frame

    row = encode(patients_frame([patient]), patient.planned_modality).to_numpy()
    return {e: float(p.primary.log_hazard(row)[0]) for e, p in predictor.endpoints.items()}


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_the_curve_is_a_kaplan_meier_fit_of_the_selected_training_patients(
    prognosis_predictor, prognosis_patient, endpoint
):
    patient = prognosis_patient(who_grade="G2", tumor_burden_percent=40)
    similar = prognosis_predictor.views.similar
    family = prognosis_predictor.endpoints[endpoint].primary_name
    log_hazard = _log_hazards(prognosis_predictor, patient)[endpoint]

    answer = prognosis_predictor.prognosis(patient)["similar_patients"]
    chosen = similar.selected(endpoint, family, "G2", "25-50", log_hazard)
    stratum = prognosis_predictor.bundle.similar_patients[endpoint]
    stratum = stratum[(stratum.who_grade == "G2") & (stratum.burden_category == "25-50")]
    fitter = KaplanMeierFitter().fit(chosen["months"], chosen["event"])
    entry = answer[endpoint]
    months = np.array([p["month"] for p in entry["curve"]])

    assert set(answer) == ANSWER_KEYS
    assert answer["k"] == len(chosen) == entry["n_patients"] == 50
    assert entry["shown"]
    assert entry["n_events"] == int(chosen["event"].sum())
    # The selection is the stated rule: the nearest log hazards within grade and burden.
    distance = (stratum[f"log_hazard_{family}"] - log_hazard).abs()
    assert distance.loc[chosen.index].max() <= distance.drop(chosen.index).min()
    np.testing.assert_allclose(
        [p["survival"] for p in entry["curve"]],
        fitter.survival_function_at_times(months).to_numpy(),
        atol=5e-5,
    )
    still_followed = [(chosen["months"] >= m).sum() for m in months]
    assert min(still_followed) >= MIN_AT_RISK_SHOWN
    assert [n["at_risk"] for n in entry["numbers_at_risk"]] == [
        int((chosen["months"] >= n["month"]).sum()) for n in entry["numbers_at_risk"]
    ]
    assert answer["synthetic"] is True
    assert "synthetic" in answer["note"].lower()
    assert "G2" in answer["rule"]
    assert "25–50 %" in answer["rule"]


def _tiny_tables(n: int) -> dict:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "who_grade": ["G3"] * n,
            "burden_category": [">75"] * n,
            "log_hazard_coxnet": rng.normal(size=n),
            "months": rng.uniform(1, 60, size=n),
            "event": rng.random(n) < 0.7,
        }
    )
    return {"hpfs": frame, "os": frame}


@pytest.mark.parametrize(
    ("size", "grade"), [(MIN_SIMILAR - 1, "G3"), (MIN_SIMILAR, "G1")], ids=["few", "none"]
)
def test_below_the_minimum_group_size_no_curve_is_shown(size, grade):
    similar = SimilarPatients(_tiny_tables(size), synthetic=True)

    summary = similar.summary(
        {"hpfs": "coxnet", "os": "coxnet"}, grade, ">75", {"hpfs": 0.0, "os": 0.0}
    )

    for endpoint in ("hpfs", "os"):
        assert summary[endpoint]["shown"] is False
        assert summary[endpoint]["curve"] is None
        assert summary[endpoint]["numbers_at_risk"] is None
        assert f"minimum of {MIN_SIMILAR}" in summary[endpoint]["reason"]


def test_at_the_minimum_group_size_the_curve_of_all_of_them_is_shown():
    similar = SimilarPatients(_tiny_tables(MIN_SIMILAR), synthetic=False)

    summary = similar.summary(
        {"hpfs": "coxnet", "os": "coxnet"}, "G3", ">75", {"hpfs": 0.0, "os": 0.0}
    )

    assert summary["hpfs"]["shown"] is True
    assert summary["hpfs"]["n_patients"] == MIN_SIMILAR
    assert summary["synthetic"] is False
    assert "synthetic" not in summary["note"].lower()


def test_the_stored_table_holds_no_identifier_and_no_patient_field_beyond_the_rule(
    prognosis_bundle,
):
    for table in prognosis_bundle.similar_patients.values():
        assert set(table.columns) == {
            "who_grade",
            "burden_category",
            "log_hazard_coxnet",
            "log_hazard_xgboost",
            "months",
            "event",
        }


def test_a_bundle_without_the_tables_answers_without_patients_like_this(
    prognosis_bundle, prognosis_patient
):
    import dataclasses

    from model.predictor import Predictor

    old = dataclasses.replace(prognosis_bundle, similar_patients={})

    assert Predictor(old).prognosis(prognosis_patient())["similar_patients"] is None


def test_similarity_tables_use_the_grade_derived_from_ki67_where_no_grade_was_recorded(
    prognosis_bundle,
):
    cohort = pd.DataFrame(
        {
            "who_grade": [None, "G1"],
            "ki67_percent": [25.0, None],
            "tumor_burden_percent": [10.0, 80.0],
            "hpfs_months": [3.0, 4.0],
            "hpfs_event": [True, False],
            "os_months": [5.0, 6.0],
            "os_event": [False, True],
        }
    )

    class Flat:
        full = type("Full", (), {"log_hazard": staticmethod(lambda design: design[:, 0])})

    tables = similarity_tables(
        cohort, np.array([[0.5], [1.5]]), {"hpfs": {"m": Flat}, "os": {"m": Flat}}
    )

    assert tables["hpfs"]["who_grade"].tolist() == ["G3", "G1"]
    assert tables["hpfs"]["burden_category"].tolist() == ["<25", ">75"]
    assert tables["os"]["event"].tolist() == [False, True]
    assert tables["os"]["log_hazard_m"].tolist() == [0.5, 1.5]


def test_the_product_limit_estimate_matches_lifelines_with_tied_and_censored_times():
    from model.similar import kaplan_meier_on_grid

    rng = np.random.default_rng(5)
    months = rng.integers(1, 40, size=60).astype(float)  # whole months: many ties
    event = rng.random(60) < 0.6

    curve, at_risk = kaplan_meier_on_grid(months, event)
    grid = np.array([p["month"] for p in curve])
    expected = KaplanMeierFitter().fit(months, event).survival_function_at_times(grid)

    np.testing.assert_allclose([p["survival"] for p in curve], expected.to_numpy(), atol=5e-5)
    assert [n["at_risk"] for n in at_risk] == [int((months >= n["month"]).sum()) for n in at_risk]
