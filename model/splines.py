"""Restricted cubic splines of the continuous columns of a design matrix, for the Cox family."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from model.exceptions import InvalidEstimatorParameter

__all__ = ["KNOT_QUANTILES", "RestrictedCubicSplines", "restricted_cubic_basis"]

KNOT_QUANTILES = {
    3: (0.10, 0.50, 0.90),
    4: (0.05, 0.35, 0.65, 0.95),
    5: (0.05, 0.275, 0.5, 0.725, 0.95),
}
"""Harrell's knot placement (*Regression Modeling Strategies*, 2nd ed., table 2.3)."""


def restricted_cubic_basis(x, knots):
    """The nonlinear terms of Harrell's restricted cubic spline of `x` at `knots`.

    Written by hand because scikit-learn's ``SplineTransformer`` builds B-splines without the
    linearity constraint beyond the outer knots, which lets a Cox model bend where few
    patients are, and no installed library gives the truncated-power form whose linear term
    is `x` itself (so that a field's terms sum back to one contribution).

    Parameters
    ----------
    x : ndarray, shape = (n_samples,)
        The column.
    knots : ndarray, shape = (n_knots,)
        Increasing knots, at least 3.

    Returns
    -------
    terms : ndarray, shape = (n_samples, n_knots - 2)
        Terms linear beyond the outer knots, scaled by the squared knot range.
    """
    t = np.asarray(knots, dtype=float)
    k = t.size
    scale = (t[-1] - t[0]) ** 2
    last, second_last = t[-1], t[-2]

    def cube(u):
        return np.maximum(u, 0.0) ** 3

    terms = [
        (
            cube(x - t[j])
            - cube(x - second_last) * (last - t[j]) / (last - second_last)
            + cube(x - last) * (second_last - t[j]) / (last - second_last)
        )
        / scale
        for j in range(k - 2)
    ]
    return np.column_stack(terms)


class RestrictedCubicSplines(TransformerMixin, BaseEstimator):
    """Appends restricted cubic spline terms of each continuous column to the design matrix.

    The output is the input's columns unchanged, followed by ``n_knots - 2`` nonlinear terms
    per continuous column, so a linear model on it is the linear model plus smooth bends
    that are linear beyond the outer knots; a column's contribution is the sum of its own
    coefficient's and its spline terms'. Knots are placed at Harrell's quantiles of the
    training values (duplicates removed); a column left with fewer than 3 distinct knots
    stays linear.

    Parameters
    ----------
    n_knots : {3, 4, 5}, default: 4
        Knots per continuous column.
    min_unique : int, default: 10
        A column is continuous when it holds at least this many distinct training values;
        indicator and few-level columns stay linear.

    Attributes
    ----------
    knots_ : dict of {int: ndarray}
        The knots of each splined column, by column index.
    source_columns_ : ndarray of int, shape = (n_output_features,)
        The input column each output column belongs to (for summing contributions back).
    """

    def __init__(self, *, n_knots=4, min_unique=10):
        self.n_knots = n_knots
        self.min_unique = min_unique

    def fit(self, X, y=None):
        """Place the knots of each continuous column of `X`."""
        if self.n_knots not in KNOT_QUANTILES:
            raise InvalidEstimatorParameter(
                f"`n_knots` must be one of {sorted(KNOT_QUANTILES)}, but got {self.n_knots!r}."
            )
        X = validate_data(self, X, reset=True, dtype=np.float64)
        self.knots_ = {}
        for j in range(X.shape[1]):
            column = X[:, j]
            if np.unique(column).size < self.min_unique:
                continue
            knots = np.unique(np.quantile(column, KNOT_QUANTILES[self.n_knots]))
            if knots.size >= 3:
                self.knots_[j] = knots
        sources = [np.arange(X.shape[1])]
        sources += [np.full(knots.size - 2, j) for j, knots in self.knots_.items()]
        self.source_columns_ = np.concatenate(sources).astype(int)
        return self

    def transform(self, X):
        """`X` with the spline terms of its continuous columns appended."""
        check_is_fitted(self, "knots_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        blocks = [X] + [restricted_cubic_basis(X[:, j], k) for j, k in self.knots_.items()]
        return np.hstack(blocks)
