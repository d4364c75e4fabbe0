"""The CDS Hooks routes: discovery, a service call answered with one card, and feedback."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

import anyio.to_thread
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from serving.answers import (
    Answers,
    PrognosisService,
    caller_of,
    error_answer,
    media_type_rejection,
    refusal,
)
from serving.cds_hooks.cards import missing_card, prognosis_card
from serving.cds_hooks.discovery import HOOKS, ROUTE_DISCOVERY, discovery, prefetch_templates
from serving.cds_hooks.feedback import feedback_entries
from serving.cds_hooks.requests import (
    CdsRequestError,
    HookRequest,
    parse_hook_request,
    prefetch_resources,
    selected_orders,
)
from serving.exceptions import AuditWriteError
from serving.fhir import (
    FhirBundleIncomplete,
    FhirInputError,
    FhirResource,
    FhirValidationError,
    map_patient,
    plans_embolization,
    read_json,
)
from serving.fhir.routes import mapped_prognosis
from serving.prefetch_fetch import (
    PrefetchUnavailable,
    complete_prefetch,
    plan_for,
    precondition_outcome,
)
from serving.record_rules import apply_record_rules
from serving.risk_assessment import FHIR_JSON, risk_assessment_suggestion
from serving.security import CDS_CLIENT_STATE_KEY

__all__ = ["cds_app"]

logger = logging.getLogger(__name__)

cds_app = FastAPI(title="NetPrognosis CDS Hooks", docs_url=None, redoc_url=None, openapi_url=None)
"""Mounted at `/` by the service; it holds only the `/cds-services` routes."""


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _read_hook(
    request: Request, service_id: str, body: bytes
) -> tuple[HookRequest, list | None, list[FhirResource], list[str]] | Response:
    """The hook request, its selected orders and its resources (prefetched, else fetched), or
    the answer that ends the call: no card for a non-embolization order (before any fetch),
    400 for an invalid request or invalid sent prefetch (validated before any fetch), 412 when
    what the prefetch lacks cannot be fetched (serving/prefetch_fetch.py)."""
    try:
        raw = read_json(body)
        hook_request = parse_hook_request(service_id, raw)
        planned = selected_orders(hook_request) if hook_request.hook == "order-select" else None
        if planned is not None and not plans_embolization(planned):
            # the order being selected is not an embolization: nothing to say, nothing to fetch
            return JSONResponse({"cards": []})
        resources, missing = prefetch_resources(hook_request)  # what was sent: 400 first
        fetched = complete_prefetch(
            hook_request.prefetch,
            templates=prefetch_templates(),
            patient_id=hook_request.patient_id,
            body=cast("Mapping[str, Any]", raw),  # a JSON object: parse_hook_request
            plan=plan_for(request.scope.get("state", {}).get(CDS_CLIENT_STATE_KEY)),
        )
        if missing and fetched != hook_request.prefetch:
            hook_request = dataclasses.replace(hook_request, prefetch=fetched)
            resources, missing = prefetch_resources(hook_request)
    except PrefetchUnavailable as error:
        logger.info("CDS Hooks request refused (412): prefetch missing (%s)", error.reason)
        return JSONResponse(precondition_outcome(error), status_code=412, media_type=FHIR_JSON)
    except CdsRequestError as error:
        logger.info("CDS Hooks request refused (400): not a valid %s request", service_id)
        return error_answer(400, str(error))
    except FhirInputError as error:
        logger.info(
            "CDS Hooks request refused (400): %d FHIR issue(s) of kind %s (values are not logged)",
            len(error.issues),
            error.kinds(),
        )
        return JSONResponse(error.operation_outcome(), status_code=400)
    return hook_request, planned, resources, missing


def _answer_hook(
    service: PrognosisService, request: Request, service_id: str, body: bytes
) -> Response:
    read = _read_hook(request, service_id, body)
    if isinstance(read, Response):
        return read
    hook_request, planned, resources, missing = read
    base = _base_url(request)
    ruled = apply_record_rules(resources, planned=planned)
    try:
        mapped = map_patient(ruled.resources, planned=planned)
    except FhirBundleIncomplete as error:
        logger.info(
            "CDS Hooks %s: no prognosis, %d item(s) missing (values are not logged)",
            service_id,
            len(error.issues),
        )
        return JSONResponse({"cards": [missing_card(error.issues, missing, base_url=base)]})
    route = f"{ROUTE_DISCOVERY}/{service_id}"
    prognosis = mapped_prognosis(service, request, route, mapped, with_patient=False)
    if isinstance(prognosis, Response):
        return prognosis
    prognosis["warnings"] = [*prognosis.get("warnings", []), *ruled.warnings]
    card = prognosis_card(prognosis, mapped, base_url=base, missing_prefetch=missing)
    card["suggestions"].append(
        risk_assessment_suggestion(
            prognosis, mapped.provenance, patient_id=hook_request.patient_id, card_uuid=card["uuid"]
        )
    )
    return JSONResponse({"cards": [card]})


def _record_feedback(
    service: PrognosisService, request: Request, service_id: str, body: bytes
) -> Response:
    try:
        entries = feedback_entries(service_id, read_json(body))
    except (CdsRequestError, FhirValidationError) as error:
        logger.info("CDS Hooks feedback refused (400): not valid CDS Hooks 2.0 feedback")
        message = str(error) if isinstance(error, CdsRequestError) else "the body must be JSON"
        return error_answer(400, message)
    route = f"{ROUTE_DISCOVERY}/{service_id}/feedback"
    try:
        service.record_feedback(entries, caller=caller_of(request), route=route)
    except AuditWriteError as error:
        return refusal(error, "feedback")
    return Response(status_code=200)


_Handler = Callable[[PrognosisService, Request, str, bytes], Response]


async def _dispatch(
    handler: _Handler, service: PrognosisService, request: Request, service_id: str
) -> Response:
    """Check the media type and service id, then run `handler` off the event loop."""
    rejection = media_type_rejection(request, ("application/json",))
    if rejection is not None:
        return rejection
    if service_id not in HOOKS:
        return error_answer(
            404, f"no CDS service with this id; the services are {', '.join(HOOKS)}"
        )
    body = await request.body()
    return await anyio.to_thread.run_sync(handler, service, request, service_id, body)


@cds_app.get(ROUTE_DISCOVERY, summary="CDS Hooks discovery")
def cds_discovery(request: Request) -> Response:
    """The CDS Hooks 2.0 discovery document: the services, their hooks and prefetch."""
    return JSONResponse(discovery())


@cds_app.post(ROUTE_DISCOVERY + "/{service_id}", summary="Call a CDS service")
async def cds_service(request: Request, service_id: str, service: Answers) -> Response:
    """A CDS Hooks 2.0 call: `{"cards": [...]}`, one card (the prognosis, or what is missing)."""
    return await _dispatch(_answer_hook, service, request, service_id)


@cds_app.post(ROUTE_DISCOVERY + "/{service_id}/feedback", summary="Feedback on a card")
async def cds_feedback(request: Request, service_id: str, service: Answers) -> Response:
    """CDS Hooks 2.0 feedback: each entry becomes a `feedback` record of the audit log."""
    return await _dispatch(_record_feedback, service, request, service_id)
