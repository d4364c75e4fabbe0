"""Cohort validation: one pandera schema, derived from the patient schema, used by every loader."""

from __future__ import annotations

import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import annotated_types
import numpy as np
import pandas as pd
import pandera.pandas as pa
from pydantic.fields import FieldInfo

from model.schema import BOOLEAN_FIELDS, FIELDS, MODALITIES, OUTCOME_COLUMNS, TRUTH_PREFIX, Patient
from training.exceptions import CohortValidationError
from training.synthetic import HPFS_EVENT_TYPES, MONTH_DAYS

MAX_MESSAGES = 50
MAX_PROBLEMS = 1000
"""Validation stops once this many problems are found: more only hide the first ones."""
CELLS_PER_CHUNK, MAX_CHUNK_ROWS = 200_000, 10_000
"""Rows are parsed and checked this many cells (and at most rows) at a time, so that memory
stays bounded."""
_TRUE_FALSE = (True, False, 1, 0, 1.0, 0.0, "True", "False", "true", "false", "1", "0")
_EVENT_CODES = (0, 1, 0.0, 1.0, True, False)
SAME_TIME_MONTHS = 0.5 / MONTH_DAYS
"""Two times within half a day are the same day: an HPFS end and an OS death this close are one
event (exports round months differently)."""


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


_IMPUTABLE_COLUMNS = ("tumor_burden_percent", *BOOLEAN_FIELDS)
"""Columns every cohort must have, whose cells may be empty (imputed, `training.imputation`)."""


def _patient_column(name: str, field: FieldInfo) -> pa.Column:
    annotation = field.annotation
    nullable = not field.is_required()
    required = not nullable or name in _IMPUTABLE_COLUMNS
    choices = _choices(annotation)
    if choices is not None:
        check = pa.Check.isin(choices, error=f"must be one of {', '.join(choices)}")
        return pa.Column(object, check, nullable=nullable, required=required)
    if _is_bool(annotation):
        check = pa.Check.isin(_TRUE_FALSE, error="must be true or false (or 1 or 0)")
        return pa.Column(object, check, nullable=nullable, required=required)
    low, high = _bounds(field)
    kind = "a whole number" if int in (typing.get_args(annotation) or (annotation,)) else "a number"
    check = pa.Check(
        _numeric_in_range(low, high), error=f"must be {kind} between {low:g} and {high:g}"
    )
    return pa.Column(object, check, nullable=nullable, required=required)


def _positive_number(series: pd.Series) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    return np.isfinite(values) & (values > 0)


def _whole_number(series: pd.Series) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    return (values == np.round(values)) | series.isna()


def build_cohort_schema() -> pa.DataFrameSchema:
    """The training-table schema: the patient fields plus modality, outcomes and metadata.

    Structural errors are refused (a wrong type, a value out of range, an unknown category, a
    missing outcome, modality or `patient_id`); an empty cell of an imputable predictor
    (:data:`model.schema.IMPUTABLE_FIELDS`) is accepted, counted by
    :func:`training.missing_data.missingness_summary` and imputed in training.
    """
    columns = {name: _patient_column(name, field) for name, field in Patient.model_fields.items()}
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
            object, pa.Check.isin(_EVENT_CODES, error="must be 0 (censored) or 1 (event)")
        )
    columns["hpfs_event_type"] = pa.Column(
        object,
        pa.Check.isin(HPFS_EVENT_TYPES, error=f"must be one of {', '.join(HPFS_EVENT_TYPES)}"),
        nullable=True,
        required=False,
    )
    columns["center"] = pa.Column(object, nullable=True, required=False)
    columns["treatment_date"] = pa.Column(object, nullable=True, required=False)
    return pa.DataFrameSchema(columns, strict=False)


COHORT_SCHEMA = build_cohort_schema()
ROW_SCHEMA = COHORT_SCHEMA.update_column("patient_id", unique=False)
"""The per-row checks, which can run on a chunk of rows; uniqueness is checked on all rows."""
_UNIQUE_MESSAGE = "must be unique, but this patient_id appears more than once"
_MISSING = "required column is missing"


def _problems_from(failures: pd.DataFrame) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple] = set()
    for failure in failures.itertuples(index=False):
        row = None if pd.isna(failure.index) else int(failure.index) + 1
        check = str(failure.check)
        if check == "column_in_dataframe":
            key, problem = (
                (None, failure.failure_case),
                Problem(None, str(failure.failure_case), _MISSING),
            )
        elif failure.schema_context == "DataFrameSchema":
            key, problem = (row, check), Problem(row, None, check)
        elif row is None:
            continue
        else:
            message = {
                "not_nullable": "a value is required here",
                "field_uniqueness": _UNIQUE_MESSAGE,
            }.get(check, check)
            key, problem = (row, failure.column), Problem(row, str(failure.column), message)
        if key not in seen:
            seen.add(key)
            problems.append(problem)
    return sorted(problems, key=lambda p: (p.row or 0, p.column or ""))


