"""The built-in default claims only what the published evidence behind it supports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.bundle import MONTH_GRID
from model.modality import RMST_HORIZON_MONTHS
from model.predictor import Predictor
from model.schema import MODALITIES, Patient, encode, patients_frame
from training.fit import fit_bundle, load_evidence_base
from training.synthetic import CohortSpec, simulate_cohort
from training.validate import validate_cohort

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"
EXAMPLE_PATIENTS = ("g1_gut_tace", "g2_pancreas_sirt", "g3_ki67_only_lung")

# The G3 patient: Ki-67 > 20 %, burden 20 %, gut primary, on a somatostatin analogue
# (the other fields as in the `prognosis_patient` factory).
G3_FIELDS = {
    "age_years": 60,
    "who_grade": None,
    "ki67_percent": 30.0,
    "tumor_burden_percent": 20.0,
    "primary_site": "gut",
}


@pytest.fixture(scope="module")
def g3_patient(prognosis_patient):
    return prognosis_patient(**G3_FIELDS)


# Chen 2017's propensity-adjusted TARE (SIRT) vs TACE OS hazard ratio, 1.8 with p = 0.11:
# its 95 % CI from the p-value, exp(ln 1.8 +- 1.96 ln 1.8 / z(0.945)).
_CHEN_SE = np.log(1.8) / 1.598
CHEN_SIRT_VS_TACE_CI = (1.8 * np.exp(-1.96 * _CHEN_SE), 1.8 * np.exp(1.96 * _CHEN_SE))


SMALL_SEEDS = range(1, 6)


@pytest.fixture(scope="module")
def default_and_small():
    cohort = validate_cohort(simulate_cohort(2000, seed=0))
    default = fit_bundle(cohort, seed=0, evidence=CohortSpec.load())
    sampling_only = fit_bundle(cohort, seed=0)
    small = [
        fit_bundle(validate_cohort(simulate_cohort(184, seed=seed)), seed=0) for seed in SMALL_SEEDS
    ]
    return Predictor(default), Predictor(sampling_only), [Predictor(b) for b in small]


def _example(name: str) -> Patient:
    return Patient(**json.loads((EXAMPLES / f"{name}.json").read_text())["patient"])


def _log_cumulative_hazard_se(predictor: Predictor, patient: Patient, endpoint: str) -> float:
    """The standard error behind the 24-month interval, on the scale it is computed on.

    From the unrounded curves: a survival near zero is rounded to 0 in the answer.
    """
    design = encode(patients_frame([patient]), patient.planned_modality).to_numpy()
    survival, lower, _ = predictor.endpoints[endpoint].curves.survival_interval(design)
    return float(np.log(np.log(lower[0, 24]) / np.log(survival[0, 24])) / 1.96)


@pytest.mark.parametrize("name", EXAMPLE_PATIENTS)
@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_default_intervals_at_24_months_are_no_narrower_than_a_184_patient_cox_model(
    default_and_small, name, endpoint
):
    # Compared on the log cumulative hazard scale the intervals are built on: on the survival
    # scale a width also depends on where the estimate lies (near 0 or 1 every interval is
    # narrow), and each 184-patient cohort puts it elsewhere. The 184-patient models are
    # fitted as training fits them, on five cohorts: the default must be at least as wide as
    # their median.
    default, _, small = default_and_small
    patient = _example(name)
    reference = np.median([_log_cumulative_hazard_se(p, patient, endpoint) for p in small])
    assert _log_cumulative_hazard_se(default, patient, endpoint) >= reference


def test_literature_uncertainty_widens_the_default_beyond_its_synthetic_sample(
    default_and_small,
):
    default, sampling_only, _ = default_and_small
    patient = _example("g2_pancreas_sirt")
    wide, narrow = (
        p.prognosis(patient)["os"]["survival_at"]["24"] for p in (default, sampling_only)
    )
    assert wide["value"] == narrow["value"]
    assert wide["upper"] - wide["lower"] > 2 * (narrow["upper"] - narrow["lower"])


def test_the_answer_says_which_uncertainty_its_intervals_carry(default_and_small):
    default, sampling_only, _ = default_and_small
    patient = _example("g1_gut_tace")
    assert default.prognosis(patient)["model"]["uncertainty"]["kind"] == "literature"
    assert "published estimates" in default.prognosis(patient)["model"]["uncertainty"]["text"]
    assert sampling_only.prognosis(patient)["model"]["uncertainty"]["kind"] == "sampling"


def test_g3_median_os_under_every_modality_is_at_most_twice_the_same_patients_g2_median(
    default_and_small, g3_patient, prognosis_patient
):
    default, _, _ = default_and_small
    as_g3 = default.prognosis(g3_patient)["os"]["modalities"]
    as_g2 = default.prognosis(prognosis_patient(**{**G3_FIELDS, "ki67_percent": 10.0}))["os"][
        "modalities"
    ]
    for g3, g2 in zip(as_g3, as_g2, strict=True):
        assert g3["median_months"]["value"] is not None
        assert g3["median_months"]["value"] <= 2 * (g2["median_months"]["value"] or np.inf)


def test_g3_sirt_vs_tace_rmst_interval_includes_what_the_published_hazard_ratio_allows(
    default_and_small, g3_patient
):
    default, _, _ = default_and_small
    answer = default.prognosis(g3_patient)["os"]
    tace = np.array([p["survival"] for p in answer["curve"]])
    months = MONTH_GRID[: RMST_HORIZON_MONTHS + 1]
    allowed = sorted(
        float(np.trapezoid(tace[: months.size] ** ratio - tace[: months.size], months))
        for ratio in CHEN_SIRT_VS_TACE_CI
    )
    sirt = next(m for m in answer["modalities"] if m["modality"] == "SIRT")
    served = sirt["difference_vs_planned"]["rmst_60_months"]
    assert served["lower"] <= allowed[1]
    assert served["upper"] >= allowed[0]


def test_every_g3_modality_comparison_of_the_default_carries_a_support_warning(
    default_and_small, g3_patient
):
    default, sampling_only, _ = default_and_small
    warned = [
        w["modality"]
        for w in default.prognosis(g3_patient)["warnings"]
        if w["code"] == "modality_extrapolated"
    ]
    assert sorted(warned) == sorted(MODALITIES)
    supports = [m["support"] for m in default.prognosis(g3_patient)["os"]["modalities"]]
    assert all(s["source_patients"] < 10 for s in supports)
    assert all("very few real patients" in s["warning"] for s in supports)
    # A registry model is judged by its own training data only.
    registry_supports = sampling_only.prognosis(g3_patient)["os"]["modalities"]
    assert all(m["support"]["source_patients"] is None for m in registry_supports)


def test_evidence_base_counts_patients_per_grade_from_chen_2017():
    evidence = load_evidence_base()
    assert evidence["patients_by_grade"] == {"G1": 75, "G2": 60, "G3": 20}
    assert sum(evidence["patients_by_modality"].values()) == 155
    assert evidence["patients_by_grade_and_modality"]["G3"] == {"TACE": 6, "TAE": 5, "SIRT": 8}
    assert min(evidence["patients_by_grade_and_modality"]["G1"].values()) >= 10
