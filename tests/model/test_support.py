"""`model.support.ModalitySupport`: the propensity from precomputed arrays equals the model's."""

from __future__ import annotations

import numpy as np
import pytest

from model.schema import MODALITIES, encode
from model.support import _multinomial_arrays, _softmax
from training.fit import PROPENSITY_FEATURES, fit_propensity
from training.synthetic import simulate_cohort


@pytest.fixture(scope="module")
def propensity_and_design():
    cohort = simulate_cohort(400, seed=2)
    model = fit_propensity(cohort, seed=0)
    return model, encode(cohort)[list(PROPENSITY_FEATURES)].to_numpy(dtype=float)


def test_the_precomputed_propensity_equals_scikit_learns_in_modality_order(
    propensity_and_design,
):
    model, design = propensity_and_design
    order = np.array([list(map(str, model.classes_)).index(m) for m in MODALITIES])
    coef, intercept = _multinomial_arrays(model, order)

    fast = _softmax(design @ coef + intercept)

    np.testing.assert_allclose(fast, model.predict_proba(design)[:, order], atol=1e-12)
    np.testing.assert_allclose(fast.sum(axis=1), 1.0)


def test_another_kind_of_propensity_model_falls_back_to_its_own_predict_proba():
    assert _multinomial_arrays(object(), np.arange(3)) is None
