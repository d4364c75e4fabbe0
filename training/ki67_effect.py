"""An optional continuous Ki-67 effect within grade for the synthetic cohort (an assumption).

The published models give Ki-67 only through the WHO grade (Table 1 of the 004 abstract); a
registry that records Ki-67 as a number may carry more. This option adds to every true log
hazard a linear effect of Ki-67 centred on the middle of the patient's grade band (read from
``data/cohort_spec.yaml``), so the grade effects keep their meaning and a model that uses
Ki-67 as a number (splines in `model.estimators.PrimarySurvival`) has something to find that
the grade alone does not hold. It is a labelled assumption, not a published estimate: off by
default, and every oracle figure of a cohort simulated with it includes it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["ki67_within_grade_log_hazard"]


def ki67_within_grade_log_hazard(
    frame: pd.DataFrame, bands: dict[str, list[float]], per_10_points: float
) -> np.ndarray:
    """Log relative hazard of each patient's Ki-67 against the middle of its grade's band.

    Parameters
    ----------
    frame : DataFrame
        With `who_grade` and `ki67_percent`.
    bands : dict of {grade: [low, high]}
        Ki-67 band of each grade (the spec's ``covariates.ki67_percent.uniform_within_grade``).
    per_10_points : float
        Log hazard ratio per 10 percentage points of Ki-67 within a grade.

    Returns
    -------
    ndarray, shape = (n_patients,)
    """
    middle = frame["who_grade"].map({g: (lo + hi) / 2.0 for g, (lo, hi) in bands.items()})
    offset = frame["ki67_percent"].to_numpy(float) - middle.to_numpy(float)
    return per_10_points * offset / 10.0
