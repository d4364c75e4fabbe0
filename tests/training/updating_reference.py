"""A small reference bundle for the model-updating tests, fitted once per session."""

from __future__ import annotations

from functools import lru_cache

from model.bundle import ModelBundle

FAST = {"coxnet": {"cv": 3, "n_alphas": 30, "l1_ratios": (0.9,)}}


@lru_cache(maxsize=1)
def reference_bundle() -> ModelBundle:
    """Fitted with the production code on 1,500 synthetic patients (seed 31), coxnet primary."""
    from training.fit import fit_bundle
    from training.synthetic import simulate_cohort
    from training.validate import validate_cohort

    cohort = validate_cohort(simulate_cohort(1500, seed=31))
    return fit_bundle(cohort, seed=0, n_bootstrap=3, n_jobs=1, estimator_params=FAST)
