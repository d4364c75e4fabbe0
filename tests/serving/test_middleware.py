"""The service's middleware: `/metrics` labels by route template, and no debug answers."""

from __future__ import annotations

import pytest
from starlette.middleware.errors import ServerErrorMiddleware

from serving.middleware import UNROUTED, route_template


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/v1/prognosis", "/v1/prognosis"),
        ("/v1/prognosis/batch", "/v1/prognosis/batch"),
        ("/cds-services/netprog-prognosis", "/cds-services/{service_id}"),
        ("/cds-services/MRN-12345/feedback", "/cds-services/{service_id}/feedback"),
        ("/web/vendor/plotly.min.js", "/web/{path:path}"),
        ("/", "/"),
        ("/v1/prognosis/", UNROUTED),
        ("/v1/patients/MRN-12345", UNROUTED),
        ("/cds-services/a/b/c", UNROUTED),
        ("/metrics", "/metrics"),
    ],
)
def test_a_path_is_labelled_by_its_route_template_or_as_unrouted(service_module, path, template):
    assert route_template(path) == template


def test_every_documented_route_is_its_own_label(service_module):
    paths = list(service_module.SERVICE.openapi_spec.paths)

    assert len(paths) == 11
    assert [route_template(path) for path in paths] == paths
    assert set(paths) <= set(service_module.ROUTE_TEMPLATES)


def test_a_debug_log_level_does_not_turn_on_debug_answers(service_module, monkeypatch):
    """`bentoml serve --verbose` sets BENTOML_DEBUG, which BentoML passes to Starlette as
    `debug`: its answer to an unhandled exception would be the traceback, to the caller."""
    monkeypatch.setenv("BENTOML_DEBUG", "true")

    app = service_module.SERVICE.to_asgi()

    assert app.debug is False
    outermost = app.build_middleware_stack()
    assert isinstance(outermost, ServerErrorMiddleware)
    assert outermost.debug is False
