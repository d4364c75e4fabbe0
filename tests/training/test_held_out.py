"""The held-out evaluation: the bootstrap interval of Harrell's C, counted in one pass."""

from __future__ import annotations

import numpy as np
import pytest

from training import evaluate, held_out
from training.evaluate.concordance import bootstrap_harrell_c


def _outcomes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes with ties in time (rounded) and in risk (rounded), as registries have them."""
    rng = np.random.default_rng(seed)
    y = np.empty(n, dtype=[("event", bool), ("months", float)])
    y["event"] = rng.random(n) < 0.5
    y["months"] = np.round(rng.exponential(20.0, n), 1) + 0.1
    risk = np.round(rng.normal(size=n) - 0.02 * y["months"], 2)
    return y, risk


@pytest.mark.parametrize("n", [400, evaluate.PAIRWISE_C_MAX_ROWS + 500])
def test_bootstrap_harrell_c_equals_harrell_c_on_each_resampled_row_set(n):
    y, risk = _outcomes(n, seed=1)
    rng = np.random.default_rng(2)
    rows = [rng.integers(0, n, n) for _ in range(5)]
    counts = np.stack([np.bincount(r, minlength=n) for r in rows])

    counted = bootstrap_harrell_c(y["event"], y["months"], risk, counts)

    expected = [evaluate.harrell_c(y["event"][r], y["months"][r], risk[r]) for r in rows]
    np.testing.assert_allclose(counted, expected, rtol=0, atol=1e-12)


def test_a_resample_without_comparable_pairs_has_no_concordance():
    event, time, risk = np.array([True, False]), np.array([3.0, 5.0]), np.array([1.0, 0.0])

    counted = bootstrap_harrell_c(event, time, risk, np.array([[0, 2], [1, 1], [2, 1]]))

    assert np.isnan(counted[0])
    assert counted[1:].tolist() == [1.0, 1.0]


def test_the_held_out_interval_is_the_percentile_interval_of_the_resamples_without_recounting(
    monkeypatch,
):
    y, risk = _outcomes(600, seed=3)
    rng = np.random.default_rng(11)
    values = []
    for _ in range(held_out.HELD_OUT_BOOTSTRAP):
        rows = rng.integers(0, len(y), len(y))
        if y["event"][rows].any():
            values.append(evaluate.harrell_c(y["event"][rows], y["months"][rows], risk[rows]))
    expected = np.percentile(values, [2.5, 97.5])

    def recount(*_):
        raise AssertionError("the interval recounted Harrell's C resample by resample")

    monkeypatch.setattr(evaluate, "harrell_c", recount)
    lower, upper = held_out._harrell_c_interval(y, risk, seed=11)

    assert (lower, upper) == pytest.approx(tuple(expected), abs=1e-12)
    assert 0.5 < lower < upper < 0.7
