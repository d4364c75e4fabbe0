"""Fixtures of the reliability suite: a registered bundle and `bentoml serve` as deployed.

The quick parts of the suite run in the default test run; the long ones (load, the full
fuzzing budget) are marked ``slow`` and run with ``make reliability``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from serving.settings import hash_token
from tests.served import Served, served

TOKEN = "reliability-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
BUNDLE_PATIENTS, BUNDLE_SEED, BUNDLE_BOOTSTRAP = 600, 17, 5


@pytest.fixture(scope="package")
def reliability_model_tag(prognosis_fit_bundle) -> Iterator[str]:
    """A small bundle (600 synthetic patients, 5 bootstrap members) registered for the suite."""
    import bentoml

    from store import registry
    from training.synthetic import simulate_cohort

    cohort = simulate_cohort(BUNDLE_PATIENTS, seed=BUNDLE_SEED)
    bundle = prognosis_fit_bundle(cohort, n_bootstrap=BUNDLE_BOOTSTRAP, seed=BUNDLE_SEED)
    tag = registry.save_bundle(bundle)
    yield tag
    bentoml.models.delete(tag)


@pytest.fixture
def serve(reliability_model_tag, tmp_path) -> Iterator[Callable[..., Served]]:
    """Factory: ``serve(**settings)`` starts `bentoml serve` with bearer auth and an audit log.

    Settings are ``NETPROG_*`` names without the prefix (``workers=2``); by default the token
    `TOKEN` is accepted and the audit log is ``tmp_path/audit/audit.jsonl``. The returned
    server has ``audit_log`` (Path) besides ``base``, ``pid`` and ``output()``.
    """
    numbers = itertools.count()
    with contextlib.ExitStack() as stack:

        def start(**settings) -> Served:
            settings.setdefault("model_tag", reliability_model_tag)
            settings.setdefault("api_token_hashes", hash_token(TOKEN))
            settings.setdefault("audit_log", tmp_path / "audit" / "audit.jsonl")
            env = {f"NETPROG_{name.upper()}": str(value) for name, value in settings.items()}
            log_path = tmp_path / f"server-{next(numbers)}.log"
            server = stack.enter_context(served(env, log_path))
            return dataclasses.replace(server, audit_log=Path(settings["audit_log"]))

        yield start


VERBOSE_TARGET = "--verbose"
"""Passed to `tests.served.served` as its target, so that `bentoml serve --verbose` runs.

BentoML 1.4 has no environment switch for its debug logs under `bentoml serve`: click reads
`BENTOML_VERBOSITY=1` as the `--quiet` flag (any true value sets it), and the CLI overwrites
`BENTOML_DEBUG`. Given the flag in the target's place, `bentoml serve` serves the
bentofile's service, `serving.service:NetPrognosis`, from the working directory."""


@pytest.fixture(scope="module")
def serve_module(reliability_model_tag, tmp_path_factory) -> Iterator[Callable[..., Served]]:
    """Factory like `serve`, for servers shared by the tests of one module.

    ``serve_module(verbose=False, env=None, **settings)``: `verbose` starts `bentoml serve
    --verbose`, which logs every logger at DEBUG; `env` adds other environment variables
    (``TMPDIR``...). Servers stop when the module's tests are done.
    """
    folder = tmp_path_factory.mktemp("served")
    numbers = itertools.count()
    with contextlib.ExitStack() as stack:

        def start(*, verbose: bool = False, env: dict[str, str] | None = None, **settings):
            number = next(numbers)
            settings.setdefault("model_tag", reliability_model_tag)
            settings.setdefault("api_token_hashes", hash_token(TOKEN))
            settings.setdefault("audit_log", folder / f"audit-{number}" / "audit.jsonl")
            variables = {f"NETPROG_{name.upper()}": str(value) for name, value in settings.items()}
            variables |= env or {}
            log_path = folder / f"server-{number}.log"
            target = {"target": VERBOSE_TARGET} if verbose else {}
            server = stack.enter_context(served(variables, log_path, **target))
            return dataclasses.replace(server, audit_log=Path(settings["audit_log"]))

        yield start
