"""Tests of cohort validation: every problem class is reported by row and column, nothing loads."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from training.cli import main
from training.exceptions import CohortReadError, CohortValidationError
from training.synthetic import simulate_cohort, write_cohort
from training.validate import load_cohort, read_cohort, validate_cohort


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return simulate_cohort(300, seed=11)


def problems_of(frame: pd.DataFrame, **kwargs) -> list[str]:
    with pytest.raises(CohortValidationError) as caught:
        validate_cohort(frame, **kwargs)
    return [str(p) for p in caught.value.problems]


def corrupt(frame: pd.DataFrame, row: int, column: str, value) -> pd.DataFrame:
    broken = frame.astype({column: object}).copy()
    broken.at[row, column] = value
    return broken


def test_a_simulated_cohort_is_valid_and_comes_back_typed(cohort):
    typed = validate_cohort(cohort)
    assert len(typed) == len(cohort)
    assert typed["extrahepatic_metastases"].dtype == bool
    assert typed["age_years"].dtype.kind == "i"


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("age_years", 17, "row 5, column age_years: must be a whole number between 18 and 100"),
        ("age_years", 61.5, "row 5, column age_years: must be a whole number of years"),
        (
            "age_years",
            "sixty",
            "row 5, column age_years: must be a whole number between 18 and 100",
        ),
        (
            "tumor_burden_percent",
            120.0,
            "row 5, column tumor_burden_percent: must be a number between 0 and 100",
        ),
        (
            "primary_site",
            "liver",
            "row 5, column primary_site: must be one of pancreas, gut, lung, other",
        ),
        ("modality", "PRRT", "row 5, column modality: must be one of TACE, TAE, SIRT"),
        ("who_grade", "G4", "row 5, column who_grade: must be one of G1, G2, G3"),
        (
            "extrahepatic_metastases",
            "maybe",
            "row 5, column extrahepatic_metastases: must be true or false",
        ),
        (
            "tumor_burden_percent",
            None,
            "row 5, column tumor_burden_percent: a value is required here",
        ),
        ("os_months", 0.0, "row 5, column os_months: must be a positive number of months"),
        ("hpfs_months", -3.0, "row 5, column hpfs_months: must be a positive number of months"),
        ("os_event", 2, "row 5, column os_event: must be 0 (censored) or 1 (event)"),
    ],
)
def test_a_bad_value_is_reported_with_its_row_column_and_what_was_expected(
    cohort, column, value, expected
):
    problems = problems_of(corrupt(cohort, 4, column, value))
    assert len(problems) == 1
    assert problems[0].startswith(expected)


def test_a_missing_column_is_named(cohort):
    assert problems_of(cohort.drop(columns=["os_event"])) == [
        "column os_event: required column is missing"
    ]


def test_hpfs_after_os_is_reported_for_its_row(cohort):
    broken = cohort.copy()
    broken.at[7, "hpfs_months"] = broken.at[7, "os_months"] + 1.0
    assert problems_of(broken) == [
        "row 8: hpfs_months must not exceed os_months (progression after death)"
    ]


def test_duplicate_patient_ids_are_reported_on_every_copy(cohort):
    broken = corrupt(cohort, 9, "patient_id", cohort.at[2, "patient_id"])
    assert problems_of(broken) == [
        "row 3, column patient_id: must be unique, but this patient_id appears more than once",
        "row 10, column patient_id: must be unique, but this patient_id appears more than once",
    ]


def test_neither_grade_nor_ki67_is_reported(cohort):
    broken = corrupt(corrupt(cohort, 0, "who_grade", None), 0, "ki67_percent", None)
    assert problems_of(broken) == ["row 1: who_grade or ki67_percent must be given"]


def test_true_columns_offered_as_features_are_refused(cohort):
    problems = problems_of(cohort, feature_columns=["age_years", "true_lp_os"])
    assert problems == [
        "column true_lp_os: true_* columns are the generator's truth "
        "and must not be used as features"
    ]


def test_every_problem_is_reported_at_once_and_the_message_is_capped(cohort):
    broken = cohort.copy()
    broken["age_years"] = 10
    with pytest.raises(CohortValidationError) as caught:
        validate_cohort(broken)
    assert len(caught.value.problems) == len(cohort)
    assert f"and {len(cohort) - 50} more problem(s)" in str(caught.value)


def test_validation_messages_never_echo_the_offending_value(cohort):
    problems = problems_of(corrupt(cohort, 4, "primary_site", "CANARY-93731"))
    assert not any("CANARY-93731" in p for p in problems)


def test_csv_and_parquet_load_to_the_same_typed_cohort(cohort, tmp_path):
    from_csv = load_cohort(write_cohort(cohort, tmp_path / "c.csv"))
    from_parquet = load_cohort(write_cohort(cohort, tmp_path / "c.parquet"))
    columns = [c for c in from_csv.columns if c != "treatment_date"]
    pd.testing.assert_frame_equal(from_csv[columns], from_parquet[columns], check_dtype=False)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "could not be read as csv"),
        (b"patient_id,age_years\n\xff\xfe\x00bad", "must be UTF-8 text"),
    ],
)
def test_unreadable_files_are_a_clear_error(tmp_path, content, expected):
    path = tmp_path / "cohort.csv"
    path.write_bytes(content)
    with pytest.raises(CohortReadError, match=expected):
        read_cohort(path)


def test_a_truncated_csv_fails_validation_instead_of_loading_part_of_it(cohort, tmp_path):
    path = write_cohort(cohort, tmp_path / "c.csv")
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(CohortValidationError):
        load_cohort(path)


def test_the_validate_command_exits_0_for_a_valid_cohort_and_2_with_messages_otherwise(
    cohort, tmp_path
):
    runner = CliRunner()
    good = write_cohort(cohort, tmp_path / "good.csv")
    result = runner.invoke(main, ["validate", str(good)])
    assert result.exit_code == 0
    assert "valid cohort of 300 patients" in result.output
    bad = write_cohort(corrupt(cohort, 4, "os_event", 2), tmp_path / "bad.csv")
    result = runner.invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "row 5, column os_event: must be 0 (censored) or 1 (event)" in result.output


def test_the_simulate_command_writes_a_valid_cohort(tmp_path):
    out = tmp_path / "sim.parquet"
    result = CliRunner().invoke(main, ["simulate", "--n", "50", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(load_cohort(out)) == 50
