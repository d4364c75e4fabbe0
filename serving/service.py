"""The BentoML service: the versioned `/v1` JSON API, its auth, audit and model card (I/O only)."""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections.abc import Sequence

import attrs
import bentoml
import numpy as np
from bentoml._internal.server.http import traffic
from fastapi import FastAPI
from pydantic_core import to_json
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response

from model.bundle import ModelBundle
from model.exceptions import ModelError
from model.predictor import Predictor
from model.schema import SCHEMA_VERSION
from serving.audit import AuditEntry, AuditLog, caller_id
from serving.cds_auth import verifier_from_file
from serving.cds_hooks import cds_app
from serving.exceptions import AuditIntegrityError, AuditWriteError, ModelSchemaMismatch
from serving.fhir import fhir_app
from serving.fhir_refusals import FhirRefusalOutcomes
from serving.model_card import build_model_card
from serving.openapi import NetPrognosisService
from serving.schemas import (
    EXAMPLE_MODEL_CARD,
    BatchRequest,
    ModelCard,
    Prognosis,
    PrognosisList,
    PrognosisRequest,
)
from serving.security import CALLER_STATE_KEY, RequestGuard, install_log_redaction
from serving.settings import Settings, load_settings
from serving.web import web_app
from training import registry
from training.exceptions import RegistryError

__all__ = ["BUNDLE_TAG", "ROUTE_BATCH", "ROUTE_MODEL", "ROUTE_PROGNOSIS", "NetPrognosis"]

logger = logging.getLogger(__name__)
install_log_redaction()

ROUTE_PROGNOSIS = "/v1/prognosis"
ROUTE_BATCH = "/v1/prognosis/batch"
ROUTE_MODEL = "/v1/model"


@attrs.frozen
class RegisteredBundle(bentoml.models.BentoModel):
    """A bundle of the local model store.

    Unlike its parent it never tries to pull a missing model from BentoCloud (the service
    must not reach the network), and a missing model fails with the registry's message,
    which says how to train one. `bentoml serve` resolves it before starting any worker,
    so a store without the model refuses to start.
    """

    def resolve(self, base_path=None) -> bentoml.Model:
        registry.get_model(str(self.tag))
        return super().resolve(base_path)

    def to_info(self, alias: str | None = None):
        registry.get_model(str(self.tag))
        return super().to_info(alias)


def resolve_bundle_tag(settings: Settings) -> str:
    """The tag to serve, pinned to a version when the store has it.

    `NETPROG_MODEL_TAG`, else the production pointer, else the latest bundle. Pinning at
    import makes every worker load the same model even if one is registered meanwhile.
    """
    tag = settings.model_tag or registry.production_tag() or f"{registry.MODEL_NAME}:latest"
    try:
        return str(registry.get_model(tag).tag)
    except RegistryError:
        return tag


def load_verified(tag: str) -> tuple[bentoml.Model, ModelBundle]:
    """The store entry and bundle of `tag`, after checking its artifacts and schema version.

    Raises
    ------
    RegistryError
        No such model; the message says how to train one.
    BundleIntegrityError
        An artifact was altered or removed since training; the message names it.
    ModelSchemaMismatch
        The bundle was trained for another version of the patient schema.
    """
    stored = registry.get_model(tag)
    registry.verify(stored)
    _check_schema_version(stored.tag, stored.info.labels.get("schema_version"))
    bundle = registry.load_bundle(str(stored.tag))
    _check_schema_version(stored.tag, bundle.schema_version)
    return stored, bundle


def _check_schema_version(tag, version: str | None) -> None:
    if version != SCHEMA_VERSION:
        raise ModelSchemaMismatch(
            f"model {tag} must be trained for patient schema version {SCHEMA_VERSION}, but "
            f"was trained for {version!r}; retrain it with `netprog train` using this code"
        )


class RequestTimeout(traffic.TimeoutMiddleware):
    """BentoML's request timeout (504 after `timeout` s), with its timer cancelled when the
    request ends.

    BentoML 1.4's own middleware leaves each request's timer on the event loop for the whole
    timeout, and with it the request's context (its trace span, its future): at 50 requests/s
    per worker and 300 s, some 15,000 requests' state, about 150 MB per worker, and full
    garbage collections that pause answers for 0.1-0.2 s (tests/reliability/test_load.py).
    """

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        handling = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        try:
            await waiter
        except TimeoutError:
            if handling.cancel():
                message = f"Not able to process the request in {self.timeout} seconds"
                await JSONResponse({"error": message}, status_code=504)(scope, receive, send)
        else:
            await handling
        finally:
            timer.cancel()


