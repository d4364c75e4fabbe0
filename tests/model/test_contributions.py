"""Time-dependent contributions: exact, additive to S(t) - S_reference(t), and faithful to a
known truth whose ranking of factors changes between 12 and 36 months."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from model.bundle import MONTH_GRID
from model.contributions import (
    CONTRIBUTION_HORIZONS,
    REFERENCE_PATIENT,
    coalition_designs,
    contributions_over_time,
    exact_shapley,
    point_incidence,
)
from model.cox_inference import cumulative_incidence
from model.explain import FIELD_FACTORS, field_labels
from model.schema import FEATURE_NAMES, Patient, encode, patients_frame

MONTHS = np.asarray(CONTRIBUTION_HORIZONS, dtype=float)
CURVES = ("hpfs", "os", "hepatic_progression")


def _brute_force_shapley(value, n):
    """Shapley values by the permutation definition (n! orderings)."""
    totals = np.zeros(n)
    orders = list(itertools.permutations(range(n)))
    for order in orders:
        coalition = 0
        for j in order:
            totals[j] += value(coalition | (1 << j)) - value(coalition)
            coalition |= 1 << j
    return totals / len(orders)


def test_exact_shapley_matches_the_permutation_definition_on_a_game_with_interactions():
    rng = np.random.default_rng(3)
    table = rng.normal(size=2**4)

    got = exact_shapley(table)
    expected = _brute_force_shapley(lambda c: table[c], 4)

    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert got.sum() == pytest.approx(table[-1] - table[0], abs=1e-12)


def test_exact_shapley_refuses_a_table_that_is_not_one_row_per_coalition():
    with pytest.raises(ValueError, match="power of two"):
        exact_shapley(np.zeros(6))


def test_the_first_and_last_coalition_designs_are_the_reference_and_the_patient(
    prognosis_patient,
):
    patient = prognosis_patient(who_grade="G3", planned_modality="SIRT", tumor_burden_percent=80)
    fields = {name: getattr(patient, name) for name in FIELD_FACTORS}
    fields["who_grade"] = patient.grade

    designs = coalition_designs(fields)
    patient_design = encode(patients_frame([patient]), "SIRT").to_numpy()[0]
    reference = Patient(**REFERENCE_PATIENT)
    reference_design = encode(patients_frame([reference]), "TACE").to_numpy()[0]

    assert designs.shape == (2 ** len(FIELD_FACTORS), len(FEATURE_NAMES))
    np.testing.assert_array_equal(designs[-1], patient_design)
    np.testing.assert_array_equal(designs[0], reference_design)
    # Grade alone from the patient: a G3 tumour under the reference TACE has no SIRT column.
    grade_only = designs[1 << list(FIELD_FACTORS).index("who_grade")]
    assert grade_only[FEATURE_NAMES.index("grade_G3")] == 1
    assert grade_only[FEATURE_NAMES.index("SIRT_in_G3")] == 0


@pytest.mark.parametrize("predictor_name", ["prognosis_predictor", "prognosis_boosted_predictor"])
@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"who_grade": "G3", "tumor_burden_percent": 80, "planned_modality": "SIRT"},
        {"age_years": 45, "prior_hepatic_treatment": True, "extrahepatic_metastases": True},
    ],
)
def test_contributions_add_up_to_the_patients_minus_the_references_probability(
    request, prognosis_patient, predictor_name, fields
):
    predictor = request.getfixturevalue(predictor_name)
    patient = prognosis_patient(**fields)

    answer = predictor.prognosis(patient, contributions_over_time=True)
    reference = predictor.prognosis(Patient(**REFERENCE_PATIENT))
    over_time = answer["contributions_over_time"]

    curves = [c for c in CURVES if c in over_time and over_time[c] is not None]
    assert curves[:2] == ["hpfs", "os"]
    for curve in curves:
        for at in over_time[curve]["at"]:
            total = sum(item["contribution"] for item in at["items"])
            assert abs(total - (at["value"] - at["reference_value"])) < 1e-6, (curve, at["month"])
            assert len(at["items"]) == len(FIELD_FACTORS)
            month = str(at["month"])
            if curve == "hepatic_progression":
                served = answer[curve]["cumulative_incidence_at"][month]["value"]
                served_reference = reference[curve]["cumulative_incidence_at"][month]["value"]
            else:
                served = answer[curve]["survival_at"][month]["value"]
                served_reference = reference[curve]["survival_at"][month]["value"]
            # The game is played on the served curves themselves (rounded to 4 decimals there).
            assert at["value"] == pytest.approx(served, abs=5e-5)
            assert at["reference_value"] == pytest.approx(served_reference, abs=5e-5)


def test_without_the_option_the_answer_has_no_contributions(prognosis_predictor, prognosis_patient):
    assert "contributions_over_time" not in prognosis_predictor.prognosis(prognosis_patient())


def test_the_point_incidence_is_the_delta_method_functions_estimate(prognosis_predictor):
    cause, competing = prognosis_predictor.endpoints["hpfs"].incidence.components
    designs = coalition_designs({**REFERENCE_PATIENT, "who_grade": "G2", "age_years": 70})[:64]
    at = np.searchsorted(MONTH_GRID, CONTRIBUTION_HORIZONS)

    expected = cumulative_incidence(cause, competing, designs, at=at)[0]

    np.testing.assert_allclose(point_incidence(cause, competing, designs), expected, atol=1e-12)


# A constructed truth: survival exp(-H0(t) exp(beta . x)) acting on two of the patient's
# fields only, tumour burden 50-75 % (harmful) and a somatostatin analogue (protective).
BURDEN = FEATURE_NAMES.index("burden_50_75")
ANALOGUE = FEATURE_NAMES.index("somatostatin_analog")


def _constructed_patient() -> tuple[dict, dict]:
    patient = Patient(
        **{**REFERENCE_PATIENT, "tumor_burden_percent": 60, "somatostatin_analog": True}
    )
    fields = {name: getattr(patient, name) for name in FIELD_FACTORS}
    return fields, field_labels(patient, "TACE")


def _ranking(over_time, curve, month) -> list[str]:
    at = next(a for a in over_time[curve]["at"] if a["month"] == month)
    return [item["field"] for item in at["items"]]


def _contribution(over_time, curve, month, field) -> float:
    at = next(a for a in over_time[curve]["at"] if a["month"] == month)
    return next(i["contribution"] for i in at["items"] if i["field"] == field)


def test_under_proportional_hazards_the_contributions_are_the_true_shapley_values_and_grow():
    baseline_hazard = 0.02 * MONTHS  # H0(12) = 0.24, H0(36) = 0.72
    beta_burden, beta_analogue = 1.0, -1.2

    def truth(design):
        log_hazard = beta_burden * design[:, BURDEN] + beta_analogue * design[:, ANALOGUE]
        return np.exp(-np.exp(log_hazard)[:, None] * baseline_hazard)

    fields, labels = _constructed_patient()
    over_time = contributions_over_time({"os": truth}, fields, labels)

    for h, month in enumerate(CONTRIBUTION_HORIZONS):
        s = {
            (b, a): math.exp(-math.exp(beta_burden * b + beta_analogue * a) * baseline_hazard[h])
            for b in (0, 1)
            for a in (0, 1)
        }
        true_burden = 0.5 * ((s[1, 0] - s[0, 0]) + (s[1, 1] - s[0, 1]))
        true_analogue = 0.5 * ((s[0, 1] - s[0, 0]) + (s[1, 1] - s[1, 0]))
        assert _contribution(over_time, "os", month, "tumor_burden_percent") == pytest.approx(
            true_burden, abs=1e-7
        )
        assert _contribution(over_time, "os", month, "somatostatin_analog") == pytest.approx(
            true_analogue, abs=1e-7
        )
    # A constant hazard ratio moves S(t) by more probability points as S falls from 1.
    burden = [_contribution(over_time, "os", m, "tumor_burden_percent") for m in (12, 36)]
    assert burden[1] < burden[0] < 0
    assert all(
        _contribution(over_time, "os", month, field) == 0.0
        for month in CONTRIBUTION_HORIZONS
        for field in FIELD_FACTORS
        if field not in ("tumor_burden_percent", "somatostatin_analog")
    )


def test_the_ranking_changes_from_12_to_36_months_where_the_truths_effects_change_with_time():
    # Burden doubles the hazard in the first 6 months only; in this constructed truth the
    # analogue triples it from month 24 on. So burden must rank first at 12 months, where the
    # analogue has had no effect at all, and the analogue first at 36.
    def truth(design):
        early = 0.01 * np.minimum(MONTHS, 6.0) * (1 + design[:, [BURDEN]])
        late = 0.03 * np.maximum(MONTHS - 24.0, 0.0) * (1 + 2 * design[:, [ANALOGUE]])
        middle = 0.01 * (np.minimum(MONTHS, 24.0) - 6.0)
        return np.exp(-(early + middle + late))

    fields, labels = _constructed_patient()
    over_time = contributions_over_time({"hpfs": truth}, fields, labels)

    assert _contribution(over_time, "hpfs", 12, "somatostatin_analog") == 0.0
    assert _ranking(over_time, "hpfs", 12)[0] == "tumor_burden_percent"
    assert _ranking(over_time, "hpfs", 36)[0] == "somatostatin_analog"
    late = _contribution(over_time, "hpfs", 36, "somatostatin_analog")
    assert late < _contribution(over_time, "hpfs", 36, "tumor_burden_percent") < 0
