"""Request guard (bearer tokens, body size, media type) and log redaction for the service.

Both are hand-written because they sit below BentoML's API layer, where no maintained
library fits: BentoML reads a request body whole before any dependency could limit it, and
it logs validation errors with a traceback that repeats the offending input values.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import traceback
from collections.abc import Iterable
from types import TracebackType

from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.settings import Settings, load_settings

__all__ = [
    "CALLER_STATE_KEY",
    "PROTECTED_PREFIXES",
    "RedactingFilter",
    "RequestGuard",
    "install_log_redaction",
]

PROTECTED_PREFIXES = ("/v1", "/cds-services")
"""Routes under these prefixes need a bearer token when tokens are configured."""
CALLER_STATE_KEY = "netprog_token_hash"
"""Key in the ASGI scope's `state` holding the authenticated caller's token hash (or None)."""
REDACTED_LOGGERS = (
    "bentoml._internal.server.http_app",
    "bentoml.serve",
    "_bentoml_sdk.io_models",
    "_bentoml_impl.server.app",
    "uvicorn.error",
)
"""Loggers through which BentoML and uvicorn report request exceptions."""

_JSON_TYPES = ("application/json",)
_REALM = 'Bearer realm="netprog"'


class RequestGuard:
    """ASGI middleware in front of every route.

    In order: bearer-token authentication of `/v1` and `/cds-services` routes (401 without
    a token, 403 with an unknown one; health, readiness and metrics stay open), the media
    type of the JSON API routes (415), and the body size (413) both from `Content-Length`
    and by counting the bytes actually received, so that a chunked body cannot slip past the limit.

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
        self.token_hashes = tuple(bytes.fromhex(h) for h in settings.api_token_hashes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rejection = self._check_headers(scope, Headers(scope=scope))
        if rejection is not None:
            await rejection(scope, receive, send)
            return
        body, complete = await self._read_body(receive)
        if body is None:
            if complete:
                await self._too_large()(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_headers(self, scope: Scope, headers: Headers) -> JSONResponse | None:
        """The answer refusing the request from its headers alone, or None to go on."""
        path = scope["path"]
        if self.token_hashes and _is_protected(path):
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
            if int(declared) > self.max_body_bytes:
                return self._too_large()
        return None

    def _authenticate(self, headers: Headers) -> tuple[JSONResponse | None, str | None]:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            response = _error(
                401,
                "authentication required: send `Authorization: Bearer <token>`",
                {"WWW-Authenticate": _REALM},
            )
            return response, None
        digest = hashlib.sha256(token.encode("utf-8")).digest()
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

    async def _read_body(self, receive: Receive) -> tuple[bytes | None, bool]:
        """The whole body, or (None, True) past the limit, or (None, False) on disconnect."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None, True
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), True

    def _too_large(self) -> JSONResponse:
        return _error(
            413,
            f"request body must be at most {self.max_body_bytes} bytes; split large batches",
            {"Connection": "close"},
        )


def _is_protected(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PROTECTED_PREFIXES)


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


def install_log_redaction(names: Iterable[str] = REDACTED_LOGGERS) -> None:
    """Attach one :class:`RedactingFilter` to each named logger (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