# BentoML builds its traffic middleware from this name when each worker's app is made.
traffic.TimeoutMiddleware = RequestTimeout  # type: ignore[misc]

_SETTINGS = load_settings()
BUNDLE_TAG = resolve_bundle_tag(_SETTINGS)
"""The model this process serves."""

model_app = FastAPI(
    title="NetPrognosis model card", docs_url=None, redoc_url=None, openapi_url=None
)


@bentoml.service(
    name="NetPrognosis",
    service_class=NetPrognosisService,
    workers=_SETTINGS.workers,
    # Without a bound, an overloaded worker queues every request and its throughput collapses
    # (tests/reliability/test_load.py); BentoML divides the service's bound among the workers.
    traffic={"timeout": 300, "max_concurrency": _SETTINGS.max_concurrency * _SETTINGS.workers},
    labels={"project": "netprognosis", "api": "v1", "license": "GPL-3.0-or-later"},
)
@bentoml.asgi_app(model_app, path="/v1", name="model-card")
class NetPrognosis:
    """Prognosis for neuroendocrine-tumour liver metastases before TACE, TAE or SIRT.

    Hepatic progression-free and overall survival with uncertainty, the reasons behind them
    and an observational comparison of the three modalities. Default models are trained on
    synthetic data and are not for clinical use; every answer says what trained its model.
    """

    bundle_ref = RegisteredBundle(BUNDLE_TAG)

    @bentoml.on_deployment
    def check_model() -> None:
        """Refuse to start, before any worker, when the model is missing, altered or stale."""
        stored = registry.get_model(BUNDLE_TAG)
        registry.verify(stored)
        _check_schema_version(stored.tag, stored.info.labels.get("schema_version"))

    def __init__(self) -> None:
        settings = load_settings()
        stored, bundle = load_verified(str(type(self).bundle_ref.tag))
        self.model_tag = str(stored.tag)
        self.predictor = Predictor(bundle)
        self.card = build_model_card(stored, bundle)
        self.audit = AuditLog.from_settings(settings)
        self.audit.check_writable()
        verifier_from_file(settings.cds_clients_file)  # a bad CDS clients file stops the start
        logger.info(
            "serving %s (trained on %s data); audit log %s",
            self.model_tag,
            self.card["training_data"]["label"],
            self.audit.path,
        )
        if not settings.auth_enabled:
            logger.warning(
                "API authentication is off: set NETPROG_API_TOKEN_HASHES before exposing "
                "the service beyond this host"
            )
        # The model and the libraries leave some 300,000 long-lived objects, which every full
        # garbage collection scanned again: 0.13-0.16 s every few seconds under load, the
        # slowest 1 % of answers (tests/reliability/test_load.py). Frozen, they are skipped.
        gc.collect()
        gc.freeze()

    @bentoml.api(route=ROUTE_PROGNOSIS, output_spec=Prognosis)
    def prognosis(self, request: PrognosisRequest, /, ctx: bentoml.Context) -> Response:
        """The prognosis of one patient: HPFS and OS, explanation and modality comparison.

        Optional `months_since_treatment` adds conditional survival for a patient seen at
        follow-up. Every answer is recorded in the audit log first (503 if it cannot be).
        """
        try:
            result = self.predictor.prognosis(request.patient, request.months_since_treatment)
        except ModelError as error:
            return _error(ctx, 422, str(error))
        payload = _audit_payload(request.patient, request.months_since_treatment)
        return self._audited(ctx, ROUTE_PROGNOSIS, [payload], [result], single=True)

    @bentoml.api(route=ROUTE_BATCH, output_spec=PrognosisList)
    def prognosis_batch(self, request: BatchRequest, /, ctx: bentoml.Context) -> Response:
        """Prognoses of 1 to `NETPROG_MAX_BATCH` patients, in the order given."""
        try:
            results = self.predictor.batch(list(request.patients))
        except ModelError as error:
            return _error(ctx, 422, str(error))
        payloads = [_audit_payload(patient, None) for patient in request.patients]
        return self._audited(ctx, ROUTE_BATCH, payloads, results, single=False)

    @model_app.get(
        "/model",
        response_model=ModelCard,
        summary="The model card",
        responses={200: {"content": {"application/json": {"example": EXAMPLE_MODEL_CARD}}}},
    )
    def model_card(self) -> dict:
        """The served model: version, training data (synthetic or real), metrics, intended
        use, limitations and the disclaimer."""
        return self.card

    def _audited(
        self,
        ctx: bentoml.Context,
        route: str,
        payloads: Sequence[dict],
        results: Sequence[dict],
        *,
        single: bool,
    ) -> Response:
        caller = caller_id(getattr(ctx.request.state, CALLER_STATE_KEY, None))
        answers, entries = [], []
        for payload, result in zip(payloads, results, strict=True):
            prediction_id = str(uuid.uuid4())
            answers.append({"prediction_id": prediction_id, **result})
            entries.append(
                AuditEntry(
                    prediction_id=prediction_id,
                    route=route,
                    model_tag=self.model_tag,
                    caller=caller,
                    input_hmac=self.audit.input_digest(payload),
                )
            )
        try:
            self.audit.append(entries)
        except (AuditWriteError, AuditIntegrityError) as error:
            logger.error("prediction refused, not audited: %s", error)
            return _error(ctx, 503, f"prediction refused: {error.public_message}")
        body = answers[0] if single else answers
        return Response(to_json(body, fallback=_plain_value), media_type="application/json")


