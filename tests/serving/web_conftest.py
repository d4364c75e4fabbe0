"""Helpers of the browser tests: the service on a loopback port, and Debian's Chromium.

test_web.py builds its fixtures from them. The service is the in-process ASGI app of
tests/serving/conftest.py, served by uvicorn in a thread; Chromium is driven by Playwright
with the system executable (no browser download). Every page aborts and records any request
that is not for 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.serving.conftest import SETTING_NAMES

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "web"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LOOPBACK = "127.0.0.1"
STARTUP_SECONDS = 60
DESKTOP = {"width": 1440, "height": 1000}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


class LoopbackServer:
    """An ASGI app served by uvicorn in a daemon thread on 127.0.0.1, lifespan included."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        # h11 and no websockets: the service needs neither uvloop nor websockets, whose
        # imports raise deprecation warnings of their own.
        config = uvicorn.Config(
            app,
            host=LOOPBACK,
            port=self.port,
            loop="asyncio",
            http="h11",
            ws="none",
            lifespan="on",
            access_log=False,
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="web-test-server", daemon=True)

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self.server.started:
            assert self.thread.is_alive(), "the service stopped while starting"
            assert time.monotonic() < deadline, "the service did not start in time"
            time.sleep(0.05)
        # The service's middleware (and so its settings) is built on the first request:
        # make it now, while the caller's settings are in force.
        assert httpx.get(f"{self.base_url}/livez", timeout=10).status_code == 200
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextlib.contextmanager
def served(service_module, audit_dir: Path, **settings) -> Iterator[LoopbackServer]:
    """The service with the given `NETPROG_*` settings (all others removed) on a loopback port."""
    with pytest.MonkeyPatch.context() as patch:
        for name in SETTING_NAMES:
            patch.delenv(f"NETPROG_{name}", raising=False)
        patch.setenv("NETPROG_AUDIT_LOG", str(audit_dir / "audit.jsonl"))
        for name, value in settings.items():
            patch.setenv(f"NETPROG_{name.upper()}", str(value))
        with LoopbackServer(service_module.NetPrognosis.to_asgi()) as server:
            yield server


@contextlib.contextmanager
def chromium():
    """Debian's Chromium, headless, driven by Playwright; skips the test where it is absent."""
    if not CHROMIUM.is_file():
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (make system-deps)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class WebPage:
    """A browser page with a record of what it asked for and what went wrong in it."""

    page: object
    base_url: str
    requests: list = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def api_requests(self, path: str) -> list:
        return [r for r in self.requests if urlsplit(r.url).path == path]

    def assert_clean(self) -> None:
        """Nothing left for another host, and no script error or policy violation."""
        assert self.blocked == []
        assert {urlsplit(r.url).hostname for r in self.requests} <= {LOOPBACK}
        assert self.console_errors == []


@contextlib.contextmanager
def page_opener(browser) -> Iterator[Callable[..., WebPage]]:
    """``open_(server, viewport=DESKTOP)`` opens the form in a fresh browser context.

    Each page sends requests for 127.0.0.1 on and aborts (and records) every other one, and
    records script errors and Content-Security-Policy violations from its console.
    """
    contexts = []

    def open_(server: LoopbackServer, viewport: dict | None = None) -> WebPage:
        context = browser.new_context(viewport=viewport or DESKTOP, service_workers="block")
        contexts.append(context)
        page = context.new_page()
        web = WebPage(page=page, base_url=server.base_url)

        def guard(route) -> None:
            if urlsplit(route.request.url).hostname == LOOPBACK:
                route.continue_()
            else:
                web.blocked.append(route.request.url)
                route.abort("internetdisconnected")

        page.route("**/*", guard)
        page.on("request", lambda request: web.requests.append(request))
        page.on("pageerror", lambda error: web.console_errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                web.console_errors.append(message.text) if message.type == "error" else None
            ),
        )
        page.goto(f"{server.base_url}/")
        return web

    try:
        yield open_
    finally:
        for context in contexts:
            context.close()
