"""Tests of the data dictionary: derived from the schemas, and the retraining guide matches it."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from model.schema import Patient
from training.cli import main
from training.dictionary import cohort_columns, dictionary_markdown
from training.validate import COHORT_SCHEMA

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "retraining.md"
BEGIN, END = "<!-- data-dictionary:begin -->\n", "<!-- data-dictionary:end -->"


def test_the_retraining_guide_embeds_exactly_the_generated_dictionary():
    text = GUIDE.read_text(encoding="utf-8")
    embedded = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
    assert embedded == dictionary_markdown()


def test_netprog_dictionary_prints_the_generated_table():
    result = CliRunner().invoke(main, ["dictionary"])
    assert result.exit_code == 0
    assert result.output == dictionary_markdown()


def test_every_cohort_schema_column_and_patient_field_is_described_once():
    names = [column.name for column in cohort_columns()]
    assert len(names) == len(set(names)) == 22
    assert set(COHORT_SCHEMA.columns) == set(names)
    assert set(Patient.model_fields) <= set(names)


def test_ranges_units_and_requirements_come_from_the_schemas():
    columns = {column.name: column for column in cohort_columns()}
    assert (columns["age_years"].type, columns["age_years"].allowed) == ("integer", "18-100")
    assert columns["age_years"].unit == "years"
    assert columns["tumor_burden_percent"].unit == "% of liver volume"
    assert columns["primary_site"].allowed == "`pancreas`, `gut`, `lung`, `other`"
    assert columns["os_months"].required == "yes"
    assert columns["center"].required == "no"
    assert columns["sex"].predictor == "no"
    assert columns["modality"].predictor == "yes"
    grade_rule = "no; with neither it nor `ki67_percent`, the grade is imputed"
    assert columns["who_grade"].required == grade_rule
    assert columns["tumor_burden_percent"].required == "column yes; an empty cell is imputed"
    assert columns["somatostatin_analog"].required == "column yes; an empty cell is imputed"


def test_the_markdown_table_has_one_row_per_column_with_seven_cells():
    rows = [line for line in dictionary_markdown().splitlines() if line.startswith("| `")]
    assert len(rows) == 22
    assert all(len(re.findall(r"(?<!\\)\|", row)) == 8 for row in rows)
