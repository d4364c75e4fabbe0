"""Cohort validation: one pandera schema, derived from the patient schema, used by every loader."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path

import annotated_types
import numpy as np
import pandas as pd
import pandera.pandas as pa
from pydantic.fields import FieldInfo

from model.schema import MODALITIES, OUTCOME_COLUMNS, TRUTH_PREFIX, Patient
from training.exceptions import CohortReadError, CohortValidationError

MAX_MESSAGES = 50
_TRUE_FALSE = (True, False, 1, 0, 1.0, 0.0, "True", "False", "true", "false", "1", "0")


@dataclass(frozen=True)
class Problem:
    """One validation problem: where (1-based data row, column) and what was expected."""

    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = [f"row {self.row}"] if self.row is not None else []
        where += [f"column {self.column}"] if self.column else []
        return f"{', '.join(where) or 'cohort'}: {self.message}"


def _choices(annotation) -> tuple | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is typing.Literal:
            return typing.get_args(arg)
    return None


def _is_bool(annotation) -> bool:
    args = typing.get_args(annotation) or (annotation,)
    return any(a is bool or typing.get_args(a)[:1] == (bool,) for a in args)


def _bounds(field: FieldInfo) -> tuple[float | None, float | None]:
    low = next((m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in field.metadata if isinstance(m, annotated_types.Le)), None)
    return low, high


def _numeric_in_range(low: float, high: float):
    def check(series: pd.Series) -> pd.Series:
        values = pd.to_numeric(series, errors="coerce")
        return values.between(low, high) | series.isna()

    return check


def _patient_column(field: FieldInfo) -> pa.Column:
    annotation = field.annotation
    nullable = not field.is_required()
    choices = _choices(annotation)
    if choices is not None:
        check = pa.Check.isin(choices, error=f"must be one of {', '.join(choices)}")
        return pa.Column(object, check, nullable=nullable, required=not nullable)
    if _is_bool(annotation):
        check = pa.Check.isin(_TRUE_FALSE, error="must be true or false (or 1 or 0)")
        return pa.Column(object, check, nullable=nullable, required=not nullable)
    low, high = _bounds(field)
    kind = "a whole number" if int in (typing.get_args(annotation) or (annotation,)) else "a number"
    check = pa.Check(
        _numeric_in_range(low, high), error=f"must be {kind} between {low:g} and {high:g}"
    )
    return pa.Column(object, check, nullable=nullable, required=not nullable)


def _positive_number(series: pd.Series) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    return np.isfinite(values) & (values > 0)


def _hpfs_not_after_os(frame: pd.DataFrame) -> pd.Series:
    hpfs = pd.to_numeric(frame["hpfs_months"], errors="coerce")
    os_ = pd.to_numeric(frame["os_months"], errors="coerce")
    comparable = _positive_number(frame["hpfs_months"]) & _positive_number(frame["os_months"])
    return ~(comparable & (hpfs > os_))


def _grade_or_ki67(frame: pd.DataFrame) -> pd.Series:
    ki67 = frame["ki67_percent"] if "ki67_percent" in frame else pd.Series(None, index=frame.index)
    grade = frame["who_grade"] if "who_grade" in frame else pd.Series(None, index=frame.index)
    return grade.notna() | ki67.notna()


def _whole_number(series: pd.Series) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    return (values == np.round(values)) | series.isna()


def build_cohort_schema() -> pa.DataFrameSchema:
    """The training-table schema: the patient fields plus modality, outcomes and metadata."""
    columns = {name: _patient_column(field) for name, field in Patient.model_fields.items()}
    columns["planned_modality"] = pa.Column(
        object, pa.Check.isin(MODALITIES), nullable=True, required=False
    )
    columns["age_years"] = pa.Column(
        object,
        [
            columns["age_years"].checks[0],
            pa.Check(_whole_number, error="must be a whole number of years"),
        ],
    )
    columns["who_grade"] = pa.Column(
        object, columns["who_grade"].checks, nullable=True, required=False
    )
    columns["patient_id"] = pa.Column(object, unique=True, report_duplicates="all")
    columns["modality"] = pa.Column(
        object, pa.Check.isin(MODALITIES, error=f"must be one of {', '.join(MODALITIES)}")
    )
    for endpoint in ("hpfs", "os"):
        columns[f"{endpoint}_months"] = pa.Column(
            object, pa.Check(_positive_number, error="must be a positive number of months")
        )
        columns[f"{endpoint}_event"] = pa.Column(
            object,
            pa.Check.isin((0, 1, 0.0, 1.0, True, False), error="must be 0 (censored) or 1 (event)"),
        )
    columns["center"] = pa.Column(object, nullable=True, required=False)
    columns["treatment_date"] = pa.Column(object, nullable=True, required=False)
    return pa.DataFrameSchema(
        columns,
        checks=[
            pa.Check(
                _hpfs_not_after_os,
                error="hpfs_months must not exceed os_months (progression after death)",
            ),
            pa.Check(_grade_or_ki67, error="who_grade or ki67_percent must be given"),
        ],
        strict=False,
    )


COHORT_SCHEMA = build_cohort_schema()


def _problems_from(failures: pd.DataFrame) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple] = set()
    for failure in failures.itertuples(index=False):
        row = None if pd.isna(failure.index) else int(failure.index) + 1
        check = str(failure.check)
        if check == "column_in_dataframe":
            key, problem = (
                (None, failure.failure_case),
                Problem(None, str(failure.failure_case), "required column is missing"),
            )
        elif failure.schema_context == "DataFrameSchema":
            key, problem = (row, check), Problem(row, None, check)
        elif row is None:
            continue
        else:
            message = {
                "not_nullable": "a value is required here",
                "field_uniqueness": "must be unique, but this patient_id appears more than once",
            }.get(check, check)
            key, problem = (row, failure.column), Problem(row, str(failure.column), message)
        if key not in seen:
            seen.add(key)
            problems.append(problem)
    return sorted(problems, key=lambda p: (p.row or 0, p.column or ""))


def _feature_problems(feature_columns) -> list[Problem]:
    return [
        Problem(
            None,
            name,
            f"{TRUTH_PREFIX}* columns are the generator's truth and must not be used as features",
        )
        for name in feature_columns or ()
        if str(name).startswith(TRUTH_PREFIX)
    ]


def validate_cohort(frame: pd.DataFrame, feature_columns=None) -> pd.DataFrame:
    """Check a cohort and return it typed, or raise with every problem found.

    Parameters
    ----------
    frame : DataFrame, shape = (n_patients, n_columns)
        A cohort table with the columns of `shared/DESIGN.md`; other columns are kept.
    feature_columns : sequence of str, optional
        Columns a caller proposes to use as model inputs; `true_*` columns are refused.

    Raises
    ------
    CohortValidationError
        With all problems (row, column, what was expected); nothing is returned partially.
    """
    problems = _feature_problems(feature_columns)
    if frame.empty:
        problems.append(Problem(None, None, "the cohort has no rows"))
    else:
        try:
            COHORT_SCHEMA.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as errors:
            problems += _problems_from(errors.failure_cases)
    if problems:
        raise CohortValidationError(problems, len(frame))
    return _typed(frame)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    typed = frame.copy()
    for name, field in Patient.model_fields.items():
        if name not in typed or _choices(field.annotation) is not None:
            continue
        if _is_bool(field.annotation):
            truth = typed[name].map(
                lambda v: None if pd.isna(v) else str(v).lower() in ("true", "1", "1.0")
            )
            typed[name] = truth.astype(bool) if field.is_required() else truth
        else:
            typed[name] = pd.to_numeric(typed[name])
    typed["age_years"] = typed["age_years"].astype(int)
    for column in OUTCOME_COLUMNS:
        typed[column] = pd.to_numeric(typed[column])
    typed["hpfs_event"] = typed["hpfs_event"].astype(int)
    typed["os_event"] = typed["os_event"].astype(int)
    typed["patient_id"] = typed["patient_id"].astype(str)
    return typed


def read_cohort(path: str | Path) -> pd.DataFrame:
    """Read a cohort file (CSV or Parquet, by extension) without interpreting it."""
    path = Path(path)
    if not path.is_file():
        raise CohortReadError(f"cohort file must exist, but {path} was not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype={"patient_id": str}, encoding="utf-8")
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except UnicodeDecodeError as error:
        raise CohortReadError(
            f"{path.name} must be UTF-8 text, but byte {error.start} is not; re-export it as UTF-8"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as error:
        raise CohortReadError(
            f"{path.name} could not be read as {suffix[1:]}: {type(error).__name__}"
        ) from None
    raise CohortReadError(f"cohort file must end in .csv or .parquet, but got {path.name!r}")


def load_cohort(path: str | Path) -> pd.DataFrame:
    """Read and validate a cohort file; see :func:`validate_cohort`."""
    return validate_cohort(read_cohort(path))
