"""Tests of cohort validation: every problem class is reported by row and column, nothing loads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from training.cli import main
from training.cohort_files import load_cohort, read_cohort
from training.exceptions import CohortReadError, CohortValidationError
from training.synthetic import simulate_cohort, write_cohort
from training.validate import hpfs_event_types, validate_cohort


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
        ("age_years", None, "row 5, column age_years: a value is required here"),
        ("os_event", None, "row 5, column os_event: a value is required here"),
        ("hpfs_months", None, "row 5, column hpfs_months: a value is required here"),
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


def test_hpfs_after_os_is_reported_for_its_row_and_column_with_a_remedy(cohort):
    broken = cohort.copy()
    broken.at[7, "hpfs_months"] = broken.at[7, "os_months"] + 1.0
    assert problems_of(broken) == [
        "row 8, column hpfs_months: must not exceed os_months: HPFS ends at hepatic progression "
        "or death, so it cannot end after OS ends; correct hpfs_months or os_months"
    ]


CENSORED_AT_DEATH = (
    "column hpfs_event: must be 1 where HPFS ends at an OS death (same time, os_event 1), as in "
    "a cause-specific export: a death ends HPFS as an event under the progression-or-death "
    "definition; recode hpfs_event to 1, and add hpfs_event_type to say it was a death"
)


def test_the_simulated_cohort_has_progressions_deaths_and_censorings_ending_hpfs(cohort):
    counts = cohort["hpfs_event_type"].value_counts()
    assert counts.sum() == 300
    assert min(counts["progression"], counts["death"], counts["censored"]) >= 20
    assert (cohort["hpfs_event"] == (cohort["hpfs_event_type"] != "censored")).all()


def test_a_cause_specific_export_is_refused_on_every_row_censored_at_an_os_death(cohort):
    deaths = cohort.index[cohort["hpfs_event_type"] == "death"]
    cause_specific = cohort.drop(columns="hpfs_event_type")
    cause_specific.loc[deaths, "hpfs_event"] = 0
    problems = problems_of(cause_specific)
    assert len(problems) == len(deaths) >= 20
    assert problems == [f"row {row + 1}, {CENSORED_AT_DEATH}" for row in deaths]


def test_an_hpfs_censored_within_half_a_day_of_an_os_death_is_refused(cohort):
    row = int(cohort.index[cohort["hpfs_event_type"] == "death"][0])
    broken = cohort.drop(columns="hpfs_event_type")
    broken.at[row, "hpfs_event"] = 0
    broken.at[row, "hpfs_months"] = broken.at[row, "os_months"] - 0.4 / 30.4375
    assert problems_of(broken) == [f"row {row + 1}, {CENSORED_AT_DEATH}"]
    broken.at[row, "hpfs_months"] = broken.at[row, "os_months"] - 0.6 / 30.4375
    assert validate_cohort(broken)["hpfs_event"].iloc[row] == 0


@pytest.mark.parametrize(
    ("event_type", "hpfs_event", "expected"),
    [
        (
            "progression",
            0,
            "must agree with hpfs_event: progression and death are HPFS events (hpfs_event 1), "
            "censored is hpfs_event 0; correct one of the two",
        ),
        (
            "censored",
            1,
            "must agree with hpfs_event: progression and death are HPFS events (hpfs_event 1), "
            "censored is hpfs_event 0; correct one of the two",
        ),
        (
            "death",
            1,
            "death must coincide with the OS death (os_event 1 and hpfs_months equal to "
            "os_months); if hepatic progression came first, record progression, otherwise "
            "correct the times",
        ),
        ("relapse", 1, "must be one of progression, death, censored"),
    ],
)
def test_an_event_type_that_does_not_fit_the_outcomes_is_reported_for_its_row(
    cohort, event_type, hpfs_event, expected
):
    row = int(cohort.index[(cohort["hpfs_event_type"] == "progression")][0])
    assert cohort.at[row, "hpfs_months"] < cohort.at[row, "os_months"]
    broken = corrupt(cohort, row, "hpfs_event_type", event_type)
    broken.at[row, "hpfs_event"] = hpfs_event
    assert problems_of(broken) == [f"row {row + 1}, column hpfs_event_type: {expected}"]


def test_a_censored_event_type_at_an_os_death_is_refused_naming_the_event_type(cohort):
    row = int(cohort.index[cohort["hpfs_event_type"] == "death"][0])
    broken = corrupt(cohort, row, "hpfs_event_type", "censored")
    broken.at[row, "hpfs_event"] = 0
    assert problems_of(broken) == [
        f"row {row + 1}, column hpfs_event_type: must not be censored where HPFS ends at an OS "
        "death (same time, os_event 1): a death ends HPFS as an event under the "
        "progression-or-death definition; recode it to death and hpfs_event to 1"
    ]


def test_event_types_are_derived_from_os_where_the_column_is_absent_or_empty(cohort):
    derived = hpfs_event_types(cohort.drop(columns="hpfs_event_type"))
    np.testing.assert_array_equal(derived, cohort["hpfs_event_type"].to_numpy())
    emptied = corrupt(cohort, 0, "hpfs_event_type", None)
    assert hpfs_event_types(validate_cohort(emptied))[0] == cohort.at[0, "hpfs_event_type"]


def test_the_derivation_rule_reads_an_event_at_an_os_death_as_death_and_others_as_progression():
    outcomes = pd.DataFrame(
        {
            "hpfs_months": [5.0, 9.0, 9.0, 9.0, 4.0],
            "hpfs_event": [1, 1, 1, 0, 0],
            "os_months": [9.0, 9.0, 9.0, 9.0, 9.0],
            "os_event": [1, 1, 0, 0, 1],
        }
    )
    assert hpfs_event_types(outcomes).tolist() == [
        "progression",
        "death",
        "progression",
        "censored",
        "censored",
    ]


def test_a_recorded_event_type_wins_over_the_derivation(cohort):
    row = int(cohort.index[cohort["hpfs_event_type"] == "death"][0])
    progressed_at_death = corrupt(cohort, row, "hpfs_event_type", "progression")
    assert hpfs_event_types(validate_cohort(progressed_at_death))[row] == "progression"
    derived = hpfs_event_types(progressed_at_death.drop(columns="hpfs_event_type"))
    assert derived[row] == "death"


def test_event_type_messages_never_echo_the_offending_value(cohort):
    problems = problems_of(corrupt(cohort, 4, "hpfs_event_type", "CANARY-58213"))
    assert problems == [
        "row 5, column hpfs_event_type: must be one of progression, death, censored"
    ]


def test_duplicate_patient_ids_are_reported_on_every_copy(cohort):
    broken = corrupt(cohort, 9, "patient_id", cohort.at[2, "patient_id"])
    assert problems_of(broken) == [
        "row 3, column patient_id: must be unique, but this patient_id appears more than once",
        "row 10, column patient_id: must be unique, but this patient_id appears more than once",
    ]


def test_empty_imputable_predictors_are_accepted_and_kept_empty(cohort):
    holed = corrupt(corrupt(cohort, 0, "who_grade", None), 0, "ki67_percent", None)
    holed = corrupt(corrupt(holed, 3, "tumor_burden_percent", None), 4, "somatostatin_analog", None)
    typed = validate_cohort(holed)
    assert pd.isna(typed.at[0, "who_grade"])
    assert pd.isna(typed.at[0, "ki67_percent"])
    assert pd.isna(typed.at[3, "tumor_burden_percent"])
    assert typed.at[4, "somatostatin_analog"] is None
    assert typed["extrahepatic_metastases"].dtype == bool


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


def test_a_csv_cut_inside_its_optional_columns_is_refused_naming_the_first_missing_one(
    cohort, tmp_path
):
    path = write_cohort(cohort, tmp_path / "c.csv")
    text = path.read_text()
    cut = text.index(",", text.index("SYN0000151")) + 1
    for _ in range(list(cohort.columns).index("true_lp_os") - 1):
        cut = text.index(",", cut) + 1
    path.write_text(text[: cut - 1])
    with pytest.raises(CohortValidationError) as caught:
        load_cohort(path)
    assert [str(p) for p in caught.value.problems] == [
        f"row 151, column true_lp_os: is missing: the last row has "
        f"{list(cohort.columns).index('true_lp_os')} of the header's {cohort.shape[1]} fields, "
        "so the file looks cut short; export it again"
    ]


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
