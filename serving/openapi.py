"""The OpenAPI document: BentoML's, completed with bearer auth and the API's error answers."""

from __future__ import annotations

import attrs
from _bentoml_sdk.service.factory import Service

from serving.schemas import ErrorResponse

__all__ = ["ERROR_RESPONSES", "NetPrognosisService"]

API_VERSION = "v1"
_REF_TEMPLATE = "#/components/schemas/{model}"
_ERROR_REF = _REF_TEMPLATE.format(model="ErrorResponse")
_PROTECTED_PREFIX = "/v1"

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

When the service is configured with tokens (`NETPROG_API_TOKEN_HASHES`), every `/v1` route
needs `Authorization: Bearer <token>`; `/livez`, `/readyz` and `/metrics` stay open. Every
prediction is written to a tamper-evident audit log before it is returned. Invalid input is
answered 400 with one entry per field; input values never appear in logs.
"""
_ROUTE_ERRORS = {
    "post": ("400", "401", "403", "413", "415", "422", "503"),
    "get": ("401", "403"),
}


def _error_response(code: str) -> dict:
    description, example = ERROR_RESPONSES[code]
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _ERROR_REF}, "example": example}},
    }


@attrs.define
class NetPrognosisService(Service):
    """BentoML's service with an OpenAPI document that tells the whole contract.

    BentoML documents its generic errors only; this adds the bearer-token scheme and every
    status the `/v1` routes answer with, each with an example, and names the API version.
    """

    @property
    def openapi_spec(self):
        spec = super().openapi_spec
        components = spec.components
        error_schema = ErrorResponse.model_json_schema(ref_template=_REF_TEMPLATE)
        components["schemas"].update(error_schema.pop("$defs", {}))
        components["schemas"]["ErrorResponse"] = error_schema
        components["securitySchemes"] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "Required on /v1 routes when NETPROG_API_TOKEN_HASHES is set.",
            }
        }
        for path, item in spec.paths.items():
            if not path.startswith(_PROTECTED_PREFIX):
                continue
            for method, codes in _ROUTE_ERRORS.items():
                operation = getattr(item, method)
                if operation is None:
                    continue
                responses = (
                    operation["responses"] if isinstance(operation, dict) else operation.responses
                )
                for generic in ("400", 400, "404", 404):
                    responses.pop(generic, None)
                responses.update({code: _error_response(code) for code in codes})
                if isinstance(operation, dict):
                    operation["security"] = [{}, {"bearerAuth": []}]
        info = attrs.evolve(spec.info, version=API_VERSION, description=DESCRIPTION, contact=None)
        return attrs.evolve(spec, info=info)
