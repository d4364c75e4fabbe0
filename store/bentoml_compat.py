"""Every BentoML internal this project touches, in one place (BentoML 1.4).

BentoML's public API covers services, models and the store's contents, but not where the
store lives, how to build a model in a store of one's own, the class of its request-timeout
middleware, its traffic-metrics middleware (which labels requests by raw path), the factory
that builds a worker's app (in debug mode under `--verbose`), how often `bentoml serve`'s
supervisor looks for dead workers, the service class behind `@bentoml.service` or the names of
its internal loggers.
The project needs each of them; they are named here and nowhere else, and
tests/store/test_bentoml_compat.py fails, naming the touch-point, when an upgrade moves one.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bentoml
from _bentoml_impl.server.app import ServiceAppFactory
from _bentoml_sdk.service.factory import Service
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.models.model import ModelStore
from bentoml._internal.server.http import instruments, traffic
from bentoml._internal.utils import circus as bentoml_circus

__all__ = [
    "INTERNAL_LOGGERS",
    "TESTED_VERSIONS",
    "Service",
    "ServiceAppFactory",
    "SupervisorArbiter",
    "TimeoutMiddleware",
    "TrafficMetricsMiddleware",
    "bentoml_home",
    "create_model_in",
    "install_app_hook",
    "install_supervisor_check_delay",
    "install_timeout_middleware",
    "install_traffic_metrics_middleware",
    "model_store_at",
    "model_store_dir",
    "store_home_at",
]

TESTED_VERSIONS = ("1.4.",)
"""BentoML versions whose internals were checked against this module."""
INTERNAL_LOGGERS = (
    "bentoml._internal.server.http_app",
    "_bentoml_sdk.io_models",
    "_bentoml_impl.server.app",
)
"""BentoML's internal loggers that report request exceptions, which may quote a request's
values (serving/security.py redacts them)."""

TimeoutMiddleware = traffic.TimeoutMiddleware
"""BentoML's request-timeout middleware: `TimeoutMiddleware(app, timeout)`, with
`_set_timer_out(waiter)` failing the waiter with TimeoutError."""


def install_timeout_middleware(middleware: type[traffic.TimeoutMiddleware]) -> None:
    """Make BentoML build `middleware` wherever it builds its own timeout middleware.

    BentoML looks the class up by name in its traffic module each time it makes a worker's
    app, so the replacement holds for every app made after this call.
    """
    traffic.TimeoutMiddleware = middleware  # type: ignore[misc]


TrafficMetricsMiddleware = instruments.RunnerTrafficMetricsMiddleware
"""BentoML's traffic metrics of a new-style service: `TrafficMetricsMiddleware(app,
namespace, skip_paths)`, labelling every request by ``scope["path"]`` as `endpoint`."""


def install_traffic_metrics_middleware(
    middleware: type[instruments.RunnerTrafficMetricsMiddleware],
) -> None:
    """Make BentoML build `middleware` in place of its traffic metrics (looked up by name in
    the instruments module each time a worker's app is made, like the timeout's)."""
    instruments.RunnerTrafficMetricsMiddleware = middleware  # type: ignore[misc]


def install_app_hook(hook: Callable[[Any], None]) -> None:
    """Call `hook(app)` on every Starlette app `ServiceAppFactory` builds, before it serves.

    BentoML builds each worker's app with ``debug=get_debug_mode()``; a hook can undo that
    while the app's middleware is not built yet. Installing the same hook twice is a no-op.
    """
    build = ServiceAppFactory.__call__
    if hook in getattr(build, "netprog_hooks", ()):
        return

    @functools.wraps(build)
    def build_and_hook(self: Any) -> Any:
        app = build(self)
        hook(app)
        return app

    setattr(build_and_hook, "netprog_hooks", (*getattr(build, "netprog_hooks", ()), hook))  # noqa: B010
    setattr(ServiceAppFactory, "__call__", build_and_hook)  # noqa: B010


SupervisorArbiter = bentoml_circus.Arbiter
"""The circus arbiter `bentoml serve` supervises its workers with: `Arbiter(watchers, ...,
check_delay=seconds)`, which reaps and restarts dead workers only on its periodic check."""


def install_supervisor_check_delay(seconds: float) -> None:
    """Make every supervisor `bentoml serve` starts after this call check its workers each
    `seconds`.

    BentoML's `create_standalone_arbiter` passes ``check_delay=10``, and circus notices a dead
    worker only on that check, so a worker killed just after one was restarted 10 s later plus
    its start-up. `serve_http` imports that function before it imports the service, so the
    delay is set where the arbiter is built instead. Installing again replaces the delay.
    """
    build = SupervisorArbiter.__init__
    build = getattr(build, "netprog_original", build)

    @functools.wraps(build)
    def build_checking_often(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["check_delay"] = seconds
        build(self, *args, **kwargs)

    setattr(build_checking_often, "netprog_original", build)  # noqa: B010
    setattr(build_checking_often, "netprog_check_delay", seconds)  # noqa: B010
    setattr(SupervisorArbiter, "__init__", build_checking_often)  # noqa: B010


def bentoml_home() -> Path:
    """The BentoML home folder (`$BENTOML_HOME`)."""
    return Path(BentoMLContainer.bentoml_home.get())


def model_store_dir() -> Path:
    """The folder of BentoML's local model store."""
    return Path(BentoMLContainer.model_store_dir.get())


def model_store_at(path: Path) -> Any:
    """A BentoML model store rooted at `path` (a staging store for atomic registration)."""
    return ModelStore(path)


def create_model_in(store: Any, name: str, **options: Any) -> Any:
    """`bentoml.models.create(name, **options)`, writing into `store` instead of the local
    store (the context manager BentoML returns)."""
    return bentoml.models.create(name, _model_store=store, **options)


def create_accepts_a_store() -> bool:
    """Whether `bentoml.models.create` still takes the store it writes to."""
    return "_model_store" in inspect.signature(bentoml.models.create).parameters


@contextlib.contextmanager
def store_home_at(home: Path) -> Iterator[Path]:
    """Point BentoML's home, model store and store folder at `home` for the block (tests)."""
    models = home / "models"
    models.mkdir(parents=True, exist_ok=True)
    with (
        BentoMLContainer.bentoml_home.patch(str(home)),
        BentoMLContainer.model_store.patch(ModelStore(str(models))),
        BentoMLContainer.model_store_dir.patch(str(models)),
    ):
        yield home
