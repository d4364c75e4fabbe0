"""The survival estimators behind one scikit-learn contract: each family, and the primary model."""

from __future__ import annotations

from model.boosted import BoostedCox
from model.penalized import MANY_EVENTS, MIN_SHRINKAGE_FACTOR, RELAXED_RIDGE, PenalizedCox
from model.primary import BOOSTED_GRID, PrimarySurvival
from model.survival_base import CoxEstimator

__all__ = [
    "BOOSTED_GRID",
    "ESTIMATORS",
    "MANY_EVENTS",
    "MIN_SHRINKAGE_FACTOR",
    "RELAXED_RIDGE",
    "BoostedCox",
    "PenalizedCox",
    "PrimarySurvival",
]

ESTIMATORS: dict[str, type[CoxEstimator]] = {"coxnet": PenalizedCox, "xgboost": BoostedCox}
"""The families the training pipeline fits per endpoint, by the name its bundles use."""