_HPFS_AFTER_OS = (
    "must not exceed os_months: HPFS ends at hepatic progression or death, so it cannot end "
    "after OS ends; correct hpfs_months or os_months"
)
_CENSORED_AT_DEATH = (
    "must be 1 where HPFS ends at an OS death (same time, os_event 1), as in a cause-specific "
    "export: a death ends HPFS as an event under the progression-or-death definition; recode "
    "hpfs_event to 1, and add hpfs_event_type to say it was a death"
)
_TYPE_CENSORED_AT_DEATH = (
    "must not be censored where HPFS ends at an OS death (same time, os_event 1): a death ends "
    "HPFS as an event under the progression-or-death definition; recode it to death and "
    "hpfs_event to 1"
)
_TYPE_DISAGREES = (
    "must agree with hpfs_event: progression and death are HPFS events (hpfs_event 1), "
    "censored is hpfs_event 0; correct one of the two"
)
_DEATH_NOT_AT_OS_DEATH = (
    "death must coincide with the OS death (os_event 1 and hpfs_months equal to os_months); "
    "if hepatic progression came first, record progression, otherwise correct the times"
)


@dataclass(frozen=True)
class _HpfsEnds:
    """The HPFS and OS columns of some rows, parsed; `comparable` where all four are valid."""

    hpfs_months: np.ndarray
    hpfs_event: np.ndarray
    os_months: np.ndarray
    os_event: np.ndarray
    given_type: np.ndarray
    comparable: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _HpfsEnds:
        columns = {}
        for endpoint in ("hpfs", "os"):
            months = frame.get(f"{endpoint}_months", pd.Series(np.nan, index=frame.index))
            event = frame.get(f"{endpoint}_event", pd.Series(np.nan, index=frame.index))
            columns[f"{endpoint}_months"] = pd.to_numeric(months, errors="coerce").where(
                _positive_number(months)
            )
            columns[f"{endpoint}_event"] = pd.to_numeric(
                event.where(event.isin(_EVENT_CODES)), errors="coerce"
            )
        recorded = frame.get("hpfs_event_type", pd.Series(None, index=frame.index, dtype=object))
        known = recorded.isin(HPFS_EVENT_TYPES)
        parsed = {name: values.to_numpy(dtype=float) for name, values in columns.items()}
        comparable = (
            np.all([np.isfinite(v) for v in parsed.values()], axis=0)
            & (known | recorded.isna()).to_numpy()
        )
        given = recorded.where(known).to_numpy(dtype=object)
        return cls(**parsed, given_type=given, comparable=comparable)

    @property
    def ends_at_os_death(self) -> np.ndarray:
        same_time = np.abs(self.hpfs_months - self.os_months) <= SAME_TIME_MONTHS
        return same_time & (self.os_event == 1)

    def derived_types(self) -> np.ndarray:
        """What ended HPFS, by the rule of :func:`hpfs_event_types` (for comparable rows)."""
        return np.select(
            [self.hpfs_event != 1, self.ends_at_os_death], ["censored", "death"], "progression"
        ).astype(object)


def _hpfs_problems(frame: pd.DataFrame) -> list[Problem]:
    """Rows whose HPFS cannot be established as progression-or-death, by row and column.

    Refused: HPFS ending after OS; HPFS censored at the time of an OS death (a cause-specific
    export); an `hpfs_event_type` that disagrees with `hpfs_event`, or a death that is not the
    OS death. Rows whose HPFS or OS columns are themselves invalid are left to the column checks.
    """
    ends = _HpfsEnds.of(frame)
    given = pd.notna(ends.given_type)
    event = ends.hpfs_event == 1
    after = ends.hpfs_months > ends.os_months
    checks = [
        ("hpfs_event", _CENSORED_AT_DEATH, ~given & ~event & ends.ends_at_os_death),
        (
            "hpfs_event_type",
            _TYPE_CENSORED_AT_DEATH,
            (ends.given_type == "censored") & ~event & ends.ends_at_os_death,
        ),
        ("hpfs_event_type", _TYPE_DISAGREES, given & (event != (ends.given_type != "censored"))),
        (
            "hpfs_event_type",
            _DEATH_NOT_AT_OS_DEATH,
            (ends.given_type == "death") & event & ~ends.ends_at_os_death,
        ),
    ]
    rows = frame.index.to_numpy()
    problems = [
        Problem(int(row) + 1, "hpfs_months", _HPFS_AFTER_OS)
        for row in rows[ends.comparable & after]
    ]
    problems += [
        Problem(int(row) + 1, column, message)
        for column, message, failing in checks
        for row in rows[ends.comparable & ~after & failing]
    ]
    return _ordered(problems)


