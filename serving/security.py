"""Request guard (bearer tokens, body size and depth, media type) and log redaction.

Both are hand-written because they sit below BentoML's API layer, where no maintained
library fits: BentoML reads a request body whole before any dependency could limit it, and
it logs validation errors with a traceback that repeats the offending input values.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import traceback
from collections.abc import Iterable
from types import TracebackType

from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.cds_auth import is_cds_route, unauthorized, verifier_from_file, verify_request
from serving.fhir_refusals import body_limit
from serving.json_depth import max_depth
from serving.settings import Settings, load_settings
from store.bentoml_compat import INTERNAL_LOGGERS

__all__ = [
    "CALLER_STATE_KEY",
    "CDS_CLIENT_STATE_KEY",
    "MAX_JSON_DEPTH",
    "MAX_TOKEN_CHARS",
    "PROTECTED_PREFIXES",
    "QueryRedactingFilter",
    "RedactingFilter",
    "RequestGuard",
    "install_log_redaction",
    "json_depth_exceeds",
]

PROTECTED_PREFIXES = ("/v1", "/cds-services")
"""Routes under these prefixes need a bearer token when tokens are configured."""
CALLER_STATE_KEY = "netprog_token_hash"
"""Key in the ASGI scope's `state` holding the authenticated caller's token hash (or None),
or a verified CDS client's `cds:<issuer>[#tenant]`."""
CDS_CLIENT_STATE_KEY = "netprog_cds_client"
"""Key in the ASGI scope's `state` holding the verified CDS client (`VerifiedClient`)."""
REDACTED_LOGGERS = (*INTERNAL_LOGGERS, "bentoml.serve", "uvicorn.error")
"""Loggers through which BentoML and uvicorn report request exceptions."""
ACCESS_LOGGERS = ("uvicorn.access",)
"""Loggers whose lines quote the request target with its query string (uvicorn's access log,
emitted when the root logger is at INFO or below, e.g. under `bentoml serve --verbose`)."""
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in a JSON body under the protected
prefixes. The deepest example request (`data/examples/fhir/cds_order_select.json`) nests 10
levels; Python's `json` and fhir.resources' validators recurse per level and fail with a
RecursionError (a 500) from a few hundred levels on."""
MAX_TOKEN_CHARS = 1024
"""Longest bearer token accepted as well-formed (`netprog token-hash --generate` makes 43)."""

_JSON_TYPES = ("application/json",)
_REALM = 'Bearer realm="netprog"'
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
"""RFC 6750 §2.1: the syntax of a bearer token (b64token)."""
_NO_CREDENTIAL = "authentication required: send `Authorization: Bearer <token>`"
_MALFORMED_CREDENTIAL = (
    "the Authorization header must be one `Bearer <token>`, the token at most "
    f"{MAX_TOKEN_CHARS} characters of A-Z a-z 0-9 - . _ ~ + / (RFC 6750)"
)
_TOO_DEEP = f"the JSON body must nest arrays and objects at most {MAX_JSON_DEPTH} levels deep"


class RequestGuard:
    """ASGI middleware in front of every route.

    In order: bearer-token authentication of `/v1` and `/cds-services` routes (health,
    readiness, metrics, the OpenAPI document and the form stay open), the media type of the
    JSON API routes (415), the body size (413) both from `Content-Length` and by counting the
    bytes actually received, so that a chunked body cannot slip past the limit, and the
    nesting depth of JSON bodies under those prefixes (400 beyond `MAX_JSON_DEPTH`).

    Authentication follows RFC 6750 §2.1 and RFC 7235: the scheme is case-insensitive
    (`bearer` is `Bearer`) and may be followed by several spaces. No Authorization header, or
    another scheme (Basic), is 401 with a bare `Bearer` challenge; a malformed bearer
    credential (no token, characters outside the b64token syntax such as spaces or non-ASCII,
    over `MAX_TOKEN_CHARS`, or more than one Authorization header) is 401 with
    ``error="invalid_request"``; a well-formed token that is not configured is 403 with
    ``error="invalid_token"``. RFC 6750 suggests 400 and 401 for the last two: 401 keeps every
    request without a usable credential on one path (send a token), and 403 tells a refused
    token from a missing one, which the form's token dialog relies on.

    Parameters
    ----------
    app : ASGI app
        The application to guard.
    json_routes : iterable of str
        Paths whose POST body must be `application/json` (or carry no Content-Type).
    settings : Settings, optional
        Read from the environment when omitted.
    """

    def __init__(
        self, app: ASGIApp, *, json_routes: Iterable[str] = (), settings: Settings | None = None
    ):
        settings = settings or load_settings()
        self.app = app
        self.json_routes = frozenset(json_routes)
        self.max_body_bytes = settings.max_body_bytes
        self.max_record_body_bytes = settings.max_record_body_bytes
        self.token_hashes = tuple(bytes.fromhex(h) for h in settings.api_token_hashes)
        self.cds_verifier = verifier_from_file(settings.cds_clients_file)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.cds_verifier is not None and is_cds_route(scope["path"]):
            client = await verify_request(
                self.cds_verifier, scope["path"], headers.getlist("authorization")
            )
            if client is None:
                await unauthorized()(scope, receive, send)
                return
            scope.setdefault("state", {})[CALLER_STATE_KEY] = client.caller
            scope["state"][CDS_CLIENT_STATE_KEY] = client
        rejection = self._check_headers(scope, headers)
        if rejection is not None:
            await rejection(scope, receive, send)
            return
        limit = self._body_limit(scope["path"])
        body, complete = await self._read_body(receive, limit)
        if body is None:
            if complete:
                await self._too_large(limit)(scope, receive, send)
            return
        if _is_protected(scope["path"]) and _is_json(headers) and json_depth_exceeds(body):
            await _error(400, _TOO_DEEP)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_headers(self, scope: Scope, headers: Headers) -> JSONResponse | None:
        """The answer refusing the request from its headers alone, or None to go on."""
        path = scope["path"]
        cds_jwt = self.cds_verifier is not None and is_cds_route(path)
        if self.token_hashes and _is_protected(path) and not cds_jwt:
            rejection, token_hash = self._authenticate(headers)
            if rejection is not None:
                return rejection
            scope.setdefault("state", {})[CALLER_STATE_KEY] = token_hash
        if scope["method"] == "POST" and path in self.json_routes:
            media_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type and media_type not in _JSON_TYPES:
                return _error(415, "Content-Type must be application/json")
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return _error(400, "Content-Length must be a whole number")
            if int(declared) > self._body_limit(path):
                return self._too_large(self._body_limit(path))
        return None

    def _body_limit(self, path: str) -> int:
        return body_limit(
            path,
            max_body_bytes=self.max_body_bytes,
            max_record_body_bytes=self.max_record_body_bytes,
        )

    def _authenticate(self, headers: Headers) -> tuple[JSONResponse | None, str | None]:
        values = headers.getlist("authorization")
        scheme, _, token = (values[0] if values else "").partition(" ")
        token = token.strip(" ")
        if scheme.lower() != "bearer":
            return _unauthenticated(_NO_CREDENTIAL), None
        if len(values) > 1 or len(token) > MAX_TOKEN_CHARS or not _TOKEN68.fullmatch(token):
            return _unauthenticated(_MALFORMED_CREDENTIAL, 'error="invalid_request"'), None
        digest = hashlib.sha256(token.encode("ascii")).digest()
        matched = None
        for known in self.token_hashes:
            if hmac.compare_digest(digest, known):
                matched = known.hex()
        if matched is None:
            response = _error(
                403,
                "the bearer token is not accepted by this service",
                {"WWW-Authenticate": f'{_REALM}, error="invalid_token"'},
            )
            return response, None
        return None, matched

    async def _read_body(self, receive: Receive, limit: int) -> tuple[bytes | None, bool]:
        """The whole body, or (None, True) past the limit, or (None, False) on disconnect."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None, True
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), True

    def _too_large(self, limit: int) -> JSONResponse:
        return _error(
            413,
            f"request body must be at most {limit} bytes; split large batches",
            {"Connection": "close"},
        )


