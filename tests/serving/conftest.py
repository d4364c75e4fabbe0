"""Fixtures of the serving tests: one registered bundle, the service, an in-process client."""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio.from_thread
import httpx
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"
SETTING_NAMES = (
    "MODEL_TAG",
    "API_TOKEN_HASHES",
    "AUDIT_LOG",
    "AUDIT_SALT",
    "AUDIT_SALT_FILE",
    "AUDIT_FSYNC",
    "MAX_BODY_BYTES",
    "MAX_RECORD_BODY_BYTES",
    "MAX_BATCH",
    "CORS_ALLOW_ORIGINS",
    "CDS_CLIENTS_FILE",
    "MODEL_SIGNING_KEY",
    "MODEL_VERIFY_KEY",
    "WORKERS",
)
FIXTURE_PATIENTS, FIXTURE_SEED, FIXTURE_BOOTSTRAP = 600, 11, 5


def example(name: str) -> dict:
    """A request body from data/examples/."""
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


class ServiceClient:
    """A synchronous client of the ASGI app that runs its lifespan (startup and shutdown).

    Starlette's TestClient would do, but its use of httpx is deprecated (a warning, which the
    suite turns into an error); this drives httpx's ASGI transport through an anyio portal.
    """

    def __init__(self, app):
        self.app = app
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ServiceClient:
        portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal())
        self._portal = portal
        self._stack.enter_context(
            portal.wrap_async_context_manager(self.app.router.lifespan_context(self.app))
        )
        transport = httpx.ASGITransport(app=self.app)
        self._client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        self._stack.callback(portal.call, self._client.aclose)
        # Starlette builds the middleware (and so reads the settings) on the first request:
        # make it now, while the caller's settings are in force.
        assert self.get("/livez").status_code == 200
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.__exit__(*exc_info)

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        return self._portal.call(lambda: self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> httpx.Response:
        return self.request("POST", url, **kwargs)


@pytest.fixture(scope="package")
def fixture_bundle(prognosis_fit_bundle):
    """A bundle fitted once for the serving tests (600 synthetic patients, 5 bootstraps)."""
    from training.synthetic import simulate_cohort

    cohort = simulate_cohort(FIXTURE_PATIENTS, seed=FIXTURE_SEED)
    return prognosis_fit_bundle(cohort, n_bootstrap=FIXTURE_BOOTSTRAP, seed=FIXTURE_SEED)


@pytest.fixture(scope="package")
def model_tag(fixture_bundle) -> Iterator[str]:
    """The fixture bundle registered in the session's model store, deleted afterwards.

    The store is shared with the other packages' tests (tests/conftest.py), some of which
    count its models; this one leaves it as it found it.
    """
    import bentoml

    from store import registry

    tag = registry.save_bundle(fixture_bundle)
    yield tag
    bentoml.models.delete(tag)


@pytest.fixture(scope="package")
def service_module(model_tag):
    """`serving.service`, imported (or re-imported) to serve the fixture bundle."""
    with pytest.MonkeyPatch.context() as patch:
        for name in SETTING_NAMES:
            patch.delenv(f"NETPROG_{name}", raising=False)
        patch.setenv("NETPROG_MODEL_TAG", model_tag)
        module = sys.modules.get("serving.service")
        if module is None:
            module = importlib.import_module("serving.service")
        elif module.BUNDLE_TAG != model_tag:
            module = importlib.reload(module)
        assert module.BUNDLE_TAG == model_tag
        # Prometheus collectors are process-global and every app built registers them again;
        # in-process apps go without /metrics (the served test checks it).
        config = module.NetPrognosis.config
        previous = config.get("metrics")
        config["metrics"] = {**(previous or {}), "enabled": False}
        yield module
        if previous is None:
            config.pop("metrics", None)
        else:
            config["metrics"] = previous


@pytest.fixture
def settings_env(monkeypatch, tmp_path) -> Callable[..., Path]:
    """Set the service's settings for one test; returns the audit log path.

    Every `NETPROG_*` variable not given is removed, and the audit log goes to `tmp_path`.
    """

    def apply(**settings) -> Path:
        for name in SETTING_NAMES:
            monkeypatch.delenv(f"NETPROG_{name}", raising=False)
        settings.setdefault("audit_log", tmp_path / "audit" / "audit.jsonl")
        for name, value in settings.items():
            monkeypatch.setenv(f"NETPROG_{name.upper()}", str(value))
        return Path(settings["audit_log"])

    return apply


@pytest.fixture
def make_client(service_module, settings_env) -> Iterator[Callable[..., ServiceClient]]:
    """Factory: ``make_client(**settings)`` starts the service in-process and returns a client."""
    with contextlib.ExitStack() as stack:

        def make(**settings) -> ServiceClient:
            audit_log = settings_env(**settings)
            client = stack.enter_context(ServiceClient(service_module.NetPrognosis.to_asgi()))
            client.audit_log = audit_log
            return client

        yield make


@pytest.fixture(scope="package")
def client(service_module, tmp_path_factory) -> Iterator[ServiceClient]:
    """The service with default settings (no authentication), shared by tests that only ask.

    Tests that look at the audit log or change settings use `make_client` instead.
    """
    audit_log = tmp_path_factory.mktemp("shared-audit") / "audit.jsonl"
    with pytest.MonkeyPatch.context() as patch:
        for name in SETTING_NAMES:
            patch.delenv(f"NETPROG_{name}", raising=False)
        patch.setenv("NETPROG_AUDIT_LOG", str(audit_log))
        with ServiceClient(service_module.NetPrognosis.to_asgi()) as shared:
            shared.audit_log = audit_log
            yield shared
