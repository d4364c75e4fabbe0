"""Screenshots of the form for the docs: the result page, the patient view and the handout.

Fits the serving tests' fixture model (600 synthetic patients, seed 11) into a temporary
BentoML store, serves it on a loopback port and drives Debian's Chromium with Playwright, as
the browser tests do (no browser download, nothing but 127.0.0.1 reached). Run from the
repository root::

    .venv/bin/python -m tests.serving.screenshots [--out docs/images]

Writes result-page.png (the clinician view, full page), patient-view.png (the patient view on
screen) and handout.png (the patient handout as printed on A4).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path

from tests.serving.conftest import FIXTURE_BOOTSTRAP, FIXTURE_PATIENTS, FIXTURE_SEED
from tests.serving.web_conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP, LoopbackServer

A4_PIXELS = {"width": 794, "height": 1123}
"""A4 at 96 dpi, for the printed handout."""


def _registered_tag() -> str:
    from store import registry
    from tests.conftest import _prognosis_fit_bundle
    from training.synthetic import simulate_cohort

    cohort = simulate_cohort(FIXTURE_PATIENTS, seed=FIXTURE_SEED)
    bundle = _prognosis_fit_bundle(cohort, n_bootstrap=FIXTURE_BOOTSTRAP, seed=FIXTURE_SEED)
    return registry.save_bundle(bundle)


def _estimate(page) -> None:
    from tests.serving.test_web import fill_g2_pancreas, submit_with_enter, wait_for_results

    fill_g2_pancreas(page)
    submit_with_enter(page)
    wait_for_results(page)
    page.wait_for_timeout(500)


def _shoot(base_url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=DESKTOP)
        page.route(
            "**/*",
            lambda route: route.continue_() if "127.0.0.1" in route.request.url else route.abort(),
        )
        page.goto(f"{base_url}/")
        _estimate(page)
        page.screenshot(path=out / "result-page.png", full_page=True)
        page.click("#view-patient")
        page.locator("#results").screenshot(path=out / "patient-view.png")
        page.click("#view-clinician")
        page.set_viewport_size(A4_PIXELS)
        page.emulate_media(media="print")
        page.evaluate("window.netprogViews.prepareHandout()")
        page.screenshot(path=out / "handout.png", full_page=True)
        browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args(argv)
    if not CHROMIUM.is_file():
        parser.error(f"needs Debian's chromium at {CHROMIUM} (make system-deps)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home:
        os.environ["BENTOML_HOME"] = home
        os.environ["NETPROG_AUDIT_LOG"] = str(Path(home) / "audit.jsonl")
        os.environ["NETPROG_MODEL_TAG"] = _registered_tag()
        service = importlib.import_module("serving.service")
        with LoopbackServer(service.NetPrognosis.to_asgi()) as server:
            _shoot(server.base_url, args.out)
    print(f"wrote result-page.png, patient-view.png and handout.png to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
