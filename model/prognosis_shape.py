"""The shape of a prognosis, typed once: what `Predictor.prognosis` returns and the API sends.

Typed dictionaries, because the predictor builds plain dicts that the service encodes once to
JSON: a type checker holds the builders to this shape, and serving generates its pydantic
models (the OpenAPI document, `serving.schemas`) from it, so nothing validates an answer per
request. Field constraints and descriptions ride along as pydantic `Field`s in `Annotated`.
Every `curve` is absent from an answer asked for with ``detail="summary"`` (the API's
choice; the predictor always builds it) and present, with the same meaning, otherwise.
"""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired

from pydantic import ConfigDict, Field, with_config

# pydantic reads typed dicts on Python < 3.12 only from typing_extensions' TypedDict.
from typing_extensions import TypedDict

from model.view_shape import (
    ContributionsOverTime,
    OutOf100,
    PlainLanguage,
    ProcedureHarms,
    SimilarPatients,
)

__all__ = [
    "AtRisk",
    "CheckMedian",
    "CheckModel",
    "Conditional",
    "CurvePoint",
    "Difference",
    "EndpointPrognosis",
    "Explanation",
    "ExplanationItem",
    "HepaticProgression",
    "HorizonKey",
    "HorizonSurvival",
    "IncidencePoint",
    "Interval",
    "IntervalUncertainty",
    "Median",
    "ModalityEntry",
    "ModalityIncidence",
    "ModalityName",
    "ModelInfo",
    "Months",
    "PatientSummary",
    "Probability",
    "PrognosisShape",
    "PrognosisWarning",
    "SetAside",
    "Support",
]

Probability = Annotated[float, Field(ge=0, le=1)]
Months = Annotated[float, Field(ge=0)]
HorizonKey = Literal["12", "24", "36", "60"]
ModalityName = Literal["TACE", "TAE", "SIRT"]


class Interval(TypedDict):
    """A point estimate with its 95 % interval."""

    value: float
    lower: float
    upper: float


class HorizonSurvival(Interval):
    """Survival at a horizon; `extrapolated` when beyond adequate training follow-up."""

    extrapolated: NotRequired[bool | None]


class Median(TypedDict):
    """Median months with interval; None where not reached within the 120-month grid."""

    value: Months | None
    lower: Months | None
    upper: Months | None
    reached: bool
    text: str
    extrapolated: NotRequired[bool | None]


class CurvePoint(TypedDict):
    """One point of a survival curve with its pointwise 95 % interval."""

    month: Months
    survival: Probability
    lower: Probability
    upper: Probability


class CheckMedian(TypedDict):
    """The check model's median, months."""

    value: Months | None
    reached: bool


class CheckModel(TypedDict):
    """The other model family's answer, as a plausibility check."""

    model: str
    median_months: CheckMedian
    survival_at: dict[HorizonKey, Probability]
    median_ratio: float | None
    models_disagree: bool


class ExplanationItem(TypedDict):
    """One patient field's SHAP contribution on the log relative hazard scale."""

    field: str
    factor: str
    label: str
    contribution: float
    hazard_ratio: float


class Explanation(TypedDict):
    """Additive SHAP contributions to the log relative hazard against a stated baseline."""

    scale: str
    method: str
    base_value: float
    baseline: str
    margin: float
    hazard_ratio_vs_baseline: float
    note: str
    items: list[ExplanationItem]


class Difference(TypedDict):
    """This modality minus the planned one."""

    survival_at: dict[HorizonKey, Interval]
    rmst_60_months: Interval


class Support(TypedDict):
    """How much training data there is about patients like this one under the modality."""

    propensity: Probability
    similar_treated: int
    similar_definition: str
    extrapolation: bool
    source_patients: NotRequired[
        Annotated[
            int | None,
            Field(
                description="For a model built from published aggregates (the synthetic "
                "default): about how many real patients of this grade received the modality "
                "in the source studies; null for a model trained on a registry."
            ),
        ]
    ]
    warning: str | None


class ModalityEntry(TypedDict):
    """The same patient under one modality."""

    modality: ModalityName
    planned: bool
    median_months: Median
    survival_at: dict[HorizonKey, HorizonSurvival]
    rmst_60_months: Interval
    curve: NotRequired[list[CurvePoint]]
    difference_vs_planned: Difference | None
    support: Support
    caveat: str


class Conditional(TypedDict):
    """Survival given freedom from the event up to `months_since_treatment`."""

    months_since_treatment: Months
    survival_at_start: Probability
    median_months: Median
    median_remaining_months: Months | None
    additional_survival_at: dict[HorizonKey, Interval | None]
    curve: NotRequired[list[CurvePoint]]


class AtRisk(TypedDict):
    """Training patients still at risk (event-free and under follow-up) at a month."""

    month: Annotated[int, Field(ge=0)]
    at_risk: Annotated[int, Field(ge=0)]


