"""The patient, defined once: fields, derived categories and the encoding to a design matrix."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = "1"

GRADES = ("G1", "G2", "G3")
MODALITIES = ("TACE", "TAE", "SIRT")
PRIMARY_SITES = ("pancreas", "gut", "lung", "other")
BURDEN_CATEGORIES = ("<25", "25-50", "50-75", ">75")
SEXES = ("female", "male")

REFERENCE_LEVELS = {
    "who_grade": "G1",
    "modality": "TACE",
    "primary_site": "pancreas",
    "burden_category": "<25",
}

# Ki-67 and burden cut-offs as written in the papers: WHO 2010 grade G1 <3 %, G2 3-20 %,
# G3 >20 %; burden "<25 %, 25-50 %, 50-75 %, >75 %" (004 Table 1), so 25 itself is 25-50, and
# Chen 2017 contrasts ">50 %" with "<=50 %", so 50 is 25-50 and 75 is 50-75.
KI67_G2_FROM = 3.0
KI67_G3_ABOVE = 20.0
BURDEN_25_FROM = 25.0
BURDEN_50_ABOVE = 50.0
BURDEN_75_ABOVE = 75.0

AGE_REFERENCE_YEARS = 60.0


def _refuse_boolean(value: object) -> object:
    # pydantic's lax mode reads JSON true as 1.0 and false as 0.0: a boolean sent for a
    # percentage would silently become 1 % or 0 %.
    if isinstance(value, bool):
        raise PydanticCustomError("float_type", "Input should be a valid number, not a boolean")
    return value


NOT_A_BOOLEAN = BeforeValidator(_refuse_boolean)
"""Annotation of number fields: a boolean is refused, not read as 1 or 0."""


class Patient(BaseModel):
    """One patient before liver-directed embolotherapy.

    This class is the single definition of a patient: the API and form models, the training
    table schema and the feature encoding are all derived from it.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        # The grade rule of `_grade_or_ki67`, for readers of the JSON Schema (API, form).
        json_schema_extra={
            "anyOf": [
                {"required": ["who_grade"], "properties": {"who_grade": {"type": "string"}}},
                {"required": ["ki67_percent"], "properties": {"ki67_percent": {"type": "number"}}},
            ]
        },
    )

    age_years: Annotated[
        int,
        Field(
            ge=18, le=100, description="Age at embolotherapy.", json_schema_extra={"unit": "years"}
        ),
    ]
    sex: Annotated[
        Literal["female", "male"] | None, Field(description="Recorded, not a predictor.")
    ] = None
    who_grade: Annotated[
        Literal["G1", "G2", "G3"] | None,
        Field(description="WHO 2010 grade; derived from Ki-67 when absent."),
    ] = None
    ki67_percent: Annotated[
        float | None,
        Field(
            ge=0,
            le=100,
            allow_inf_nan=False,
            description="Ki-67 proliferation index; grade <3 G1, 3-20 G2, >20 G3.",
            json_schema_extra={"unit": "%"},
        ),
        NOT_A_BOOLEAN,
    ] = None
    tumor_burden_percent: Annotated[
        float,
        Field(
            ge=0,
            le=100,
            allow_inf_nan=False,
            description="Hepatic tumour burden, % of liver volume.",
            json_schema_extra={"unit": "% of liver volume"},
        ),
        NOT_A_BOOLEAN,
    ]
    primary_site: Annotated[
        Literal["pancreas", "gut", "lung", "other"],
        Field(description="gut = small bowel, stomach, colon, rectum; other includes unknown."),
    ]
    prior_hepatic_treatment: Annotated[
        StrictBool, Field(description="Prior hepatic resection or ablation.")
    ]
    primary_resected: Annotated[
        StrictBool | None, Field(description="Primary tumour resected. Recorded, not a predictor.")
    ] = None
    extrahepatic_metastases: Annotated[StrictBool, Field(description="Extrahepatic metastases.")]
    somatostatin_analog: Annotated[
        StrictBool,
        Field(description="Somatostatin analogue (e.g. octreotide) before/with treatment."),
    ]
    biologic_therapy: Annotated[
        StrictBool,
        Field(description="Biologic (e.g. everolimus, sunitinib) before/with treatment."),
    ]
    cytotoxic_chemotherapy: Annotated[
        StrictBool, Field(description="Cytotoxic chemotherapy before/with treatment.")
    ]
    planned_modality: Annotated[
        Literal["TACE", "TAE", "SIRT"] | None,
        Field(description="Modality the prognosis is for; all three are compared."),
    ] = None

    @model_validator(mode="after")
    def _grade_or_ki67(self) -> Patient:
        if self.who_grade is None and self.ki67_percent is None:
            raise ValueError("who_grade or ki67_percent must be given, but neither was")
        return self

    @property
    def grade(self) -> str:
        """The WHO grade used by the model: `who_grade` if given, else derived from Ki-67."""
        if self.who_grade is not None:
            return self.who_grade
        return grade_from_ki67(self.ki67_percent)

    @property
    def burden_category(self) -> str:
        """The hepatic tumour burden category of the papers."""
        return burden_category(self.tumor_burden_percent)


