"""HTTP request and response bodies of the `/v1` API, derived from `model.schema.Patient`.

The response models document what :class:`model.predictor.Predictor` returns (the service
sends the predictor's JSON as is, without re-validating it, because validating ~1,000 nested
objects per prognosis would cost more than the prediction's own JSON encoding); the test
suite validates real responses against them so that the OpenAPI document cannot drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
from pydantic import BaseModel, ConfigDict, Field, RootModel

from model.bundle import MONTH_GRID
from model.schema import NOT_A_BOOLEAN, Patient
from serving.settings import load_settings

__all__ = [
    "EXAMPLE_BATCH_REQUEST",
    "EXAMPLE_MODEL_CARD",
    "EXAMPLE_PROGNOSIS",
    "EXAMPLE_REQUEST",
    "MAX_BATCH",
    "BatchRequest",
    "ErrorResponse",
    "FhirBundle",
    "FhirPrognosis",
    "ModelCard",
    "OperationOutcome",
    "Prognosis",
    "PrognosisList",
    "PrognosisRequest",
]

MAX_BATCH = load_settings().max_batch
"""Most patients in one batch request (`NETPROG_MAX_BATCH`, read when the service starts)."""

_EXAMPLES = Path(__file__).with_name("examples")

EXAMPLE_PATIENT = {
    "age_years": 64,
    "sex": "male",
    "who_grade": "G2",
    "ki67_percent": 8,
    "tumor_burden_percent": 40,
    "primary_site": "pancreas",
    "prior_hepatic_treatment": True,
    "primary_resected": False,
    "extrahepatic_metastases": False,
    "somatostatin_analog": True,
    "biologic_therapy": True,
    "cytotoxic_chemotherapy": False,
    "planned_modality": "SIRT",
}
EXAMPLE_REQUEST = {"patient": EXAMPLE_PATIENT}
EXAMPLE_BATCH_REQUEST = {
    "patients": [
        EXAMPLE_PATIENT,
        {
            "age_years": 71,
            "ki67_percent": 35,
            "tumor_burden_percent": 60,
            "primary_site": "lung",
            "prior_hepatic_treatment": False,
            "extrahepatic_metastases": True,
            "somatostatin_analog": False,
            "biologic_therapy": False,
            "cytotoxic_chemotherapy": True,
            "planned_modality": "TAE",
        },
    ]
}
EXAMPLE_PROGNOSIS = json.loads((_EXAMPLES / "prognosis_response.json").read_text(encoding="utf-8"))
"""A real prognosis of `EXAMPLE_PATIENT`, its curves cut to months 0, 12, 24 and 60."""
EXAMPLE_MODEL_CARD = json.loads((_EXAMPLES / "model_card.json").read_text(encoding="utf-8"))

Probability = Annotated[float, Field(ge=0, le=1)]
Months = Annotated[float, Field(ge=0)]
HorizonKey = Literal["12", "24", "36", "60"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PrognosisRequest(bentoml.IODescriptor):
    """One patient, and optionally the months since embolotherapy for conditional survival."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": EXAMPLE_REQUEST})

    patient: Patient
    months_since_treatment: Annotated[
        float | None,
        Field(
            ge=0,
            le=float(MONTH_GRID[-1]),
            allow_inf_nan=False,
            description="Months since embolotherapy for a patient seen at follow-up and free "
            "of each endpoint's event so far: adds conditional survival S(t)/S(s).",
        ),
        NOT_A_BOOLEAN,
    ] = None


class BatchRequest(bentoml.IODescriptor):
    """Up to `MAX_BATCH` patients, answered in the same order."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": EXAMPLE_BATCH_REQUEST})

    patients: Annotated[list[Patient], Field(min_length=1, max_length=MAX_BATCH)]


class Interval(_Strict):
    """A point estimate with its 95 % interval."""

    value: float
    lower: float
    upper: float


class HorizonSurvival(Interval):
    """Survival at a horizon; `extrapolated` when beyond adequate training follow-up."""

    extrapolated: bool | None = None


class Median(_Strict):
    """Median months with interval; None where not reached within the 120-month grid."""

    value: Months | None
    lower: Months | None
    upper: Months | None
    reached: bool
    text: str
    extrapolated: bool | None = None


class CurvePoint(_Strict):
    """One point of a survival curve with its pointwise 95 % interval."""

    month: Months
    survival: Probability
    lower: Probability
    upper: Probability


class CheckMedian(_Strict):
    value: Months | None
    reached: bool


class CheckModel(_Strict):
    """The other model family's answer, as a plausibility check."""

    model: str
    median_months: CheckMedian
    survival_at: dict[HorizonKey, Probability]
    median_ratio: float | None
    models_disagree: bool