def hpfs_event_types(cohort: pd.DataFrame) -> np.ndarray:
    """What ended each patient's HPFS: "progression", "death" or "censored".

    HPFS ends at hepatic progression or death from any cause, whichever comes first. Where the
    cohort has `hpfs_event_type` its value is used; where the column is absent or the cell
    empty, the type is derived from the outcomes: an HPFS event strictly before the end of OS
    is progression, an HPFS event at the time of an OS death (within `SAME_TIME_MONTHS`) is
    counted as death (a progression found at death cannot be told from it, and both end HPFS),
    an HPFS event at OS censoring is progression, and a censored HPFS is censored.

    Parameters
    ----------
    cohort : DataFrame, shape = (n_patients, n_columns)
        A cohort that passed :func:`validate_cohort`.

    Returns
    -------
    ndarray of str, shape = (n_patients,)
    """
    ends = _HpfsEnds.of(cohort)
    return np.where(pd.notna(ends.given_type), ends.given_type, ends.derived_types())


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

    The rows are checked in chunks; validation stops after the chunk in which the
    `MAX_PROBLEMS`-th problem is found, so that a wrong file is refused in bounded time and
    memory, and says so.

    Parameters
    ----------
    frame : DataFrame, shape = (n_patients, n_columns)
        A cohort table with the columns of `shared/DESIGN.md`; other columns are kept. HPFS
        must end at hepatic progression or death, whichever comes first: rows whose HPFS cannot
        be established under that definition are refused (see :func:`_hpfs_problems`), and
        :func:`hpfs_event_types` says which event ended each HPFS.
    feature_columns : sequence of str, optional
        Columns a caller proposes to use as model inputs; `true_*` columns are refused.

    Raises
    ------
    CohortValidationError
        With all problems (row, column, what was expected), up to `MAX_PROBLEMS`; nothing is
        returned partially.
    """
    problems = _feature_problems(feature_columns)
    if frame.empty:
        problems.append(Problem(None, None, "the cohort has no rows"))
    else:
        problems += checked_rows(_chunks(frame))[0] + _duplicate_problems(frame)
    if problems:
        raise CohortValidationError(_ordered(problems), len(frame))
    return _typed(frame)


def _chunks(frame: pd.DataFrame) -> Iterator[pd.DataFrame]:
    size = chunk_rows(frame.shape[1])
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


def chunk_rows(n_columns: int) -> int:
    return min(MAX_CHUNK_ROWS, max(100, CELLS_PER_CHUNK // max(n_columns, 1)))


def checked_rows(chunks: Iterable[pd.DataFrame]) -> tuple[list[Problem], bool]:
    """Problems of the per-row checks, chunk by chunk, and whether the checks stopped early.

    They stop before a chunk once `MAX_PROBLEMS` problems are found or a required column is
    missing: the rest would only bury the first problems. The problems then end with a note
    saying where it stopped (the note counted in `MAX_PROBLEMS`).
    """
    problems: list[Problem] = []
    seen: set[tuple] = set()
    rows = 0
    for chunk in chunks:
        if len(problems) >= MAX_PROBLEMS or any(p.message == _MISSING for p in problems):
            return [_stopped_after(rows, problems), *_ordered(problems)[: MAX_PROBLEMS - 1]], True
        rows += len(chunk)
        found = _hpfs_problems(chunk)
        try:
            ROW_SCHEMA.validate(chunk, lazy=True)
        except pa.errors.SchemaErrors as errors:
            found = _problems_from(errors.failure_cases) + found
        for problem in found:
            if (key := (problem.row, problem.column, problem.message)) not in seen:
                seen.add(key)
                problems.append(problem)
    return problems, False


def _stopped_after(rows: int, problems: list[Problem]) -> Problem:
    if any(p.message == _MISSING for p in problems):
        why = "because required columns are missing"
        remedy = "fix the header (the names of the data dictionary, docs/retraining.md)"
    else:
        why = f"at {MAX_PROBLEMS} problems"
        remedy = "so many usually mean a wrong file, delimiter or header: fix the first problems"
    return Problem(
        None,
        None,
        f"validation stopped after row {rows} {why}; later rows were not checked and more "
        f"problems may follow: {remedy} and validate again",
    )


def _duplicate_problems(frame: pd.DataFrame) -> list[Problem]:
    if "patient_id" not in frame:
        return []
    ids = frame["patient_id"]
    repeated = frame.index[ids.duplicated(keep=False) & ids.notna()]
    return [Problem(int(row) + 1, "patient_id", _UNIQUE_MESSAGE) for row in repeated[:MAX_PROBLEMS]]


def _ordered(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.row or 0, p.column or ""))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    typed = frame.copy()
    for name, field in Patient.model_fields.items():
        if name not in typed or _choices(field.annotation) is not None:
            continue
        if _is_bool(field.annotation):
            truth = typed[name].map(
                lambda v: None if pd.isna(v) else str(v).lower() in ("true", "1", "1.0")
            )
            complete = field.is_required() or (FIELDS[name].imputable and truth.notna().all())
            typed[name] = truth.astype(bool) if complete else truth
        else:
            typed[name] = pd.to_numeric(typed[name])
    typed["age_years"] = typed["age_years"].astype(int)
    for column in OUTCOME_COLUMNS:
        typed[column] = pd.to_numeric(typed[column])
    typed["hpfs_event"] = typed["hpfs_event"].astype(int)
    typed["os_event"] = typed["os_event"].astype(int)
    typed["patient_id"] = typed["patient_id"].astype(str)
    return typed