PATIENT_FIELDS = tuple(Patient.model_fields)
BOOLEAN_FIELDS = (
    "prior_hepatic_treatment",
    "extrahepatic_metastases",
    "somatostatin_analog",
    "biologic_therapy",
    "cytotoxic_chemotherapy",
)
OPTIONAL_BOOLEAN_FIELDS = ("primary_resected",)

OUTCOME_COLUMNS = ("hpfs_months", "hpfs_event", "os_months", "os_event")
TRUTH_PREFIX = "true_"
"""Prefix of a synthetic cohort's truth columns, which no model may use as features."""
ENDPOINTS = ("hpfs", "os")


def grade_from_ki67(ki67_percent: float | None) -> str:
    """WHO 2010 grade from the Ki-67 index: <3 % G1, 3-20 % G2, >20 % G3."""
    if ki67_percent is None or not np.isfinite(ki67_percent):
        raise ValueError(f"ki67_percent must be a number in [0, 100], but got {ki67_percent!r}")
    if ki67_percent < KI67_G2_FROM:
        return "G1"
    if ki67_percent <= KI67_G3_ABOVE:
        return "G2"
    return "G3"


def burden_category(tumor_burden_percent: float) -> str:
    """Burden category: <25, 25-50, 50-75 or >75 % of liver volume."""
    return str(burden_categories(np.array([tumor_burden_percent]))[0])


def effective_grades(frame: pd.DataFrame) -> pd.Series:
    """Grade per row: `who_grade` where recorded, else derived from `ki67_percent`."""
    n = len(frame)
    grade = frame["who_grade"].to_numpy(dtype=object) if "who_grade" in frame else np.full(n, None)
    if "ki67_percent" in frame:
        ki67 = pd.to_numeric(frame["ki67_percent"]).to_numpy(dtype=float)
    else:
        ki67 = np.full(n, np.nan)
    derived = np.select(
        [ki67 < KI67_G2_FROM, ki67 <= KI67_G3_ABOVE, ki67 > KI67_G3_ABOVE],
        np.asarray(GRADES, dtype=object),
        None,
    )
    return pd.Series(np.where(pd.isna(grade), derived, grade), index=frame.index, dtype=object)


def burden_categories(tumor_burden_percent: pd.Series | np.ndarray) -> np.ndarray:
    """Vectorised :func:`burden_category`."""
    percent = np.asarray(tumor_burden_percent, dtype=float)
    positions = (
        (percent >= BURDEN_25_FROM).astype(int)
        + (percent > BURDEN_50_ABOVE)
        + (percent > BURDEN_75_ABOVE)
    )
    return np.asarray(BURDEN_CATEGORIES, dtype=object)[positions]


