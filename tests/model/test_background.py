"""The explanation background and risk percentiles are summaries: weighted cluster centres of
at least ten patients each, with the cohort's mean, and quantiles instead of per-patient
log hazards."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model.background import risk_quantiles, summarise_background
from model.exceptions import ModelError
from model.schema import encode


@pytest.fixture(scope="module")
def design(prognosis_cohort):
    return encode(prognosis_cohort.iloc[:1500])


def test_every_centre_averages_at_least_ten_patients_and_the_weights_give_the_mean(design):
    summary = summarise_background(design, n_clusters=20, min_cluster_size=10, seed=3)
    values = design.to_numpy(dtype=float)

    assert 1 < len(summary.centres) <= 20
    assert summary.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert (summary.weights * len(values)).min() >= 10 - 1e-9
    np.testing.assert_allclose(
        np.average(summary.centres.to_numpy(), axis=0, weights=summary.weights),
        values.mean(axis=0),
        atol=1e-9,
    )
    assert summary.n_patients == len(values)
    assert list(summary.centres.columns) == list(design.columns)


def test_no_centre_is_one_patients_row(design):
    summary = summarise_background(design, seed=3)
    values = design.to_numpy(dtype=float)

    for centre in summary.centres.to_numpy():
        identical = np.all(np.isclose(values, centre, atol=1e-12), axis=1).sum()
        assert identical == 0 or identical >= 10


def test_a_cohort_smaller_than_a_cluster_is_refused(design):
    with pytest.raises(ModelError, match="at least 10 patients"):
        summarise_background(design.iloc[:9])


def test_small_clusters_are_dissolved_into_their_neighbours():
    rng = np.random.default_rng(0)
    values = np.vstack([rng.normal(0, 1, (50, 2)), rng.normal(30, 1, (3, 2))])
    summary = summarise_background(
        pd.DataFrame(values, columns=["a", "b"]), n_clusters=5, min_cluster_size=10
    )

    assert (summary.weights * len(values)).min() >= 10 - 1e-9
    assert (summary.weights * len(values)).sum() == pytest.approx(53)


def test_risk_percentiles_from_quantiles_are_within_half_a_point_of_the_cohorts():
    log_hazard = np.random.default_rng(1).normal(size=3000)
    grid = risk_quantiles(log_hazard)
    probes = np.linspace(-2.5, 2.5, 41)

    exact = np.array([100 * np.mean(log_hazard <= p) for p in probes])
    approximate = np.array(
        [100 * np.searchsorted(grid, p, side="right") / len(grid) for p in probes]
    )

    assert len(grid) == 201
    assert np.abs(exact - approximate).max() <= 1.0
