"""Follow-up adequacy: values are flagged wherever too few training patients remain at risk."""

from __future__ import annotations

import numpy as np
import pytest

from model.predictor import Predictor
from model.schema import ENDPOINTS, Patient
from training.fit import adequately_followed_month, fit_bundle, numbers_at_risk
from training.synthetic import simulate_cohort
from training.validate import validate_cohort


@pytest.fixture(scope="module")
def default_cohort_and_prognosis():
    cohort = validate_cohort(simulate_cohort(2000, seed=0))
    patient = Patient(
        age_years=55,
        who_grade="G1",
        tumor_burden_percent=10,
        primary_site="gut",
        prior_hepatic_treatment=False,
        extrahepatic_metastases=False,
        somatostatin_analog=True,
        biologic_therapy=False,
        cytotoxic_chemotherapy=False,
        planned_modality="TACE",
    )
    return cohort, Predictor(fit_bundle(cohort, seed=0)).prognosis(patient)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_no_value_is_unflagged_where_fewer_than_max_50_or_5_percent_remain_at_risk(
    default_cohort_and_prognosis, endpoint
):
    cohort, prognosis = default_cohort_and_prognosis
    months = cohort[f"{endpoint}_months"].to_numpy()
    needed = max(50, 0.05 * len(cohort))
    for horizon, value in prognosis[endpoint]["survival_at"].items():
        if (months >= int(horizon)).sum() < needed:
            assert value["extrapolated"], (endpoint, horizon)
    first_flagged = prognosis[endpoint]["extrapolated_from_month"]
    assert first_flagged is not None
    assert (months >= first_flagged).sum() < needed
    assert (months >= first_flagged - 1).sum() >= needed


def test_hpfs_at_five_years_is_flagged_on_the_default_cohort(default_cohort_and_prognosis):
    _, prognosis = default_cohort_and_prognosis
    assert prognosis["hpfs"]["survival_at"]["60"]["extrapolated"]


def test_numbers_at_risk_are_the_patients_followed_to_each_year(default_cohort_and_prognosis):
    cohort, prognosis = default_cohort_and_prognosis
    months = cohort["os_months"].to_numpy()
    for entry in prognosis["os"]["numbers_at_risk"]:
        assert entry["at_risk"] == int((months >= entry["month"]).sum())
    assert prognosis["os"]["numbers_at_risk"][0] == {"month": 0, "at_risk": 2000}


def test_adequate_follow_up_needs_the_larger_of_50_patients_and_5_percent():
    times = np.arange(1, 2001, dtype=float)
    assert adequately_followed_month(times) == 1901.0
    assert adequately_followed_month(times[:400]) == 351.0
    assert adequately_followed_month(times[:30]) == 0.0
    assert numbers_at_risk(times[:30], months=(0, 12, 30, 31)) == {0: 30, 12: 19, 30: 1, 31: 0}
