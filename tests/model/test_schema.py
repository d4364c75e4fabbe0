"""Tests of the patient schema: field boundaries, derived categories and the encoding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from model.schema import (
    FEATURE_NAMES,
    Patient,
    burden_categories,
    burden_category,
    encode,
    grade_from_ki67,
    patients_frame,
)

VALID = {
    "age_years": 60,
    "who_grade": "G2",
    "tumor_burden_percent": 30.0,
    "primary_site": "pancreas",
    "prior_hepatic_treatment": False,
    "extrahepatic_metastases": False,
    "somatostatin_analog": True,
    "biologic_therapy": False,
    "cytotoxic_chemotherapy": False,
    "planned_modality": "SIRT",
}


def patient(**changes) -> Patient:
    return Patient(**{**VALID, **changes})


def error_fields(**changes) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        patient(**changes)
    return {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}


@pytest.mark.parametrize(
    ("field", "lowest", "highest", "below", "above"),
    [
        ("age_years", 18, 100, 17, 101),
        ("ki67_percent", 0.0, 100.0, -0.1, 100.1),
        ("tumor_burden_percent", 0.0, 100.0, -0.1, 100.1),
    ],
)
def test_numeric_fields_accept_their_bounds_and_reject_values_beyond(
    field, lowest, highest, below, above
):
    assert getattr(patient(**{field: lowest}), field) == lowest
    assert getattr(patient(**{field: highest}), field) == highest
    assert error_fields(**{field: below}) == {field}
    assert error_fields(**{field: above}) == {field}


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_numbers_are_rejected(value):
    assert error_fields(tumor_burden_percent=value) == {"tumor_burden_percent"}


def test_unknown_primary_site_is_rejected_with_the_allowed_values():
    with pytest.raises(ValidationError) as caught:
        patient(primary_site="liver")
    message = caught.value.errors()[0]["msg"]
    for site in ("pancreas", "gut", "lung", "other"):
        assert site in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("who_grade", "G4"),
        ("planned_modality", "RFA"),
        ("sex", "unknown"),
        ("prior_hepatic_treatment", "yes"),
        ("somatostatin_analog", 1),
    ],
)
def test_values_outside_a_fields_allowed_set_are_rejected(field, value):
    assert error_fields(**{field: value}) == {field}


def test_a_misspelled_field_is_rejected_rather_than_ignored():
    assert error_fields(tumour_burden_percent=40) == {"tumour_burden_percent"}


def test_a_patient_without_grade_or_ki67_has_an_unknown_grade_to_impute():
    unknown = patient(who_grade=None, tumor_burden_percent=None, extrahepatic_metastases=None)
    assert unknown.grade is None
    assert unknown.burden_category is None
    expected = ("who_grade", "tumor_burden_percent", "extrahepatic_metastases")
    assert unknown.unknown_fields == expected
    assert patient(who_grade=None, ki67_percent=8.0).unknown_fields == ()


@pytest.mark.parametrize(
    ("ki67", "grade"),
    [
        (0.0, "G1"),
        (2.9, "G1"),
        (3.0, "G2"),
        (12.0, "G2"),
        (20.0, "G2"),
        (20.1, "G3"),
        (100.0, "G3"),
    ],
)
def test_ki67_gives_the_who_2010_grade(ki67, grade):
    assert grade_from_ki67(ki67) == grade
    assert patient(who_grade=None, ki67_percent=ki67).grade == grade


def test_a_recorded_grade_takes_precedence_over_ki67():
    assert patient(who_grade="G1", ki67_percent=25.0).grade == "G1"


@pytest.mark.parametrize(
    ("percent", "category"),
    [
        (0.0, "<25"),
        (24.9, "<25"),
        (25.0, "25-50"),
        (50.0, "25-50"),
        (50.1, "50-75"),
        (75.0, "50-75"),
        (75.1, ">75"),
        (100.0, ">75"),
    ],
)
def test_burden_categories_follow_the_papers_cut_offs(percent, category):
    assert burden_category(percent) == category
    assert burden_categories(np.array([percent]))[0] == category
    assert patient(tumor_burden_percent=percent).burden_category == category


def test_the_encodings_column_order_is_stable():
    assert FEATURE_NAMES == (
        "grade_G2",
        "grade_G3",
        "TAE_in_G1",
        "SIRT_in_G1",
        "TAE_in_G2",
        "SIRT_in_G2",
        "TAE_in_G3",
        "SIRT_in_G3",
        "site_gut",
        "site_lung",
        "site_other",
        "burden_25_50",
        "burden_50_75",
        "burden_gt_75",
        "prior_hepatic_treatment",
        "extrahepatic_metastases",
        "somatostatin_analog",
        "biologic_therapy",
        "cytotoxic_chemotherapy",
        "age_decades_from_60",
    )


def test_encoding_uses_the_papers_reference_levels_and_modality_within_grade():
    frame = patients_frame(
        [
            patient(),
            patient(
                who_grade="G1",
                primary_site="pancreas",
                tumor_burden_percent=10.0,
                planned_modality="TACE",
                age_years=60,
                somatostatin_analog=False,
            ),
            patient(
                who_grade=None,
                ki67_percent=30.0,
                primary_site="lung",
                tumor_burden_percent=80.0,
                planned_modality="TAE",
                age_years=45,
                prior_hepatic_treatment=True,
            ),
        ]
    )
    design = encode(frame)
    assert list(design.columns) == list(FEATURE_NAMES)
    first = design.iloc[0]
    assert first[first != 0].to_dict() == {
        "grade_G2": 1.0,
        "SIRT_in_G2": 1.0,
        "burden_25_50": 1.0,
        "somatostatin_analog": 1.0,
    }
    assert (design.iloc[1] == 0).all()
    third = design.iloc[2]
    assert third[third != 0].to_dict() == {
        "grade_G3": 1.0,
        "TAE_in_G3": 1.0,
        "site_lung": 1.0,
        "burden_gt_75": 1.0,
        "prior_hepatic_treatment": 1.0,
        "somatostatin_analog": 1.0,
        "age_decades_from_60": -1.5,
    }


def test_encoding_a_counterfactual_modality_changes_only_the_modality_columns():
    frame = patients_frame([patient(who_grade="G3")])
    as_sirt, as_tace = encode(frame, "SIRT"), encode(frame, "TACE")
    changed = as_sirt.columns[(as_sirt != as_tace).iloc[0]]
    assert list(changed) == ["SIRT_in_G3"]


def test_encoding_an_unknown_modality_is_an_error():
    frame = patients_frame([patient()])
    with pytest.raises(ValueError, match="modality must be one of TACE, TAE, SIRT"):
        encode(frame, pd.Series(["PRRT"]))
