"""The OpenAPI document: BentoML's, completed with bearer auth, every route's answers and bodies."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import date
from typing import Any

import attrs
from pydantic import BaseModel

from serving.cds_hooks import (
    HOOKS,
    ROUTE_DISCOVERY,
    CdsCards,
    CdsDiscovery,
    CdsFeedbackRequest,
    CdsHookRequest,
)
from serving.fhir import MAPPING_PATH, patient_from_bundle
from serving.fhir.routes import EXAMPLE_BUNDLE, FHIR_MEDIA_TYPES, ROUTE_FHIR_PROGNOSIS
from serving.fhir_refusals import refusal_outcome
from serving.prefetch_fetch import PrefetchUnavailable, precondition_outcome
from serving.schemas import (
    EXAMPLE_PROGNOSIS,
    ErrorResponse,
    FhirBundle,
    FhirPrognosis,
    OperationOutcome,
)
from serving.security import PROTECTED_PREFIXES
from store.bentoml_compat import Service

__all__ = ["ERROR_RESPONSES", "NetPrognosisService"]

API_VERSION = "v1"
_REF_TEMPLATE = "#/components/schemas/{model}"
_JSON = "application/json"
_FHIR_JSON = "application/fhir+json"
_CDS_SERVICE = ROUTE_DISCOVERY + "/{service_id}"
_CDS_FEEDBACK = _CDS_SERVICE + "/feedback"

ERROR_RESPONSES: dict[str, tuple[str, dict]] = {
    "400": (
        "Invalid input: one entry per offending field, with where it is (`loc`) and what is "
        "allowed (`msg`); input values are never echoed.",
        {
            "error": "1 validation error for PrognosisRequest",
            "detail": [
                {
                    "type": "less_than_equal",
                    "loc": ["patient", "age_years"],
                    "msg": "Input should be less than or equal to 100",
                    "url": "https://errors.pydantic.dev/2/v/less_than_equal",
                }
            ],
        },
    ),
    "401": (
        "No bearer token (when the service is configured with tokens).",
        {"error": "authentication required: send `Authorization: Bearer <token>`"},
    ),
    "403": (
        "A bearer token the service does not accept.",
        {"error": "the bearer token is not accepted by this service"},
    ),
    "413": (
        "Request body larger than the limit (1,000,000 bytes by default).",
        {"error": "request body must be at most 1000000 bytes; split large batches"},
    ),
    "415": (
        "Body that is not application/json.",
        {"error": "Content-Type must be application/json"},
    ),
    "422": (
        "Valid fields that the model cannot answer together, e.g. a follow-up time where the "
        "survival curve is about zero.",
        {
            "error": "`months_since_treatment` must fall where the os survival curve is above "
            "0.001, but S(118) = 0.0004: ..."
        },
    ),
    "503": (
        "The audit log could not be written, so no prediction is returned (fail closed).",
        {
            "error": "prediction refused: the audit log could not be written (No space left "
            "on device); no prediction is returned without an audit record"
        },
    ),
}
DESCRIPTION = """\
Prognosis for neuroendocrine-tumour liver metastases before liver-directed embolotherapy
(TACE, TAE or SIRT): hepatic progression-free survival (HPFS) and overall survival (OS) with
95 % intervals, SHAP explanations on the log relative hazard scale, and an observational
comparison of the three modalities with the training data's support for each.

**Default models are trained on synthetic data and are not for clinical use**; every answer
and `GET /v1/model` say which data trained the served model.