def _audit_payload(patient, months_since_treatment: float | None) -> dict:
    """What a prediction's input digest covers: the patient and the follow-up time."""
    return {
        "patient": patient.model_dump(mode="json"),
        "months_since_treatment": months_since_treatment,
    }


def _plain_value(value: object) -> object:
    """NumPy scalars as Python values: the predictor's dicts should hold none, but may."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _error(ctx: bentoml.Context, status: int, message: str) -> JSONResponse:
    ctx.response.status_code = status
    return JSONResponse({"error": message}, status_code=status)


class JsonRoutingErrors:
    """ASGI middleware: the router's own 404 and 405 answered as `{"error": ...}`.

    Every error of this API is JSON (docs/api.md), but Starlette answers a path no route
    matches, or a method a route lacks, in plain text. Such paths include any with an encoded
    line break inside (`/cds-services/a%0Ab`): a mounted app's path pattern stops at line ends.
    """

    _MESSAGES = {
        404: "no route matches this path; the routes are listed at /docs.json",
        405: "this route does not answer this method; see /docs.json",
    }

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replacement: bytes | None = None

        async def send_json(message) -> None:
            nonlocal replacement
            if message["type"] == "http.response.start" and message["status"] in self._MESSAGES:
                headers = MutableHeaders(raw=list(message["headers"]))
                if headers.get("content-type", "").startswith("text/plain"):
                    replacement = to_json({"error": self._MESSAGES[message["status"]]})
                    headers["content-type"] = "application/json"
                    headers["content-length"] = str(len(replacement))
                    message = {**message, "headers": headers.raw}
            elif message["type"] == "http.response.body" and replacement is not None:
                if message.get("more_body", False):
                    return
                message = {**message, "body": replacement}
            await send(message)

        await self.app(scope, receive, send_json)


if _SETTINGS.cors_allow_origins:
    NetPrognosis.add_asgi_middleware(
        CORSMiddleware,
        allow_origins=list(_SETTINGS.cors_allow_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
    )
# Outside the guard (middleware added earlier wraps those added later): its refusals on the
# FHIR route become OperationOutcomes (serving/fhir_refusals.py).
NetPrognosis.add_asgi_middleware(FhirRefusalOutcomes)
NetPrognosis.add_asgi_middleware(RequestGuard, json_routes=(ROUTE_PROGNOSIS, ROUTE_BATCH))
NetPrognosis.add_asgi_middleware(JsonRoutingErrors)
# The clinician form at `/`: BentoML tries the API and system routes before mounted apps and
# hands a mounted app only the paths its own routes match (`/` and `/web/...`), so nothing
# else is shadowed; it replaces BentoML's own index page.
NetPrognosis.mount_asgi_app(web_app, path="/", name="clinician-form")
# EHR integration: POST /v1/fhir/prognosis and the CDS Hooks routes under /cds-services
# (serving/fhir.py, serving/cds_hooks.py); like the form, each matches only its own routes.
NetPrognosis.mount_asgi_app(fhir_app, path="/v1", name="fhir")
NetPrognosis.mount_asgi_app(cds_app, path="/", name="cds-hooks")
