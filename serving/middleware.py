"""ASGI middleware of the service: a request timeout that frees its timer, JSON routing errors."""

from __future__ import annotations

import asyncio

from pydantic_core import to_json
from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.bentoml_compat import TimeoutMiddleware, install_timeout_middleware

__all__ = ["JsonRoutingErrors", "RequestTimeout", "install_request_timeout"]


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
