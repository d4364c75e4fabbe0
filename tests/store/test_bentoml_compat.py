"""BentoML's internals that store/bentoml_compat.py names are still there, as the project uses
them: an upgrade that moves one fails here, naming it, rather than in production."""

from __future__ import annotations

import asyncio
import inspect
import logging
from pathlib import Path

import bentoml
import pytest

from store import bentoml_compat


def test_the_installed_bentoml_is_a_version_whose_internals_were_checked():
    assert bentoml.__version__.startswith(bentoml_compat.TESTED_VERSIONS), (
        f"BentoML {bentoml.__version__} is not one of {bentoml_compat.TESTED_VERSIONS}: check "
        "every touch-point of store/bentoml_compat.py against it, then add it there"
    )


def test_bentoml_builds_its_timeout_middleware_by_name_from_the_traffic_module():
    from bentoml._internal.server import base_app

    source = inspect.getsource(base_app)

    assert "from .http.traffic import TimeoutMiddleware" in source, (
        "BentoML no longer imports TimeoutMiddleware by name when it builds an app: "
        "install_timeout_middleware (the request-timeout fix) would do nothing"
    )


def test_the_timeout_middleware_still_takes_app_and_timeout_and_fails_its_waiter():
    middleware = bentoml_compat.TimeoutMiddleware(app=None, timeout=5)

    async def waiter_after_timeout() -> asyncio.Future:
        waiter = asyncio.get_running_loop().create_future()
        middleware._set_timer_out(waiter)
        return waiter

    waiter = asyncio.run(waiter_after_timeout())
    assert middleware.timeout == 5
    assert isinstance(waiter.exception(), TimeoutError)


def test_install_timeout_middleware_replaces_the_class_bentoml_builds():
    from bentoml._internal.server.http import traffic

    original = traffic.TimeoutMiddleware

    class Replacement(original):
        pass

    try:
        bentoml_compat.install_timeout_middleware(Replacement)
        assert traffic.TimeoutMiddleware is Replacement
    finally:
        bentoml_compat.install_timeout_middleware(original)


def test_bentoml_builds_its_traffic_metrics_by_name_and_labels_them_by_the_scope_path():
    from _bentoml_impl.server import app

    builder = inspect.getsource(app)
    middleware = inspect.getsource(bentoml_compat.TrafficMetricsMiddleware.__call__)

    assert "instruments import (\n                RunnerTrafficMetricsMiddleware," in builder, (
        "BentoML no longer imports RunnerTrafficMetricsMiddleware by name when it builds an "
        "app: install_traffic_metrics_middleware (route-template labels) would do nothing"
    )
    assert 'endpoint = scope["path"]' in middleware, (
        "BentoML's traffic metrics no longer label by scope['path']: RouteTemplateMetrics "
        "(serving/middleware.py) must be checked against the new labelling"
    )


def test_install_app_hook_runs_a_hook_once_on_every_app_the_factory_builds(monkeypatch):
    factory = bentoml_compat.ServiceAppFactory
    monkeypatch.setattr(factory, "__call__", lambda self: {"built": True})
    calls = []

    def hook(app):
        calls.append(app)

    bentoml_compat.install_app_hook(hook)
    bentoml_compat.install_app_hook(hook)

    assert factory.__call__(object()) == {"built": True}
    assert calls == [{"built": True}]


def test_bentoml_serve_builds_its_supervisor_with_a_10_s_check_by_the_arbiter_class_name():
    from _bentoml_impl.server import serving
    from bentoml._internal.utils import circus

    factory = inspect.getsource(circus.create_standalone_arbiter)

    assert "arbiter_cls = ThreadedArbiter if threaded else Arbiter" in factory, (
        "BentoML no longer builds its supervisor from the Arbiter class of "
        "bentoml._internal.utils.circus: install_supervisor_check_delay would do nothing"
    )
    assert issubclass(circus.ThreadedArbiter, bentoml_compat.SupervisorArbiter)
    assert "create_standalone_arbiter(**arbiter_kwargs)" in inspect.getsource(serving.serve_http)


def test_install_supervisor_check_delay_sets_the_check_of_every_arbiter_built_after_it():
    from bentoml._internal.utils.circus import create_standalone_arbiter

    original = bentoml_compat.SupervisorArbiter.__init__
    try:
        # BentoML's own check, even when serving.service has installed the project's already.
        bentoml_compat.SupervisorArbiter.__init__ = getattr(  # type: ignore[method-assign]
            original, "netprog_original", original
        )
        before = create_standalone_arbiter([])
        bentoml_compat.install_supervisor_check_delay(2.0)
        bentoml_compat.install_supervisor_check_delay(0.5)
        after = create_standalone_arbiter([])
    finally:
        bentoml_compat.SupervisorArbiter.__init__ = original  # type: ignore[method-assign]

    assert (before.check_delay, before.ctrl.check_delay) == (10, 10_000), (
        "BentoML's supervisor no longer checks its workers every 10 s: see whether "
        "NETPROG_WORKER_CHECK_SECONDS is still needed"
    )
    assert (after.check_delay, after.ctrl.check_delay) == (0.5, 500)


def test_the_store_folders_are_under_the_bentoml_home():
    home = bentoml_compat.bentoml_home()

    assert home == Path(bentoml.__dict__.get("_home", home))
    assert bentoml_compat.model_store_dir().is_relative_to(home)


def test_bentoml_models_create_still_takes_the_store_it_writes_to(tmp_path):
    assert bentoml_compat.create_accepts_a_store(), (
        "bentoml.models.create lost its `_model_store` parameter: store/registry.py cannot "
        "stage a model outside the store before moving it in atomically"
    )
    store = bentoml_compat.model_store_at(tmp_path)
    with bentoml_compat.create_model_in(store, "compat-check") as model:
        Path(model.path_of("artifact.txt")).write_text("x", encoding="utf-8")

    assert [str(m.tag.name) for m in store.list()] == ["compat-check"]


def test_store_home_at_points_the_store_elsewhere_and_back(tmp_path):
    before = bentoml_compat.model_store_dir()

    with bentoml_compat.store_home_at(tmp_path):
        inside = bentoml_compat.model_store_dir()

    assert inside == tmp_path / "models"
    assert bentoml_compat.model_store_dir() == before


def test_the_sdk_service_class_still_offers_the_openapi_spec_the_service_extends():
    spec = inspect.getattr_static(bentoml_compat.Service, "openapi_spec")

    assert isinstance(spec, property)
    assert "apis" in {field.name for field in bentoml_compat.Service.__attrs_attrs__}


@pytest.mark.parametrize("name", bentoml_compat.INTERNAL_LOGGERS)
def test_each_internal_logger_the_redaction_covers_is_a_module_that_logs(name):
    import importlib

    module = importlib.import_module(name)

    assert isinstance(getattr(module, "logger", None), logging.Logger), (
        f"{name} has no module logger any more: find where BentoML now reports request "
        "exceptions and redact that logger instead (serving/security.py)"
    )