class ExplanationItem(_Strict):
    """One patient field's SHAP contribution on the log relative hazard scale."""

    field: str
    factor: str
    label: str
    contribution: float
    hazard_ratio: float


class Explanation(_Strict):
    """Additive SHAP contributions to the log relative hazard against a stated baseline."""

    scale: str
    method: str
    base_value: float
    baseline: str
    margin: float
    hazard_ratio_vs_baseline: float
    note: str
    items: list[ExplanationItem]


class Difference(_Strict):
    """This modality minus the planned one."""

    survival_at: dict[HorizonKey, Interval]
    rmst_60_months: Interval


class Support(_Strict):
    """How much training data there is about patients like this one under the modality."""

    propensity: Probability
    similar_treated: int
    similar_definition: str
    extrapolation: bool
    source_patients: int | None = Field(
        default=None,
        description="For a model built from published aggregates (the synthetic default): "
        "about how many real patients of this grade received the modality in the source "
        "studies; null for a model trained on a registry.",
    )
    warning: str | None


class ModalityEntry(_Strict):
    """The same patient under one modality."""

    modality: Literal["TACE", "TAE", "SIRT"]
    planned: bool
    median_months: Median
    survival_at: dict[HorizonKey, HorizonSurvival]
    rmst_60_months: Interval
    curve: list[CurvePoint]
    difference_vs_planned: Difference | None
    support: Support
    caveat: str


class Conditional(_Strict):
    """Survival given freedom from the event up to `months_since_treatment`."""

    months_since_treatment: Months
    survival_at_start: Probability
    median_months: Median
    median_remaining_months: Months | None
    additional_survival_at: dict[HorizonKey, Interval | None]
    curve: list[CurvePoint]


class AtRisk(_Strict):
    """Training patients still at risk (event-free and under follow-up) at a month."""

    month: Annotated[int, Field(ge=0)]
    at_risk: Annotated[int, Field(ge=0)]


class EndpointPrognosis(_Strict):
    """The prognosis of one endpoint (HPFS or OS) under the planned modality."""

    model: str
    event: str = Field(
        description='"hepatic progression or death" (HPFS: whichever comes first) or "death" (OS).'
    )
    modality: Literal["TACE", "TAE", "SIRT"]
    median_months: Median
    survival_at: dict[HorizonKey, HorizonSurvival]
    rmst_60_months: Interval
    curve: list[CurvePoint]
    max_follow_up_months: Months
    extrapolated_from_month: int | None
    numbers_at_risk: list[AtRisk] | None = Field(
        None,
        description="Training patients at risk every 12 months, as printed under a "
        "Kaplan-Meier figure; None for models saved before they were recorded.",
    )
    interval_method: str | None = Field(
        None,
        description="How the 95 % intervals were made: the delta method on a relaxed Cox "
        "model (log-log scale) or bootstrap percentiles of the boosted model.",
    )
    risk_percentile: Annotated[float, Field(ge=0, le=100)]
    check_model: CheckModel | None
    conditional: Conditional | None = None
    explanation: Explanation
    modalities: list[ModalityEntry]


class IncidencePoint(_Strict):
    """One point of a cumulative incidence curve with its pointwise 95 % interval."""

    month: Months
    incidence: Probability
    lower: Probability
    upper: Probability


class ModalityIncidence(_Strict):
    """The cumulative incidence of hepatic progression under one modality."""

    modality: Literal["TACE", "TAE", "SIRT"]
    cumulative_incidence_at: dict[HorizonKey, HorizonSurvival]


class HepaticProgression(_Strict):
    """Cumulative incidence of hepatic progression, death as a competing event.

    Not 1 - HPFS: HPFS also ends at death, and a patient who dies first can no longer progress.
    """

    measure: str
    event: str
    competing_event: str
    modality: Literal["TACE", "TAE", "SIRT"]
    cumulative_incidence_at: dict[HorizonKey, HorizonSurvival]
    curve: list[IncidencePoint]
    modalities: list[ModalityIncidence]
    interval_method: str
    note: str


class IntervalUncertainty(_Strict):
    """Which uncertainty the intervals carry."""

    kind: Literal["sampling", "literature"] = Field(
        description="sampling: of the training cohort (a model trained on a registry); "
        "literature: of the published estimates the synthetic default rests on."
    )
    text: str


class ModelInfo(_Strict):
    """Which model answered."""

    tag: str | None
    trained_on: Literal["synthetic", "real"]
    data_fingerprint: str | None
    trained_at: str | None
    schema_version: str
    primary_model: dict[str, str]
    check_model: dict[str, str | None]
    n_bootstrap: dict[str, int] = Field(
        description="Bootstrap refits behind the intervals per endpoint; 0 where they are "
        "delta-method intervals (see interval_method)."
    )
    interval_method: dict[str, str] = Field(
        description="How each endpoint's 95 % intervals were computed."
    )
    uncertainty: IntervalUncertainty


