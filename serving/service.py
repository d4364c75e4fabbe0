"""The BentoML service, wired: the `/v1` JSON API and model card, its middleware and mounted apps.

What each part does lives elsewhere: the answer path (predict, audit, answer) in
`serving.answers`, model loading in `serving.loading`, middleware in `serving.middleware`,
the FHIR and CDS Hooks routes in `serving.fhir` and `serving.cds_hooks`, the form in
`serving.web`, the OpenAPI document in `serving.openapi`.
"""

from __future__ import annotations

import gc
import logging
from typing import cast

import bentoml
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response

import serving.without_parquet  # noqa: F401  (before the first import of pandas)
from model.exceptions import ModelError
from serving.answers import PrognosisService, caller_of, error_answer, json_answer, refusal
from serving.audit import AuditLog
from serving.cds_auth import verifier_from_file
from serving.cds_hooks import ROUTE_DISCOVERY, cds_app
from serving.detail import with_detail
from serving.exceptions import AuditWriteError
from serving.fhir.routes import ROUTE_FHIR_PROGNOSIS, fhir_app
from serving.fhir_refusals import FhirRefusalOutcomes
from serving.hot_swap import PointerFollower, load_served_model
from serving.loading import RegisteredBundle, check_stored, resolve_bundle_tag
from serving.middleware import (
    JsonRoutingErrors,
    install_never_debug,
    install_request_timeout,
    install_route_template_metrics,
)
from serving.openapi import NetPrognosisService
from serving.schemas import (
    EXAMPLE_MODEL_CARD,
    BatchRequest,
    ModelCard,
    Prognosis,
    PrognosisList,
    PrognosisRequest,
)
from serving.security import RequestGuard, install_log_redaction
from serving.settings import load_settings
from serving.web import web_app
from serving.web.app import ASSET_PREFIX
from store import registry
from store.bentoml_compat import Service, install_supervisor_check_delay

__all__ = [
    "BUNDLE_TAG",
    "ROUTE_BATCH",
    "ROUTE_MODEL",
    "ROUTE_PROGNOSIS",
    "ROUTE_TEMPLATES",
    "NetPrognosis",
    "RegisteredBundle",
]

logger = logging.getLogger(__name__)

ROUTE_PROGNOSIS = "/v1/prognosis"
ROUTE_BATCH = "/v1/prognosis/batch"
ROUTE_MODEL = "/v1/model"
ROUTE_TEMPLATES = (
    ROUTE_PROGNOSIS,
    ROUTE_BATCH,
    ROUTE_MODEL,
    ROUTE_FHIR_PROGNOSIS,
    ROUTE_DISCOVERY,
    f"{ROUTE_DISCOVERY}/{{service_id}}",
    f"{ROUTE_DISCOVERY}/{{service_id}}/feedback",
    "/",
    f"{ASSET_PREFIX}/{{path:path}}",
    "/docs.json",
    "/schema.json",
    "/static_content/{path:path}",
    "/livez",
    "/healthz",
    "/readyz",
    "/metrics",
)
"""Every route the service answers, as `/metrics` labels it (tests/serving/test_middleware.py
checks it against the OpenAPI document); any other path is labelled `<unrouted>`."""

install_log_redaction()
install_request_timeout()
install_route_template_metrics(ROUTE_TEMPLATES)
install_never_debug()