When the service is configured with tokens (`NETPROG_API_TOKEN_HASHES`), every `/v1` and
`/cds-services` route needs `Authorization: Bearer <token>`; `/livez`, `/readyz` and
`/metrics` stay open. Every prediction is written to a tamper-evident audit log before it is
returned. Invalid input is answered 400 with one entry per field (FHIR input: a FHIR
OperationOutcome with one issue per problem); input values never appear in answers or logs.
"""
_JSON_API_ERRORS = ("400", "415", "422", "503")
"""Besides auth and body size: what the JSON API routes (BentoML's) answer."""

_OUTCOME_EXAMPLES = {
    "400": {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": "Observation/ki67 (Bundle.entry[3].resource): element "
                "valueQuantity.value must be valid FHIR R4: input should be a valid decimal",
                "expression": ["Bundle.entry[3].resource.valueQuantity.value"],
            }
        ],
    },
    "422": {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "required",
                "diagnostics": "tumor_burden_percent: the input must hold a final Observation "
                "of the hepatic tumour burden (% of liver volume), but has none; codes that "
                "supply it: urn:netprognosis:codes hepatic-tumor-burden-percent (Hepatic "
                "tumour burden, % of liver volume)",
                "details": {
                    "coding": [
                        {
                            "system": "urn:netprognosis:codes",
                            "code": "hepatic-tumor-burden-percent",
                            "display": "Hepatic tumour burden, % of liver volume",
                        }
                    ],
                    "text": "tumor_burden_percent",
                },
                "expression": ["Bundle"],
            }
        ],
    },
}
_FHIR_ERRORS = {
    "400": (
        "Invalid FHIR or not JSON: a FHIR OperationOutcome with one issue per problem, naming "
        "the resource and element, never the value. (A malformed `Content-Length` header is "
        "refused before the body is read, as on every route, with a JSON error.)",
        {
            _FHIR_JSON: ("OperationOutcome", _OUTCOME_EXAMPLES["400"]),
            _JSON: ("ErrorResponse", {"error": "Content-Length must be a whole number"}),
        },
    ),
    **{
        code: (
            f"{text} As every refusal on this route, a FHIR OperationOutcome "
            "(serving/fhir_refusals.py).",
            {_FHIR_JSON: ("OperationOutcome", refusal_outcome(int(code), message))},
        )
        for code, text, message in (
            (
                "401",
                "No bearer token (when the service is configured with tokens).",
                "authentication required: send `Authorization: Bearer <token>`",
            ),
            (
                "403",
                "A bearer token the service does not accept.",
                "the bearer token is not accepted by this service",
            ),
            (
                "413",
                "Request body larger than the patient-record limit (10 MiB by default).",
                "request body must be at most 10485760 bytes; split large batches",
            ),
            (
                "415",
                "Body that is neither application/json nor application/fhir+json.",
                "Content-Type must be one of application/json, application/fhir+json",
            ),
        )
    },
    "422": (
        "Valid FHIR lacking, contradicting or exceeding what the model needs: a FHIR "
        "OperationOutcome with one issue per item, with the codes that would supply it.",
        {_FHIR_JSON: ("OperationOutcome", _OUTCOME_EXAMPLES["422"])},
    ),
}
_LACKS = (
    "the prefetch lacks conditions, which the prognosis needs: the request carries no fhirServer "
    "and fhirAuthorization (access token) to fetch them with; send the prefetch the discovery "
    "document declares, or both"
)
_CDS_ERRORS = {
    "400": (
        "Not a CDS Hooks 2.0 request for this service (a JSON error), or prefetched resources "
        "that are not valid FHIR R4 (a FHIR OperationOutcome, one issue per problem); values "
        "are never echoed.",
        {
            _JSON: (
                ("ErrorResponse", "OperationOutcome"),
                {"error": "`hookInstance` (a UUID string) is required"},
            )
        },
    ),
    "412": (
        "The prefetch lacks what the prognosis needs and it could not be fetched from "
        "`fhirServer` (none given, not allow-listed for the calling EHR, or the fetch failed): "
        "a FHIR OperationOutcome saying what to send (CDS Hooks 2.0, serving/prefetch_fetch.py).",
        {_FHIR_JSON: ("OperationOutcome", precondition_outcome(PrefetchUnavailable("x", _LACKS)))},
    ),
    "404": (
        "No CDS service with this id.",
        {
            _JSON: (
                "ErrorResponse",
                {"error": f"no CDS service with this id; the services are {', '.join(HOOKS)}"},
            )
        },
    ),
    "415": (
        "Body that is not application/json.",
        {_JSON: ("ErrorResponse", {"error": "Content-Type must be one of application/json"})},
    ),
    "422": (
        "The model cannot answer for the mapped patient (a FHIR OperationOutcome).",
        {_FHIR_JSON: ("OperationOutcome", _OUTCOME_EXAMPLES["422"])},
    ),
}
_CDS_FEEDBACK_ERRORS = {
    "400": (
        "Not CDS Hooks 2.0 feedback; values are never echoed.",
        {_JSON: ("ErrorResponse", {"error": "feedback[0].card must be the uuid of a card"})},
    ),
    "404": _CDS_ERRORS["404"],
    "415": _CDS_ERRORS["415"],
}
_DOCUMENTED_MODELS: tuple[type[BaseModel], ...] = (
    ErrorResponse,
    OperationOutcome,
    FhirBundle,
    FhirPrognosis,
    CdsDiscovery,
    CdsCards,
    CdsHookRequest,
    CdsFeedbackRequest,
)


