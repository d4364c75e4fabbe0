"""The clinician form's ASGI app: the page at `/`, its script, styles and charting library.

The app serves files only: it receives no patient data (the page posts to `/v1/prognosis`
itself) and logs nothing. Every answer carries a Content-Security-Policy that lets the page
load scripts and send requests to this origin alone, so a patient's values cannot leave for
another host even if a script were tampered with.
"""

from __future__ import annotations

import logging
from functools import cache
from importlib import resources
from pathlib import Path
from string import Template

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.web.form import form_fields, form_spec_json, render_fields

__all__ = ["ASSET_PREFIX", "CONTENT_SECURITY_POLICY", "build_web_app", "plotly_bundle"]

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATE = HERE / "templates" / "index.html"
ASSET_PREFIX = "/web"
"""Where the page's files are served; the page itself is at `/`."""

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        # plotly.js writes style attributes on the SVG it draws; scripts stay 'self' only.
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
)


def plotly_bundle() -> Path | None:
    """plotly.js as shipped inside the plotly Python package, or None if it is not installed."""
    try:
        bundle = resources.files("plotly") / "package_data" / "plotly.min.js"
    except ModuleNotFoundError:
        return None
    path = Path(str(bundle))
    return path if path.is_file() else None


@cache
def render_page() -> str:
    """The page with the form fields derived from the patient schema (built once)."""
    fields = form_fields()
    template = Template(TEMPLATE.read_text(encoding="utf-8"))
    return template.substitute(
        form_fields=render_fields(fields),
        form_spec=form_spec_json(fields),
        assets=ASSET_PREFIX.lstrip("/"),
    )


async def page(_: Request) -> Response:
    return HTMLResponse(render_page(), headers={"cache-control": "no-cache"})


async def plotly_js(_: Request) -> Response:
    bundle = plotly_bundle()
    if bundle is None:
        return PlainTextResponse(
            "plotly.js is not available: install the plotly Python package, which ships it "
            "(pip install plotly), and restart the service",
            status_code=503,
        )
    return FileResponse(
        bundle,
        media_type="text/javascript",
        headers={"cache-control": "public, max-age=86400"},
    )


class SecurityHeaders:
    """Adds the Content-Security-Policy and related headers to every answer of the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] not in _SECURITY_NAMES]
                message = {**message, "headers": [*headers, *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


_SECURITY_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)


def build_web_app() -> Starlette:
    """The form's app, to mount at the service's root.

    Its routes are `/` and `/web/...` only: BentoML tries the API and system routes first and
    passes a mounted app only the paths its own routes match, so `/v1/...`, `/livez`,
    `/docs.json` and the rest are untouched.
    """
    if plotly_bundle() is None:
        logger.warning(
            "plotly is not installed: the clinician form at / cannot draw its charts "
            "(pip install plotly)"
        )
    routes = [
        Route("/", page, methods=["GET"], name="form"),
        Route(f"{ASSET_PREFIX}/vendor/plotly.min.js", plotly_js, methods=["GET"], name="plotly"),
        Mount(ASSET_PREFIX, StaticFiles(directory=STATIC), name="web-static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
