"""Patients like this one: the stated rule, a Kaplan-Meier curve of exactly the group's
training patients, aggregates only, and nothing below the minimum group size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter

from model.schema import burden_categories, effective_grades, encode
from model.similar import (
    K_SIMILAR,
    MIN_AT_RISK_SHOWN,
    MIN_SIMILAR,
    SimilarPatients,
    kaplan_meier_on_grid,
    similarity_tables,
)

ANSWER_KEYS = {"rule", "k", "minimum", "synthetic", "note", "hpfs", "os"}


def _log_hazards(predictor, patient) -> dict:
    from model.schema import patients_frame

    row = encode(patients_frame([patient]), patient.planned_modality).to_numpy()
    return {e: float(p.primary.log_hazard(row)[0]) for e, p in predictor.endpoints.items()}


def _group_by_the_rule(cohort, model, endpoint, grade, burden, log_hazard) -> pd.DataFrame:
    """The training patients of the stated rule, recomputed from the cohort itself."""
    design = encode(cohort, cohort["modality"]).to_numpy()
    scores = pd.Series(np.asarray(model.full.log_hazard(design)), index=cohort.index)
    same = (effective_grades(cohort) == grade).to_numpy() & (
        burden_categories(cohort["tumor_burden_percent"]) == burden
    )
    stratum = scores[same].sort_values(kind="stable")
    groups = np.array_split(stratum.index.to_numpy(), max(1, len(stratum) // K_SIMILAR))
    chosen = next(
        rows
        for i, rows in enumerate(groups)
        if i == len(groups) - 1
        or log_hazard < (scores[rows].max() + scores[groups[i + 1]].min()) / 2
    )
    return pd.DataFrame(
        {
            "months": cohort.loc[chosen, f"{endpoint}_months"],
            "event": cohort.loc[chosen, f"{endpoint}_event"],
        }
    )


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_the_curve_is_a_kaplan_meier_fit_of_the_rules_training_patients(
    prognosis_predictor, prognosis_patient, prognosis_cohort, endpoint
):
    patient = prognosis_patient(who_grade="G2", tumor_burden_percent=40)
    family = prognosis_predictor.endpoints[endpoint].primary_name
    model = prognosis_predictor.bundle.models[endpoint][family]
    log_hazard = _log_hazards(prognosis_predictor, patient)[endpoint]

    answer = prognosis_predictor.prognosis(patient)["similar_patients"]
    chosen = _group_by_the_rule(prognosis_cohort, model, endpoint, "G2", "25-50", log_hazard)
    fitter = KaplanMeierFitter().fit(chosen["months"], chosen["event"])
    entry = answer[endpoint]
    months = np.array([p["month"] for p in entry["curve"]])

    assert set(answer) == ANSWER_KEYS
    assert entry["shown"]
    assert K_SIMILAR <= entry["n_patients"] == len(chosen) < 2 * K_SIMILAR
    assert entry["n_events"] == int(chosen["event"].sum())
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


def test_neighbouring_patients_share_a_fixed_group_not_one_redrawn_around_each(
    prognosis_predictor, prognosis_patient
):
    # Ages a year apart move the risk score a little: a window re-drawn around each patient
    # would differ by about one training patient, and two answers could be differenced.
    curves = {
        tuple(
            p["survival"]
            for p in prognosis_predictor.prognosis(
                prognosis_patient(who_grade="G2", tumor_burden_percent=40, age_years=age)
            )["similar_patients"]["os"]["curve"]
        )
        for age in range(55, 70)
    }
    assert len(curves) <= 3


def _tiny_cohort(n: int, grade: str = "G3") -> tuple[pd.DataFrame, np.ndarray, dict]:
    rng = np.random.default_rng(0)
    cohort = pd.DataFrame(
        {
            "who_grade": [grade] * n,
            "ki67_percent": [None] * n,
            "tumor_burden_percent": [80.0] * n,
            "hpfs_months": rng.uniform(1, 60, size=n),
            "hpfs_event": rng.random(n) < 0.7,
            "os_months": rng.uniform(1, 60, size=n),
            "os_event": rng.random(n) < 0.7,
        }
    )

    class Score:
        full = type("Full", (), {"log_hazard": staticmethod(lambda design: design[:, 0])})

    models = {"hpfs": {"coxnet": Score}, "os": {"coxnet": Score}}
    return cohort, rng.normal(size=(n, 1)), models


@pytest.mark.parametrize("size", [MIN_SIMILAR - 1, 0], ids=["few", "none"])
def test_below_the_minimum_group_size_no_curve_is_shown(size):
    cohort, design, models = _tiny_cohort(max(size, 1), "G3" if size else "G1")
    similar = SimilarPatients(similarity_tables(cohort, design, models), synthetic=True)

    summary = similar.summary(
        {"hpfs": "coxnet", "os": "coxnet"}, "G3", ">75", {"hpfs": 0.0, "os": 0.0}
    )

    for endpoint in ("hpfs", "os"):
        assert summary[endpoint]["shown"] is False
        assert summary[endpoint]["curve"] is None
        assert summary[endpoint]["numbers_at_risk"] is None
        assert f"Only {size} training" in summary[endpoint]["reason"]
        assert f"minimum of {MIN_SIMILAR}" in summary[endpoint]["reason"]


def test_at_the_minimum_group_size_the_curve_of_all_of_them_is_shown():
    cohort, design, models = _tiny_cohort(MIN_SIMILAR)
    similar = SimilarPatients(similarity_tables(cohort, design, models), synthetic=False)

    summary = similar.summary(
        {"hpfs": "coxnet", "os": "coxnet"}, "G3", ">75", {"hpfs": 0.0, "os": 0.0}
    )

    assert summary["hpfs"]["shown"] is True
    assert summary["hpfs"]["n_patients"] == MIN_SIMILAR
    assert summary["synthetic"] is False
    assert "synthetic" not in summary["note"].lower()


def test_the_bundle_keeps_group_aggregates_only_never_a_patients_time_event_or_score(
    prognosis_bundle, prognosis_cohort
):
    tables = prognosis_bundle.similar_patients
    group_keys = {"n_patients", "n_events", "curve", "numbers_at_risk"}
    times = set(np.round(prognosis_cohort["os_months"], 6)) | set(
        np.round(prognosis_cohort["hpfs_months"], 6)
    )
    for by_family in tables["strata"].values():
        for strata in by_family.values():
            for stratum in strata.values():
                assert set(stratum) == {"n", "cuts", "groups"}
                for group in stratum["groups"]:
                    assert set(group) == group_keys
                    assert group["n_patients"] >= min(K_SIMILAR, stratum["n"])
                    months = {p["month"] for p in group["curve"]}
                    assert all(float(m).is_integer() for m in months)
    assert not any(isinstance(v, pd.DataFrame) for v in tables["strata"].values())
    assert len(times) > 1000  # the cohort's times are continuous: none is a grid month


def test_a_bundle_without_the_tables_answers_without_patients_like_this(
    prognosis_bundle, prognosis_patient
):
    import dataclasses

    from model.predictor import Predictor

    old = dataclasses.replace(prognosis_bundle, similar_patients={})

    assert Predictor(old).prognosis(prognosis_patient())["similar_patients"] is None


def test_the_grade_derived_from_ki67_makes_the_stratum_where_no_grade_was_recorded():
    cohort, design, models = _tiny_cohort(MIN_SIMILAR)
    cohort["who_grade"] = None
    cohort["ki67_percent"] = 25.0

    tables = similarity_tables(cohort, design, models)

    assert set(tables["strata"]["os"]["coxnet"]) == {("G3", ">75")}
    assert tables["strata"]["os"]["coxnet"][("G3", ">75")]["n"] == MIN_SIMILAR


def test_the_product_limit_estimate_matches_lifelines_with_tied_and_censored_times():
    rng = np.random.default_rng(5)
    months = rng.integers(1, 40, size=60).astype(float)  # whole months: many ties
    event = rng.random(60) < 0.6

    curve, at_risk = kaplan_meier_on_grid(months, event)
    grid = np.array([p["month"] for p in curve])
    expected = KaplanMeierFitter().fit(months, event).survival_function_at_times(grid)

    np.testing.assert_allclose([p["survival"] for p in curve], expected.to_numpy(), atol=5e-5)
    assert [n["at_risk"] for n in at_risk] == [int((months >= n["month"]).sum()) for n in at_risk]