def _ref(model: str) -> dict:
    return {"$ref": _REF_TEMPLATE.format(model=model)}


def _error_response(code: str) -> dict:
    description, example = ERROR_RESPONSES[code]
    return {
        "description": description,
        "content": {_JSON: {"schema": _ref("ErrorResponse"), "example": example}},
    }


def _response(description: str, media: dict[str, tuple[str | tuple[str, ...], object]]) -> dict:
    """A response whose bodies are components: ``{media type: (model name(s), example)}``."""
    content = {}
    for media_type, (models, example) in media.items():
        if isinstance(models, tuple):
            schema = {"anyOf": [_ref(m) for m in models]}
        else:
            schema = _ref(models)
        content[media_type] = {"schema": schema, "example": example}
    return {"description": description, "content": content}


def _responses(errors: Mapping[str, tuple[str, Any]]) -> dict[str, dict]:
    return {code: _response(*answer) for code, answer in errors.items()}


@functools.cache
def _fhir_prognosis_example() -> dict:
    """The answer to the example Bundle: the example prognosis of the same patient, with the
    patient and the provenance the Bundle really maps to."""
    mapped = patient_from_bundle(EXAMPLE_BUNDLE, today=date(2026, 3, 1))
    return {
        **EXAMPLE_PROGNOSIS,
        "patient": mapped.patient.model_dump(mode="json"),
        "provenance": mapped.provenance,
    }


def _example(name: str) -> dict:
    return json.loads((MAPPING_PATH.parent / "examples" / "fhir" / name).read_text("utf-8"))


def _raw_body_routes() -> dict[tuple[str, str], dict]:
    """What the routes that read their body themselves (FHIR, CDS Hooks) take and answer."""
    return {
        (ROUTE_FHIR_PROGNOSIS, "post"): _fhir_route(),
        (ROUTE_DISCOVERY, "get"): {
            "responses": {
                "200": {
                    "description": "The CDS Hooks 2.0 discovery document.",
                    "content": {_JSON: {"schema": _ref("CdsDiscovery")}},
                }
            },
        },
        **_cds_routes(),
    }


def _fhir_route() -> dict:
    return {
        "request": {media: _ref("FhirBundle") for media in FHIR_MEDIA_TYPES},
        "responses": {
            "200": {
                "description": "The prognosis, with the mapped patient and its provenance; "
                "with `Accept: application/fhir+json` or `_format=fhir`, a Bundle of FHIR "
                "RiskAssessment resources (serving/risk_assessment.py).",
                "content": {
                    _JSON: {
                        "schema": _ref("FhirPrognosis"),
                        "example": _fhir_prognosis_example(),
                    },
                    _FHIR_JSON: {"schema": _ref("FhirBundle")},
                },
            },
            **_responses(_FHIR_ERRORS),
            "503": _error_response("503"),
        },
    }


