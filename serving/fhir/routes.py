"""`POST /v1/fhir/prognosis`: a FHIR R4 Bundle in, the audited prognosis out."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import anyio.to_thread
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from model.exceptions import ModelError
from serving.answers import (
    Answers,
    PrognosisService,
    caller_of,
    json_answer,
    media_type_rejection,
    refusal,
)
from serving.exceptions import AuditWriteError
from serving.fhir.codes import MAPPING_PATH
from serving.fhir.errors import FhirInputError, FhirIssue
from serving.fhir.mapper import MappedPatient
from serving.records import answer_fields, map_record, read_record
from serving.risk_assessment import prognosis_bundle, wants_fhir

__all__ = [
    "EXAMPLE_BUNDLE",
    "FHIR_MEDIA_TYPES",
    "ROUTE_FHIR_PROGNOSIS",
    "fhir_app",
    "mapped_prognosis",
    "outcome_answer",
]

logger = logging.getLogger(__name__)

ROUTE_FHIR_PROGNOSIS = "/v1/fhir/prognosis"
FHIR_MEDIA_TYPES = ("application/json", "application/fhir+json")
_FHIR_JSON = "application/fhir+json"

fhir_app = FastAPI(title="NetPrognosis FHIR input", docs_url=None, redoc_url=None, openapi_url=None)
"""Mounted at `/v1` by the service; its one route reads a Bundle and answers the prognosis."""

EXAMPLE_BUNDLE = json.loads(
    (MAPPING_PATH.parent / "examples" / "fhir" / "g2_pancreas_sirt.bundle.json").read_text(
        encoding="utf-8"
    )
)
"""The Bundle of `serving.schemas.EXAMPLE_PATIENT`, the route's documented example."""


def outcome_answer(status_code: int, issues: Sequence[FhirIssue]) -> JSONResponse:
    """The issues as a FHIR OperationOutcome answer."""
    body = FhirInputError(issues).operation_outcome()
    return JSONResponse(body, status_code=status_code, media_type=_FHIR_JSON)


def mapped_prognosis(
    service: PrognosisService,
    request: Request,
    route: str,
    mapped: MappedPatient,
    *,
    with_patient: bool,
) -> dict | Response:
    """The audited prognosis of a mapped patient, or the answer that refuses it.

    With `with_patient`, the answer also holds the mapped `patient` and its `provenance`. A
    patient the model cannot answer for is a 422 OperationOutcome; an answer that cannot be
    audited, a 503.
    """
    extra = None
    if with_patient:
        extra = {"patient": mapped.patient.model_dump(mode="json"), "provenance": mapped.provenance}
    try:
        return service.prognosis(
            mapped.patient, caller=caller_of(request), route=route, extra=extra
        )
    except ModelError as error:
        return outcome_answer(422, [FhirIssue("processing", str(error))])
    except AuditWriteError as error:
        return refusal(error)


def _fhir_answer(service: PrognosisService, request: Request, body: bytes) -> Response:
    try:
        mapped, ruled = map_record(read_record(body))
    except FhirInputError as error:
        logger.info(
            "FHIR bundle refused (%d): %d issue(s) of kind %s (values are not logged)",
            error.status_code,
            len(error.issues),
            error.kinds(),
        )
        return outcome_answer(error.status_code, error.issues)
    answer = mapped_prognosis(service, request, ROUTE_FHIR_PROGNOSIS, mapped, with_patient=True)
    if isinstance(answer, Response):
        return answer
    response = json_answer({**answer, **answer_fields(answer, ruled)})
    if wants_fhir(request.headers.get("accept"), request.query_params.get("_format")):
        fhir_body = prognosis_bundle(json.loads(response.body), mapped.provenance)
        return json_answer(fhir_body, media_type=_FHIR_JSON)
    return response


@fhir_app.post(
    ROUTE_FHIR_PROGNOSIS.removeprefix("/v1"),
    summary="The prognosis of the patient a FHIR R4 Bundle describes",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media: {"schema": {"type": "object"}, "example": EXAMPLE_BUNDLE}
                for media in FHIR_MEDIA_TYPES
            },
        }
    },
    response_class=Response,
)
async def fhir_prognosis(request: Request, service: Answers) -> Response:
    """A FHIR R4 Bundle (type collection) of one patient's resources in, the prognosis out:
    the `/v1/prognosis` answer plus `patient` (the mapped fields) and `provenance` (for every
    field, the resource it came from, or "default", "derived" or "absent").

    Invalid FHIR is a 400 and a Bundle lacking what the model needs a 422, both answered as a
    FHIR OperationOutcome with one issue per problem (the resource and element, or the missing
    item and the codes that would supply it); values are never echoed. Audited like
    `/v1/prognosis`. A whole record up to 10 MiB is read (`set_aside` and the warnings say what
    the conflict rules set aside); with `Accept: application/fhir+json` or `_format=fhir` the
    answer is a Bundle of FHIR RiskAssessment resources (serving/risk_assessment.py).
    """
    rejection = media_type_rejection(request, FHIR_MEDIA_TYPES)
    if rejection is not None:
        return rejection
    body = await request.body()
    return await anyio.to_thread.run_sync(_fhir_answer, service, request, body)
