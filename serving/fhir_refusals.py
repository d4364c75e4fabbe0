"""FHIR routes' refusals as OperationOutcomes, and the larger body limit of patient records.

The request guard (`serving.security.RequestGuard`) answers refusals it makes from headers or
size (401, 403, 413, 415, 400 for depth) as `{"error": message}`, the same on every route;
on a FHIR route every answer that is not a success must be an OperationOutcome. This ASGI
middleware sits outside the guard and rewrites those answers on the FHIR routes only, keeping
their status and headers (the `WWW-Authenticate` challenge among them).

A full patient record exported from an EHR is several MB; the FHIR route and the CDS Hooks
service calls therefore accept bodies up to `Settings.max_record_body_bytes` (10 MiB by
default), every other route `Settings.max_body_bytes` (1 MB).
"""

from __future__ import annotations

import json

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "FHIR_ROUTE_PREFIXES",
    "RECORD_ROUTE_PREFIXES",
    "FhirRefusalOutcomes",
    "body_limit",
    "is_fhir_route",
    "refusal_outcome",
]

FHIR_ROUTE_PREFIXES = ("/v1/fhir/",)
"""Routes that speak FHIR: every error they answer is an OperationOutcome."""
RECORD_ROUTE_PREFIXES = ("/v1/fhir/", "/cds-services/")
"""Routes whose bodies are patient records (a Bundle, or a CDS Hooks prefetch)."""
FHIR_JSON = "application/fhir+json"
_ISSUE_CODES = {
    400: "structure",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    503: "transient",
    504: "timeout",
}
"""HTTP status -> OperationOutcome issue type (FHIR R4 value set issue-type)."""


def is_fhir_route(path: str) -> bool:
    """Whether `path` is a FHIR route (its errors are OperationOutcomes)."""
    return path.startswith(FHIR_ROUTE_PREFIXES)


def body_limit(path: str, *, max_body_bytes: int, max_record_body_bytes: int) -> int:
    """The largest body accepted on `path`: the record limit on record routes."""
    if path.startswith(RECORD_ROUTE_PREFIXES):
        return max(max_body_bytes, max_record_body_bytes)
    return max_body_bytes


def refusal_outcome(status: int, message: str) -> dict:
    """An OperationOutcome with one error issue saying `message` (which holds no value)."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": _ISSUE_CODES.get(status, "processing" if status < 500 else "exception"),
                "diagnostics": message,
            }
        ],
    }


class FhirRefusalOutcomes:
    """ASGI middleware: plain JSON error answers on FHIR routes become OperationOutcomes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_fhir_route(scope["path"]):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def send_outcome(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                media = MutableHeaders(raw=list(message["headers"])).get("content-type", "")
                if message["status"] >= 400 and media.startswith("application/json"):
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await _send_rewritten(send, held, b"".join(chunks))
                return
            await send(message)

        await self.app(scope, receive, send_outcome)


async def _send_rewritten(send: Send, start: Message, body: bytes) -> None:
    status = start["status"]
    try:
        message = json.loads(body).get("error")
    except (ValueError, AttributeError):
        message = None
    outcome = refusal_outcome(status, message if isinstance(message, str) else "request refused")
    payload = json.dumps(outcome).encode("utf-8")
    headers = MutableHeaders(raw=list(start["headers"]))
    headers["content-type"] = FHIR_JSON
    headers["content-length"] = str(len(payload))
    await send({**start, "headers": headers.raw})
    await send({"type": "http.response.body", "body": payload, "more_body": False})