_SETTINGS = load_settings()
install_supervisor_check_delay(_SETTINGS.worker_check_seconds)
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

    # mypy's attrs plugin cannot see the fields of BentoML's (untyped) BentoModel.
    bundle_ref = RegisteredBundle(BUNDLE_TAG)  # type: ignore[call-arg]

    @bentoml.on_deployment
    def check_model() -> None:
        """Refuse to start, before any worker, when the model is missing, altered or stale."""
        check_stored(BUNDLE_TAG)

    def __init__(self) -> None:
        settings = load_settings()
        model = load_served_model(str(type(self).bundle_ref.tag))
        audit = AuditLog.from_settings(settings)
        audit.check_writable()
        verifier_from_file(settings.cds_clients_file)  # a bad CDS clients file stops the start
        self.answers = PrognosisService(model, audit)
        """The answer path of every route, the mounted FHIR and CDS Hooks apps' included."""
        self.follower = PointerFollower(
            self.answers,
            registry.production_tag,
            poll_seconds=settings.model_poll_seconds,
            follows=not settings.model_tag,
        )
        """Moves `answers.model` to the production pointer's target (serving/hot_swap.py)."""
        logger.info(
            "serving %s (trained on %s data); audit log %s; %s",
            model.tag,
            model.card["training_data"]["label"],
            audit.path,
            f"following the production pointer every {settings.model_poll_seconds:g} s"
            if self.follower.follows
            else "pinned by NETPROG_MODEL_TAG",
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
        self.follower.start()

    @bentoml.on_shutdown
    def stop_following(self) -> None:
        self.follower.stop()

    @bentoml.api(route=ROUTE_PROGNOSIS, output_spec=Prognosis)
    def prognosis(self, request: PrognosisRequest, /, ctx: bentoml.Context) -> Response:
        """The prognosis of one patient: HPFS and OS, explanation and modality comparison.

        Optional `months_since_treatment` adds conditional survival for a patient seen at
        follow-up. Every answer is recorded in the audit log first (503 if it cannot be).
        """
        try:
            answer = self.answers.prognosis(
                request.patient,
                caller=caller_of(ctx.request),
                route=ROUTE_PROGNOSIS,
                months_since_treatment=request.months_since_treatment,
                contributions_over_time=request.contributions_over_time,
            )
        except ModelError as error:
            return _status(ctx, error_answer(422, str(error)))
        except AuditWriteError as error:
            return _status(ctx, refusal(error))
        return json_answer(with_detail(answer, request.detail))

    @bentoml.api(route=ROUTE_BATCH, output_spec=PrognosisList)
    def prognosis_batch(self, request: BatchRequest, /, ctx: bentoml.Context) -> Response:
        """Prognoses of 1 to `NETPROG_MAX_BATCH` patients, in the order given."""
        try:
            answers = self.answers.prognoses(
                request.patients, caller=caller_of(ctx.request), route=ROUTE_BATCH
            )
        except ModelError as error:
            return _status(ctx, error_answer(422, str(error)))
        except AuditWriteError as error:
            return _status(ctx, refusal(error))
        return json_answer([with_detail(answer, request.detail) for answer in answers])

    @model_app.get(
        "/model",
        response_model=ModelCard,
        summary="The model card",
        responses={200: {"content": {"application/json": {"example": EXAMPLE_MODEL_CARD}}}},
    )
    def model_card(self) -> dict:
        """The model in service: version, training data (synthetic or real), metrics, intended
        use, limitations and the disclaimer; under `serving`, the production pointer's target
        and whether this worker follows it."""
        return {**self.answers.model.card, "serving": self.follower.state()}


SERVICE = cast(Service, NetPrognosis)
"""The BentoML service `@bentoml.service` made of the class (a type checker sees the class)."""


def _status(ctx: bentoml.Context, response: JSONResponse) -> JSONResponse:
    """`response`, its status also set on BentoML's context (which its metrics read)."""
    ctx.response.status_code = response.status_code
    return response


if _SETTINGS.cors_allow_origins:
    SERVICE.add_asgi_middleware(
        CORSMiddleware,
        allow_origins=list(_SETTINGS.cors_allow_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
    )
# Outside the guard (middleware added earlier wraps those added later): its refusals on the
# FHIR route become OperationOutcomes (serving/fhir_refusals.py).
SERVICE.add_asgi_middleware(FhirRefusalOutcomes)
SERVICE.add_asgi_middleware(RequestGuard, json_routes=(ROUTE_PROGNOSIS, ROUTE_BATCH))
SERVICE.add_asgi_middleware(JsonRoutingErrors)
# The clinician form at `/`: BentoML tries the API and system routes before mounted apps and
# hands a mounted app only the paths its own routes match (`/` and `/web/...`), so nothing
# else is shadowed; it replaces BentoML's own index page.
SERVICE.mount_asgi_app(web_app, path="/", name="clinician-form")
# EHR integration: POST /v1/fhir/prognosis and the CDS Hooks routes under /cds-services; like
# the form, each matches only its own routes.
SERVICE.mount_asgi_app(fhir_app, path="/v1", name="fhir")
SERVICE.mount_asgi_app(cds_app, path="/", name="cds-hooks")