class EndpointPrognosis(TypedDict):
    """The prognosis of one endpoint (HPFS or OS) under the planned modality."""

    model: str
    event: Annotated[
        str,
        Field(
            description='"hepatic progression or death" (HPFS: whichever comes first) or '
            '"death" (OS).'
        ),
    ]
    modality: ModalityName
    median_months: Median
    survival_at: dict[HorizonKey, HorizonSurvival]
    rmst_60_months: Interval
    curve: NotRequired[list[CurvePoint]]
    max_follow_up_months: Months
    extrapolated_from_month: int | None
    numbers_at_risk: NotRequired[
        Annotated[
            list[AtRisk] | None,
            Field(
                description="Training patients at risk every 12 months, as printed under a "
                "Kaplan-Meier figure; None for models saved before they were recorded."
            ),
        ]
    ]
    interval_method: NotRequired[
        Annotated[
            str | None,
            Field(
                description="How the 95 % intervals were made: the delta method on a relaxed "
                "Cox model (log-log scale) or bootstrap percentiles of the boosted model."
            ),
        ]
    ]
    risk_percentile: Annotated[float, Field(ge=0, le=100)]
    check_model: CheckModel | None
    conditional: NotRequired[Conditional | None]
    explanation: Explanation
    modalities: list[ModalityEntry]


class IncidencePoint(TypedDict):
    """One point of a cumulative incidence curve with its pointwise 95 % interval."""

    month: Months
    incidence: Probability
    lower: Probability
    upper: Probability


class ModalityIncidence(TypedDict):
    """The cumulative incidence of hepatic progression under one modality."""

    modality: ModalityName
    cumulative_incidence_at: dict[HorizonKey, HorizonSurvival]


class HepaticProgression(TypedDict):
    """Cumulative incidence of hepatic progression, death as a competing event.

    Not 1 - HPFS: HPFS also ends at death, and a patient who dies first can no longer progress.
    """

    measure: str
    event: str
    competing_event: str
    modality: ModalityName
    cumulative_incidence_at: dict[HorizonKey, HorizonSurvival]
    curve: NotRequired[list[IncidencePoint]]
    modalities: list[ModalityIncidence]
    interval_method: str
    note: str


class IntervalUncertainty(TypedDict):
    """Which uncertainty the intervals carry."""

    kind: Annotated[
        Literal["sampling", "literature"],
        Field(
            description="sampling: of the training cohort (a model trained on a registry); "
            "literature: of the published estimates the synthetic default rests on."
        ),
    ]
    text: str


class ModelInfo(TypedDict):
    """Which model answered."""

    tag: str | None
    trained_on: Literal["synthetic", "real"]
    data_fingerprint: str | None
    trained_at: str | None
    schema_version: str
    primary_model: dict[str, str]
    check_model: dict[str, str | None]
    n_bootstrap: Annotated[
        dict[str, int],
        Field(
            description="Bootstrap refits behind the intervals per endpoint; 0 where they are "
            "delta-method intervals (see interval_method)."
        ),
    ]
    interval_method: Annotated[
        dict[str, str], Field(description="How each endpoint's 95 % intervals were computed.")
    ]
    uncertainty: IntervalUncertainty


class PatientSummary(TypedDict):
    """The derived categories the model used."""

    who_grade: Annotated[
        Literal["G1", "G2", "G3"],
        Field(description="The grade used; where imputed, the most probable one."),
    ]
    grade_source: Literal["who_grade", "ki67_percent", "imputed"]
    burden_category: str
    modality: ModalityName
    planned_modality_given: bool
    imputed_fields: NotRequired[
        Annotated[
            list[str],
            Field(
                description="Fields left unknown and integrated over (imputed from the known "
                "ones); the `imputed_fields` warning says how much they move the answer."
            ),
        ]
    ]


@with_config(ConfigDict(extra="allow"))
class PrognosisWarning(TypedDict):
    """A caveat the clinician must see; `code` is stable, `message` is for people."""

    code: str
    message: str


class SetAside(TypedDict):
    """A resource of a patient record that the conflict rules did not use, and why."""

    resource: Annotated[str, Field(description="The resource, as its place in the record.")]
    rule: Annotated[str, Field(description="The rule that set it aside.")]
    reason: Annotated[str, Field(description="Why, in words; no value quoted.")]


class PrognosisShape(TypedDict):
    """The prognosis of one patient: HPFS and OS, explanations and the modality comparison."""

    model: ModelInfo
    hpfs: EndpointPrognosis
    os: EndpointPrognosis
    hepatic_progression: NotRequired[
        Annotated[
            HepaticProgression | None,
            Field(
                description="Cumulative incidence of hepatic progression (death as a "
                "competing event); None when the primary model has no cause-specific Cox "
                "components."
            ),
        ]
    ]
    patient_summary: PatientSummary
    warnings: list[PrognosisWarning]
    disclaimer: str
    out_of_100: NotRequired[
        Annotated[
            OutOf100 | None,
            Field(description="Of 100 people like this patient, per modality at 1, 2 and 3 years."),
        ]
    ]
    plain_language: NotRequired[PlainLanguage | None]
    procedure_harms: NotRequired[
        Annotated[
            ProcedureHarms | None,
            Field(
                description="Published harms of each procedure: population figures, with source."
            ),
        ]
    ]
    similar_patients: NotRequired[
        Annotated[
            SimilarPatients | None,
            Field(
                description="Kaplan-Meier curves of the most similar training patients; None "
                "for bundles saved without them."
            ),
        ]
    ]
    contributions_over_time: NotRequired[
        Annotated[
            ContributionsOverTime | None,
            Field(description="Only when the request sets `contributions_over_time`."),
        ]
    ]
    set_aside: NotRequired[
        Annotated[
            list[SetAside] | None,
            Field(
                description="FHIR route only: resources the conflict rules set aside (`resource`, "
                "`rule`, `reason`; serving/record_rules.py), each also named in a "
                "`record_conflict` warning."
            ),
        ]
    ]