def _is_protected(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PROTECTED_PREFIXES)


def _is_json(headers: Headers) -> bool:
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    return not media_type or media_type == "application/json" or media_type.endswith("+json")


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON text nests arrays and objects deeper than `limit`, without parsing it
    (in bounded memory: serving/json_depth.py)."""
    return max_depth(body, stop_above=limit) > limit


def _unauthenticated(message: str, error: str | None = None) -> JSONResponse:
    challenge = f"{_REALM}, {error}" if error else _REALM
    return _error(401, message, {"WWW-Authenticate": challenge})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class RedactingFilter(logging.Filter):
    """Keep request values out of logs that report request exceptions.

    A pydantic `ValidationError` (invalid input) becomes one INFO line with the number and
    kinds of errors and no traceback, because its text quotes every offending input value.
    Any other exception keeps its traceback frames, but its message, which may quote values,
    is replaced.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc_info = record.exc_info
        if not exc_info or exc_info[1] is None:
            return True
        error = exc_info[1]
        if isinstance(error, ValidationError):
            kinds = sorted(
                {e["type"] for e in error.errors(include_url=False, include_input=False)}
            )
            record.msg = (
                f"{record.getMessage()}: rejected invalid input, {error.error_count()} "
                f"validation error(s) of kind {', '.join(kinds)} (values are not logged)"
            )
            record.args = ()
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            record.exc_info, record.exc_text = None, None
            return True
        record.exc_text = _redacted_traceback(type(error), error.__traceback__)
        record.exc_info = None
        return True


def _redacted_traceback(kind: type[BaseException], trace: TracebackType | None) -> str:
    frames = "".join(traceback.format_tb(trace))
    return (
        f"Traceback (most recent call last):\n{frames}{kind.__module__}.{kind.__qualname__}: "
        "<message redacted: it may quote request values>"
    )


class QueryRedactingFilter(logging.Filter):
    """Keep query strings out of uvicorn's access log.

    uvicorn logs each request as ``'%s - "%s %s HTTP/%s" %d'`` with the target's query string,
    and the CDS Hooks card links to the form with the patient's fields in its query
    (docs/ehr-integration.md). The query becomes ``?<redacted>``; the path stays, as in
    BentoML's own access log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path, mark, _ = args[2].partition("?")
            if mark:
                record.args = (*args[:2], f"{path}?<redacted>", *args[3:])
        return True


def install_log_redaction(
    names: Iterable[str] = REDACTED_LOGGERS, access_names: Iterable[str] = ACCESS_LOGGERS
) -> None:
    """Attach one :class:`RedactingFilter` to each logger of `names` and one
    :class:`QueryRedactingFilter` to each of `access_names` (idempotent)."""
    for kind, loggers in ((RedactingFilter, names), (QueryRedactingFilter, access_names)):
        for name in loggers:
            logger = logging.getLogger(name)
            if not any(isinstance(f, kind) for f in logger.filters):
                logger.addFilter(kind())