class PatientSummary(_Strict):
    """The derived categories the model used."""

    who_grade: Literal["G1", "G2", "G3"]
    grade_source: Literal["who_grade", "ki67_percent"]
    burden_category: str
    modality: Literal["TACE", "TAE", "SIRT"]
    planned_modality_given: bool


class PrognosisWarning(BaseModel):
    """A caveat the clinician must see; `code` is stable, `message` is for people."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class Prognosis(bentoml.IODescriptor):
    """The prognosis of one patient: HPFS and OS, explanations and the modality comparison."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": EXAMPLE_PROGNOSIS})

    prediction_id: str = Field(description="UUID4 of this prediction, as in the audit log.")
    model: ModelInfo
    hpfs: EndpointPrognosis
    os: EndpointPrognosis
    hepatic_progression: HepaticProgression | None = Field(
        None,
        description="Cumulative incidence of hepatic progression (death as a competing event); "
        "None when the primary model has no cause-specific Cox components.",
    )
    patient_summary: PatientSummary
    warnings: list[PrognosisWarning]
    disclaimer: str


class PrognosisList(RootModel[list[Prognosis]], bentoml.IODescriptor):
    """Prognoses in the order of the request's patients."""

    model_config = ConfigDict(json_schema_extra={"example": [EXAMPLE_PROGNOSIS]})


class TrainingData(_Strict):
    label: Literal["synthetic", "real"]
    description: str
    n_patients: int | None
    n_events: dict[str, int] | None
    data_fingerprint: str | None
    trained_at: str | None
    source: str | None = None


class ModelCard(_Strict):
    """What the served model is, what it was trained on, how well it does and what not to do."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": EXAMPLE_MODEL_CARD})

    name: str
    tag: str
    version: str
    schema_version: str
    registered_at: str
    training_data: TrainingData
    models: dict[str, Any]
    metrics: dict[str, Any] | None = Field(
        None,
        description="Cross-validated performance recorded at training, per endpoint and model.",
    )
    held_out_metrics: dict[str, Any] | None = Field(
        None, description="Performance on the patients held out of training, when there were any."
    )
    uncertainty: dict[str, Any] | None = Field(
        default=None,
        description="Which uncertainty the intervals carry: `kind` sampling (a registry) or "
        "literature (the synthetic default), and `text`.",
    )
    evidence_base: dict[str, Any] | None = Field(
        default=None,
        description="For the synthetic default: the published studies it rests on and how many "
        "real patients stand behind each grade and modality; null for a registry model.",
    )
    intended_use: str
    out_of_scope: list[str]
    limitations: list[str]
    disclaimer: str
    details: dict[str, Any] | None = Field(
        None, description="The full TRIPOD+AI model card stored with the model at training, if any."
    )


class ErrorDetail(BaseModel):
    """One problem with one field: where (`loc`) and what is allowed (`msg`)."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: a message, and for invalid input one detail per field."""

    error: str
    detail: list[ErrorDetail] | None = None


# --- FHIR input (POST /v1/fhir/prognosis) ------------------------------------------------------


class FhirBundle(BaseModel):
    """A FHIR R4 Bundle (type collection) of one patient's resources: the envelope only.

    Documents the request body; the route validates the resources themselves with
    fhir.resources (serving/fhir.py), so what is said here is the least a Bundle must be.
    """

    model_config = ConfigDict(extra="allow")

    resourceType: Literal["Bundle"]
    type: str
    entry: list[dict[str, Any]] | None = None


class FhirPrognosis(Prognosis):
    """The `/v1/prognosis` answer for the patient a Bundle describes, with that patient and
    where each field came from."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=None)

    patient: Patient
    provenance: dict[str, dict[str, Any]] = Field(
        description="For every patient field, the resource, element and code it came from, or "
        '`"source"` "default", "derived" or "absent".'
    )
    set_aside: list[dict[str, str]] = Field(
        default_factory=list,
        description="Resources the conflict rules set aside (`resource`, `rule`, `reason`; "
        "serving/record_rules.py), each also named in a `record_conflict` warning.",
    )


class OutcomeIssue(BaseModel):
    """One problem: its FHIR issue type, what must hold (no value quoted) and where."""

    model_config = ConfigDict(extra="allow")

    severity: Literal["fatal", "error", "warning", "information"]
    code: str
    diagnostics: str | None = None
    details: dict[str, Any] | None = None
    expression: list[str] | None = None


class OperationOutcome(BaseModel):
    """A FHIR R4 OperationOutcome: the answer to FHIR input that is refused."""

    model_config = ConfigDict(extra="allow")

    resourceType: Literal["OperationOutcome"]
    issue: Annotated[list[OutcomeIssue], Field(min_length=1)]
