"""Session-wide test set-up: an isolated, offline BentoML home for every test run."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings

import pytest
from pydantic.warnings import PydanticDeprecatedSince211

# BentoML reads its home and telemetry switch when first imported, so they are set here,
# before any test module imports it: tests never touch the developer's model store, and
# BentoML never tries the network.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="netprog-test-bentoml-")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"


BENTOML_PYDANTIC_DEPRECATION = (
    "ignore:The `__get_pydantic_core_schema__` method of the `BaseModel` class is deprecated"
    ":pydantic.warnings.PydanticDeprecatedSince211"
)
"""BentoML 1.4's `IODescriptor` (the base of every API model) overrides this pydantic hook and
calls the parent's, which pydantic >= 2.11 deprecates; the warning is BentoML's to fix, and it
is raised when BentoML's SDK and each API model class are defined (at import), which the
model store (store/bentoml_compat.py) and the service do."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("filterwarnings", BENTOML_PYDANTIC_DEPRECATION)


# The ini line covers the tests; the imports made while collecting run under the filters in
# force before it, so the same narrow filter is added to the active filters here.
warnings.filterwarnings(
    "ignore",
    message="The `__get_pydantic_core_schema__` method of the `BaseModel` class is deprecated",
    category=PydanticDeprecatedSince211,
)


# --- Prognosis fixtures (model/predictor.py, model/explain.py, model/modality.py) ------------
# Imports sit inside the fixtures so that nothing above runs after a model import.

PROGNOSIS_FAST_ESTIMATORS = {"coxnet": {"cv": 3, "n_alphas": 30, "l1_ratios": (0.9,)}}
"""One l1_ratio and a short path: the bundle fits in seconds; the fitted models stay CV-tuned."""


def _prognosis_fit_bundle(cohort, *, n_bootstrap=20, seed=0):
    """A bundle fitted with the production fitting code, sized for tests."""
    from training.fit import fit_bundle

    return fit_bundle(
        cohort,
        seed=seed,
        n_bootstrap=n_bootstrap,
        n_jobs=2,
        estimator_params=PROGNOSIS_FAST_ESTIMATORS,
    )


@pytest.fixture(scope="session")
def prognosis_fit_bundle():
    """``fit(cohort, *, n_bootstrap=20, seed=0)`` -> ModelBundle, for tests needing their own."""
    return _prognosis_fit_bundle


@pytest.fixture(scope="session")
def prognosis_cohort():
    """The synthetic reference cohort, 3,000 patients, seed 20."""
    from training.synthetic import simulate_cohort

    return simulate_cohort(3000, seed=20)


@pytest.fixture(scope="session")
def prognosis_bundle(prognosis_cohort):
    """A bundle (20 bootstrap members per model) fitted once per session; coxnet is primary."""
    return _prognosis_fit_bundle(prognosis_cohort)


@pytest.fixture(scope="session")
def prognosis_boosted_bundle(prognosis_bundle):
    """The same fits with the boosted model primary for both endpoints."""
    return dataclasses.replace(prognosis_bundle, primary={"hpfs": "xgboost", "os": "xgboost"})


@pytest.fixture(scope="session")
def prognosis_predictor(prognosis_bundle):
    from model.predictor import Predictor

    return Predictor(prognosis_bundle)


@pytest.fixture(scope="session")
def prognosis_boosted_predictor(prognosis_boosted_bundle):
    from model.predictor import Predictor

    return Predictor(prognosis_boosted_bundle)


@pytest.fixture(scope="session")
def prognosis_patient():
    """Factory of valid patients: a G2 pancreatic patient, fields overridable by keyword."""
    from model.schema import Patient

    def make(**fields):
        defaults = {
            "age_years": 62,
            "who_grade": "G2",
            "tumor_burden_percent": 30.0,
            "primary_site": "pancreas",
            "prior_hepatic_treatment": False,
            "extrahepatic_metastases": False,
            "somatostatin_analog": True,
            "biologic_therapy": False,
            "cytotoxic_chemotherapy": False,
            "planned_modality": "TACE",
        }
        return Patient(**{**defaults, **fields})

    return make
