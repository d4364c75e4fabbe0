"""HTTP request and response bodies of the `/v1` API, derived from the model's own types.

Requests are `model.schema.Patient`'s. The prognosis models are generated from the typed
dicts of `model.prognosis_shape`, the one definition of what :class:`model.predictor.Predictor`
returns. They document the answer in the OpenAPI document and validate answers in the test
suite; the service sends the predictor's dicts as they are, without validating them per
request (validating ~1,000 nested objects per prognosis would cost more than the
prediction's own JSON encoding).
"""

from __future__ import annotations

import functools
import json
import operator
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired

import bentoml
from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictBool, create_model
from typing_extensions import is_typeddict

from model import prognosis_shape as shape
from model.bundle import MONTH_GRID
from model.schema import NOT_A_BOOLEAN, Patient, example_patients
from serving.detail import Detail
from serving.settings import load_settings

__all__ = [
    "EXAMPLE_BATCH_REQUEST",
    "EXAMPLE_MODEL_CARD",
    "EXAMPLE_PATIENT",
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
    "RefusedModel",
    "ServingState",
]

MAX_BATCH = load_settings().max_batch
"""Most patients in one batch request (`NETPROG_MAX_BATCH`, read when the service starts)."""

_EXAMPLES = Path(__file__).with_name("examples")

DETAIL_DESCRIPTION = (
    '"full" (default): the whole prognosis; "summary": the same without any `curve` (the '
    "monthly survival and incidence curves, some 60 % of the answer), every other field "
    "unchanged."
)

EXAMPLE_BATCH_REQUEST: dict[str, Any] = {"patients": example_patients()}
"""The API's example patients, from each field's `examples` in `model.schema`."""
EXAMPLE_PATIENT = EXAMPLE_BATCH_REQUEST["patients"][0]
EXAMPLE_REQUEST: dict[str, Any] = {"patient": EXAMPLE_PATIENT}
EXAMPLE_PROGNOSIS = json.loads((_EXAMPLES / "prognosis_response.json").read_text(encoding="utf-8"))
"""A real prognosis of `EXAMPLE_PATIENT`, its curves cut to months 0, 12, 24 and 60."""
EXAMPLE_MODEL_CARD = json.loads((_EXAMPLES / "model_card.json").read_text(encoding="utf-8"))


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
    contributions_over_time: StrictBool = Field(
        False,
        description="Add `contributions_over_time`: each field's contribution to HPFS, OS and "
        "the cumulative incidence at 12, 24 and 36 months in probability points. Off by "
        "default: it costs some 1,024 extra curves per endpoint.",
    )
    detail: Annotated[Detail, Field(description=DETAIL_DESCRIPTION)] = "full"


class BatchRequest(bentoml.IODescriptor):
    """Up to `MAX_BATCH` patients, answered in the same order."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": EXAMPLE_BATCH_REQUEST})

    patients: Annotated[list[Patient], Field(min_length=1, max_length=MAX_BATCH)]
    detail: Annotated[Detail, Field(description=DETAIL_DESCRIPTION)] = "full"


@functools.cache
def model_of(shape: type) -> Any:
    """The pydantic model of a typed dict of `model.prognosis_shape`, nested ones as models.

    The typed dict's docstring, its fields' constraints and descriptions and its pydantic
    config (else ``extra="forbid"``) carry over.
    """
    config = getattr(shape, "__pydantic_config__", None) or ConfigDict(extra="forbid")
    return create_model(
        shape.__name__,
        __config__=config,
        __doc__=shape.__doc__,
        __module__=__name__,
        **fields_of(shape),
    )


def fields_of(shape: type) -> dict[str, Any]:
    """A typed dict's keys as pydantic field definitions: `NotRequired` keys default to None."""
    fields: dict[str, Any] = {}
    for key, hint in typing.get_type_hints(shape, include_extras=True).items():
        if typing.get_origin(hint) is NotRequired:
            fields[key] = (_with_models(typing.get_args(hint)[0]), None)
        else:
            fields[key] = (_with_models(hint), ...)
    return fields


def _with_models(hint: Any) -> Any:
    """`hint` with every typed dict inside it replaced by its model."""
    if is_typeddict(hint):
        return model_of(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return Annotated[(_with_models(args[0]), *hint.__metadata__)]
    if origin in (types.UnionType, typing.Union):
        return functools.reduce(operator.or_, [_with_models(arg) for arg in args])
    if origin in (list, dict):
        return origin[tuple(_with_models(arg) for arg in args)]
    return hint


class _Answer(bentoml.IODescriptor):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": EXAMPLE_PROGNOSIS})


Prognosis: Any = create_model(
    "Prognosis",
    __base__=_Answer,
    __doc__=shape.PrognosisShape.__doc__,
    __module__=__name__,
    prediction_id=(str, Field(description="UUID4 of this prediction, as in the audit log.")),
    **fields_of(shape.PrognosisShape),
)
"""`model.prognosis_shape.PrognosisShape` after the prediction id: the `/v1/prognosis` answer."""


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


class RefusedModel(_Strict):
    """A promoted model this worker refused to serve, and why (its verification's message)."""

    tag: str
    reason: str
    at: str


class ServingState(_Strict):
    """Which model answers now, and where the production pointer points (serving/hot_swap.py)."""

    model_in_service: str = Field(description="The tag every answer of this worker names now.")
    production_pointer: str | None = Field(
        description="The tag `netprog promote` / `rollback` last set; null without a pointer."
    )
    follows_pointer: bool = Field(
        description="False when `NETPROG_MODEL_TAG` pins the model: the pointer is not followed."
    )
    poll_seconds: float = Field(description="How often the worker reads the pointer.")
    last_checked_at: str | None = Field(description="When it last read it (UTC).")
    refused: RefusedModel | None = Field(
        description="The pointer's target, when this worker refused it (it keeps serving the "
        "model in service); null otherwise."
    )


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
    serving: ServingState | None = Field(
        None, description="The model in service and the production pointer's target."
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
    fhir.resources (serving/fhir/parsing.py), so what is said here is the least a Bundle must be.
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
