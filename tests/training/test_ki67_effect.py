"""The synthetic cohort's optional continuous Ki-67 effect within grade."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.ki67_effect import ki67_within_grade_log_hazard
from training.synthetic import CohortSpec, simulate_cohort

BANDS = CohortSpec.load().covariates["ki67_percent"]["uniform_within_grade"]


def test_the_effect_is_zero_at_the_middle_of_each_grade_band_and_linear_around_it():
    frame = pd.DataFrame(
        {"who_grade": ["G1", "G2", "G2", "G3"], "ki67_percent": [1.7, 11.5, 21.5, 40.5]}
    )
    effect = ki67_within_grade_log_hazard(frame, BANDS, per_10_points=0.4)
    np.testing.assert_allclose(effect, [0.0, 0.0, 0.4, 0.0])


def test_the_option_adds_the_same_offset_to_every_true_log_hazard_and_nothing_else():
    plain = simulate_cohort(300, seed=4)
    with_ki67 = simulate_cohort(300, seed=4, ki67_per_10_points=0.5)
    offset = ki67_within_grade_log_hazard(plain, BANDS, 0.5)

    assert np.abs(offset).max() > 0.5
    for column in ("true_lp_hpfs", "true_lp_os", "true_lp_os_SIRT", "true_lp_hpfs_TAE"):
        np.testing.assert_allclose(with_ki67[column], plain[column] + offset)
    pd.testing.assert_series_equal(with_ki67["ki67_percent"], plain["ki67_percent"])


@pytest.mark.parametrize("column", ["true_lp_os", "os_months"])
def test_without_the_option_the_cohort_is_unchanged(column):
    pd.testing.assert_series_equal(
        simulate_cohort(200, seed=1)[column],
        simulate_cohort(200, seed=1, ki67_per_10_points=0.0)[column],
    )
