"""The data dictionary of a training cohort, derived from the patient schema and cohort schema.

`netprog dictionary` prints it as Markdown; docs/retraining.md embeds that output, and a test
keeps the two equal, so the documented columns cannot drift from what validation accepts.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

import annotated_types
from pydantic.fields import FieldInfo

from model.schema import (
    FEATURE_SOURCES,
    GRADE_SOURCES,
    MODALITIES,
    TRUTH_PREFIX,
    Patient,
    unit_of,
)
from training.synthetic import HPFS_EVENT_TYPES
from training.validate import COHORT_SCHEMA

__all__ = ["Column", "cohort_columns", "dictionary_markdown"]

HEADER = ("column", "type", "allowed values / range", "unit", "required", "predictor", "meaning")

_GRADE_OR_KI67 = dict(zip(GRADE_SOURCES, reversed(GRADE_SOURCES), strict=True))

_COHORT_ONLY = {
    "patient_id": (
        "text",
        "unique per row",
        "",
        "Pseudonymous patient id. It also decides the held-out split, so keep it stable "
        "between exports; never a name or a medical record number.",
    ),
    "center": (
        "text",
        "any",
        "",
        "Treating centre. With two or more centres, leave-one-centre-out validation is reported.",
    ),
    "treatment_date": (
        "date",
        "YYYY-MM-DD",
        "",
        "Date of the embolotherapy (the time origin of both endpoints); reported as the "
        "cohort's date range. Required by `netprog monitor`, where it decides which model in "
        "production judged the patient.",
    ),
    "modality": (
        "text",
        ", ".join(f"`{m}`" for m in MODALITIES),
        "",
        "Modality received: chemoembolization (TACE), bland embolization (TAE) or "
        "radioembolization (SIRT, also called TARE).",
    ),
    "hpfs_months": (
        "number",
        "> 0, not above os_months",
        "months",
        "Time from embolotherapy to hepatic progression or death from any cause, whichever "
        "comes first, or to censoring.",
    ),
    "hpfs_event": (
        "integer",
        "`1` hepatic progression or death, `0` censored",
        "",
        "A death before hepatic progression is an event (progression-free survival as "
        "conventionally defined), never censoring: a row censored at the time of an OS death is "
        "refused. Censored at loss to follow-up or database closure.",
    ),
    "hpfs_event_type": (
        "text",
        ", ".join(f"`{t}`" for t in HPFS_EVENT_TYPES),
        "",
        "Which event ended HPFS; must agree with `hpfs_event`, and `death` with an OS death at "
        "the same time. Where absent or empty it is derived: an event at the time of an OS "
        "death (within half a day) is death, any other event is progression, `0` is censored.",
    ),
    "os_months": (
        "number",
        "> 0",
        "months",
        "Time from embolotherapy to death from any cause or censoring.",
    ),
    "os_event": (
        "integer",
        "`1` death, `0` censored",
        "",
        "Censored at loss to follow-up or database closure.",
    ),
}
_ORDER = ("patient_id", "center", "treatment_date")
_AFTER_PATIENT = (
    "modality",
    "hpfs_months",
    "hpfs_event",
    "hpfs_event_type",
    "os_months",
    "os_event",
)


@dataclass(frozen=True)
class Column:
    """One row of the data dictionary."""

    name: str
    type: str
    allowed: str
    unit: str
    required: str
    predictor: str
    meaning: str

    def cells(self) -> tuple[str, ...]:
        return (
            f"`{self.name}`",
            self.type,
            self.allowed,
            self.unit,
            self.required,
            self.predictor,
            self.meaning,
        )


def _literal(annotation) -> tuple | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is typing.Literal:
            return typing.get_args(arg)
    return None


def _kind(field: FieldInfo) -> tuple[str, str]:
    """(type, allowed values or range) of a patient field."""
    choices = _literal(field.annotation)
    if choices is not None:
        return "text", ", ".join(f"`{c}`" for c in choices)
    args = typing.get_args(field.annotation) or (field.annotation,)
    if any(a is bool or typing.get_args(a)[:1] == (bool,) for a in args):
        return "boolean", "`true`/`false` (or `1`/`0`)"
    low = next((m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in field.metadata if isinstance(m, annotated_types.Le)), None)
    kind = "integer" if int in args else "number"
    return kind, f"{low:g}-{high:g}"


def _required(name: str) -> str:
    if name in _GRADE_OR_KI67:
        return f"no; with neither it nor `{_GRADE_OR_KI67[name]}`, the grade is imputed"
    column = COHORT_SCHEMA.columns.get(name)
    if column is None or not column.required:
        return "no"
    if column.nullable:
        return "column yes; an empty cell is imputed"
    return "yes"


def _predictor(name: str) -> str:
    if name in FEATURE_SOURCES.values():
        return "yes"
    return "through the grade" if name in _GRADE_OR_KI67 else "no"


def _patient_meaning(name: str, field: FieldInfo) -> str:
    if name == "planned_modality":
        return "Not used for training: the models learn from `modality`, the one received."
    return field.description or ""


def cohort_columns() -> list[Column]:
    """Every column of a training cohort, in the order of the design's cohort table."""
    columns = [
        Column(name, *_COHORT_ONLY[name][:3], _required(name), "no", _COHORT_ONLY[name][3])
        for name in _ORDER
    ]
    for name, field in Patient.model_fields.items():
        kind, allowed = _kind(field)
        unit = unit_of(name)
        columns.append(
            Column(
                name,
                kind,
                allowed,
                str(unit),
                _required(name),
                _predictor(name),
                _patient_meaning(name, field),
            )
        )
    columns += [
        Column(
            name, *_COHORT_ONLY[name][:3], _required(name), _predictor(name), _COHORT_ONLY[name][3]
        )
        for name in _AFTER_PATIENT
    ]
    return columns


def dictionary_markdown() -> str:
    """The data dictionary as a Markdown table, followed by the rule for other columns."""
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *("| " + " | ".join(column.cells()) + " |" for column in cohort_columns()),
        "",
        f"Other columns are kept but ignored. `{TRUTH_PREFIX}*` columns (the synthetic "
        "generator's truth) are never model inputs. Booleans may be `true`/`false`, `True`/"
        "`False` or `1`/`0`; an empty cell is a missing value: refused in a required column, "
        "imputed (multiple imputation, section 3) in a predictor whose cells may be empty.",
    ]
    return "\n".join(lines) + "\n"
