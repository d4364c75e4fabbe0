"""Errors raised by the prognostic models when their inputs or state are unusable."""

from __future__ import annotations

__all__ = [
    "ConditionalSurvivalUndefined",
    "InvalidEstimatorParameter",
    "InvalidSurvivalTarget",
    "ModelError",
    "NonFiniteFeatures",
]


class ModelError(ValueError):
    """Base class for every error raised by :mod:`model`."""


class InvalidSurvivalTarget(ModelError):
    """The survival target is not a usable (event, time) structured array."""


class NonFiniteFeatures(ModelError):
    """The design matrix holds NaN or infinite values, which no estimator here imputes."""


class InvalidEstimatorParameter(ModelError):
    """A constructor parameter does not fit the data it is asked to describe."""


class ConditionalSurvivalUndefined(ModelError):
    """Conditional survival S(t)/S(s) was asked for at a time s where it is not defined.

    s beyond the prediction grid, negative, or where the survival curve is about zero.
    """