def _cds_routes() -> dict[tuple[str, str], dict]:
    service_id = {
        "name": "service_id",
        "in": "path",
        "required": True,
        "description": "The CDS service: " + ", ".join(f"`{k}` ({v})" for k, v in HOOKS.items()),
        "schema": {"type": "string", "enum": list(HOOKS)},
    }
    return {
        (_CDS_SERVICE, "post"): {
            "parameters": [service_id],
            "request": {_JSON: _ref("CdsHookRequest")},
            "example": _example("cds_patient_view.json"),
            "responses": {
                "200": {
                    "description": "One card: the prognosis, or what the request lacks; no "
                    "card when the selected order is not an embolization.",
                    "content": {_JSON: {"schema": _ref("CdsCards")}},
                },
                **_responses(_CDS_ERRORS),
                "503": _error_response("503"),
            },
        },
        (_CDS_FEEDBACK, "post"): {
            "parameters": [service_id],
            "request": {_JSON: _ref("CdsFeedbackRequest")},
            "example": _example("cds_feedback.json"),
            "responses": {
                "200": {"description": "The feedback is recorded in the audit log (no body)."},
                **_responses(_CDS_FEEDBACK_ERRORS),
                "503": {
                    "description": "The audit log could not be written: the feedback is not "
                    "recorded.",
                    "content": {
                        _JSON: {
                            "schema": _ref("ErrorResponse"),
                            "example": {
                                "error": "feedback refused: the audit log could not be written "
                                "(No space left on device)"
                            },
                        }
                    },
                },
            },
        },
    }


def _is_protected(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PROTECTED_PREFIXES)


def _document(operation: dict, method: str, json_api: bool, raw: dict | None) -> None:
    """Replace an operation's generic answers with what the route really answers."""
    responses = operation["responses"]
    for generic in ("400", 400, "404", 404, "422", 422):
        responses.pop(generic, None)
    codes = ["401", "403"] + (["413"] if method == "post" else [])
    if json_api:
        codes += _JSON_API_ERRORS
    responses.update({code: _error_response(code) for code in codes})
    if raw is not None:
        responses.update(raw["responses"])
        if "parameters" in raw:
            operation["parameters"] = raw["parameters"]
        if "request" in raw:
            body = operation.setdefault("requestBody", {"required": True, "content": {}})
            for media_type, schema in raw["request"].items():
                media = body["content"].setdefault(media_type, {})
                media["schema"] = schema
                if "example" in raw:
                    media["example"] = raw["example"]
    operation["responses"] = dict(sorted(responses.items(), key=lambda item: str(item[0])))
    operation["security"] = [{}, {"bearerAuth": []}]


@attrs.define
class NetPrognosisService(Service):
    """BentoML's service with an OpenAPI document that tells the whole contract.

    BentoML documents its generic errors only, and nothing of the mounted FHIR and CDS Hooks
    routes, which read their bodies themselves; this adds the bearer-token scheme, every
    status the `/v1` and `/cds-services` routes answer with (each with an example), the
    bodies of the mounted routes, and names the API version.
    """

    @property
    def openapi_spec(self):
        spec = super().openapi_spec
        schemas = spec.components["schemas"]
        for model in _DOCUMENTED_MODELS:
            schema = model.model_json_schema(ref_template=_REF_TEMPLATE)
            for name, definition in schema.pop("$defs", {}).items():
                schemas.setdefault(name, definition)
            schemas[model.__name__] = schema
        spec.components["securitySchemes"] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "Required on /v1 and /cds-services routes when "
                "NETPROG_API_TOKEN_HASHES is set.",
            }
        }
        json_api_routes = {api.route for api in self.apis.values()}
        raw_routes = _raw_body_routes()
        for path, item in spec.paths.items():
            if not _is_protected(path):
                continue
            for method in ("get", "post"):
                operation = getattr(item, method)
                if operation is None:
                    continue
                if not isinstance(operation, dict):
                    operation = attrs.asdict(operation)
                    item = attrs.evolve(item, **{method: operation})
                    spec.paths[path] = item
                raw = raw_routes.get((path, method))
                _document(operation, method, path in json_api_routes, raw)
        info = attrs.evolve(spec.info, version=API_VERSION, description=DESCRIPTION, contact=None)
        return attrs.evolve(spec, info=info)