def _feature_names() -> tuple[str, ...]:
    names = [f"grade_{g}" for g in GRADES[1:]]
    names += [f"{m}_in_{g}" for g in GRADES for m in MODALITIES[1:]]
    names += [f"site_{s}" for s in PRIMARY_SITES[1:]]
    names += ["burden_25_50", "burden_50_75", "burden_gt_75"]
    names += list(BOOLEAN_FIELDS)
    names += ["age_decades_from_60"]
    return tuple(names)


FEATURE_NAMES = _feature_names()
"""Design-matrix columns, in their fixed order.

Reference levels are those of the 004 abstract's Table 1: grade G1, TACE within each grade,
pancreatic primary, burden <25 %. Modality enters only through its interaction with grade
(`SIRT_in_G3` is SIRT vs TACE among G3 tumours), exactly as Table 1 reports it. Age is
centred at 60 years and scaled per decade.
"""

FEATURE_SOURCES = {
    **{f"grade_{g}": "who_grade" for g in GRADES[1:]},
    **{f"{m}_in_{g}": "modality" for g in GRADES for m in MODALITIES[1:]},
    **{f"site_{s}": "primary_site" for s in PRIMARY_SITES[1:]},
    "burden_25_50": "tumor_burden_percent",
    "burden_50_75": "tumor_burden_percent",
    "burden_gt_75": "tumor_burden_percent",
    **{name: name for name in BOOLEAN_FIELDS},
    "age_decades_from_60": "age_years",
}
"""The patient field each design-matrix column is derived from (for explanations)."""


def encode(frame: pd.DataFrame, modality: str | pd.Series | None = None) -> pd.DataFrame:
    """Encode patients to the design matrix.

    Parameters
    ----------
    frame : DataFrame, shape = (n_samples, n_fields)
        Patient fields as columns (a validated cohort or :func:`patients_frame` output).
    modality : str or Series, optional
        The modality to encode: one for every row (counterfactual predictions), one per row,
        or, when omitted, the `modality` column (received) or else `planned_modality`.

    Returns
    -------
    DataFrame, shape = (n_samples, len(FEATURE_NAMES))
        Float columns in the order of :data:`FEATURE_NAMES`, same index as `frame`.
    """
    if modality is None:
        column = "modality" if "modality" in frame else "planned_modality"
        modality = frame[column]
    # Plain numpy arrays: the service encodes one patient per request, where pandas'
    # per-column overhead would dominate the prognosis time.
    modalities = np.broadcast_to(np.asarray(modality, dtype=object), len(frame))
    unknown = ~np.isin(modalities, MODALITIES)
    if unknown.any():
        raise ValueError(
            f"modality must be one of {', '.join(MODALITIES)}, but {int(unknown.sum())} row(s) "
            "have another or no value"
        )
    grades = effective_grades(frame).to_numpy()
    burden = burden_categories(frame["tumor_burden_percent"])
    sites = frame["primary_site"].to_numpy()
    columns = {f"grade_{g}": grades == g for g in GRADES[1:]}
    for g in GRADES:
        for m in MODALITIES[1:]:
            columns[f"{m}_in_{g}"] = (grades == g) & (modalities == m)
    for s in PRIMARY_SITES[1:]:
        columns[f"site_{s}"] = sites == s
    columns["burden_25_50"] = burden == "25-50"
    columns["burden_50_75"] = burden == "50-75"
    columns["burden_gt_75"] = burden == ">75"
    for name in BOOLEAN_FIELDS:
        columns[name] = frame[name].to_numpy(dtype=bool)
    ages = frame["age_years"].to_numpy(dtype=float)
    columns["age_decades_from_60"] = (ages - AGE_REFERENCE_YEARS) / 10.0
    design = np.column_stack([np.asarray(columns[name], dtype=float) for name in FEATURE_NAMES])
    return pd.DataFrame(design, index=frame.index, columns=list(FEATURE_NAMES))


def patients_frame(patients: list[Patient]) -> pd.DataFrame:
    """Patients as a one-row-per-patient frame, with the derived `who_grade` filled in."""
    frame = pd.DataFrame([p.model_dump() for p in patients], columns=list(PATIENT_FIELDS))
    frame["who_grade"] = [p.grade for p in patients]
    return frame
