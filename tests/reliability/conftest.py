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

    from training import registry
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
