"""ASGI middleware of the service: a request timeout that frees its timer, JSON routing errors,
traffic metrics labelled by route template, and no debug answers whatever the log level."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from pydantic_core import to_json
from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.bentoml_compat import (
    TimeoutMiddleware,
    TrafficMetricsMiddleware,
    install_app_hook,
    install_timeout_middleware,
    install_traffic_metrics_middleware,
)

__all__ = [
    "UNROUTED",
    "JsonRoutingErrors",
    "RequestTimeout",
    "RouteTemplateMetrics",
    "install_never_debug",
    "install_request_timeout",
    "install_route_template_metrics",
    "route_template",
]


class RequestTimeout(TimeoutMiddleware):
    """BentoML's request timeout (504 after `timeout` s), with its timer cancelled when the
    request ends.

    BentoML 1.4's own middleware leaves each request's timer on the event loop for the whole
    timeout, and with it the request's context (its trace span, its future): at 50 requests/s
    per worker and 300 s, some 15,000 requests' state, about 150 MB per worker, and full
    garbage collections that pause answers for 0.1-0.2 s (tests/reliability/test_load.py).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: Message) -> None:
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


def install_request_timeout() -> None:
    """Have BentoML build `RequestTimeout` in place of its own timeout middleware."""
    install_timeout_middleware(RequestTimeout)


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

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replacement: bytes | None = None

        async def send_json(message: Message) -> None:
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


UNROUTED = "<unrouted>"
"""The `/metrics` label of every path that no route template matches."""
_RAW_PATH = "netprog.raw_path"
_templates: list[tuple[re.Pattern[str], str]] = []


def route_template(path: str) -> str:
    """The route template `path` belongs to (``/cds-services/{service_id}``), else `UNROUTED`."""
    for pattern, template in _templates:
        if pattern.fullmatch(path):
            return template
    return UNROUTED


def _pattern(template: str) -> re.Pattern[str]:
    """``/a/{id}`` matches one segment in place of ``{id}``; ``/a/{path:path}`` the rest."""
    parts = re.split(r"(\{[^}]+\})", template)
    regex = "".join(
        ("[^/]+" if ":path" not in part else ".+") if part.startswith("{") else re.escape(part)
        for part in parts
    )
    return re.compile(regex)


class RouteTemplateMetrics(TrafficMetricsMiddleware):
    """BentoML's traffic metrics (`bentoml_service_request_total` ...), with each request's
    `endpoint` label its route template, never its raw path.

    BentoML labels a request by the path it was sent: any caller could add label values
    without bound (memory in every worker, a `/metrics` that grows with each one), and a path
    can carry an identifier onto the open `/metrics`. Here the label set is the service's
    route templates and `UNROUTED`; the apps inside still see the path as sent.
    """

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        super().__init__(_RestoreRawPath(app), **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/metrics":
            scope = {**scope, "path": route_template(scope["path"]), _RAW_PATH: scope["path"]}
        await super().__call__(scope, receive, send)


class _RestoreRawPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _RAW_PATH in scope:
            scope = {**scope, "path": scope[_RAW_PATH]}
            del scope[_RAW_PATH]
        await self.app(scope, receive, send)


def install_route_template_metrics(templates: Sequence[str]) -> None:
    """Label traffic metrics by `templates` (the service's routes), every other path as
    `UNROUTED`; exact templates are tried before those with parameters."""
    ordered = sorted(templates, key=lambda template: ("{" in template, template))
    _templates[:] = [(_pattern(template), template) for template in ordered]
    install_traffic_metrics_middleware(RouteTemplateMetrics)


def _never_debug(app: Any) -> None:
    app.debug = False


def install_never_debug() -> None:
    """Build every worker's app without Starlette's debug answers, whatever the log level.

    BentoML builds the app with ``debug=True`` under `bentoml serve --verbose` (DEBUG logs),
    and Starlette then answers an unhandled exception with its traceback and message, to the
    caller: a log flag must not change what callers are sent.
    """
    install_app_hook(_never_debug)
