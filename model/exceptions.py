"""Errors raised by the prognostic models when their inputs or state are unusable."""

from __future__ import annotations

__all__ = [
    "ConditionalSurvivalUndefined",
    "FitDiverged",
    "InvalidEstimatorParameter",
    "InvalidSurvivalTarget",
    "ModelError",
    "NonFiniteFeatures",
    "UnknownFieldsUnsupported",
]


class ModelError(ValueError):
    """Base class for every error raised by :mod:`model`."""


class InvalidSurvivalTarget(ModelError):
    """The survival target is not a usable (event, time) structured array."""


class NonFiniteFeatures(ModelError):
    """The design matrix holds NaN or infinite values, which no estimator here imputes."""


class InvalidEstimatorParameter(ModelError):
    """A constructor parameter does not fit the data it is asked to describe."""


class FitDiverged(ModelError):
    """A fit's estimates grew without bound on these data, so there is no model to return."""


class ConditionalSurvivalUndefined(ModelError):
    """Conditional survival S(t)/S(s) was asked for at a time s where it is not defined.

    s beyond the prediction grid, negative, or where the survival curve is about zero.
    """


class UnknownFieldsUnsupported(ModelError):
    """A patient leaves fields unknown, and the model bundle holds no imputation models."""

    def __init__(self, fields: tuple[str, ...]):
        super().__init__(
            f"{', '.join(fields)} must be given for this model, but were left unknown: it was "
            "trained before unknown fields could be imputed; give the value(s), or retrain "
            "the model with this version of the code"
        )
