"""What the Cox-type estimators share: input validation, survival functions and scoring."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import validate_data
from sksurv.base import SurvivalAnalysisMixin
from sksurv.metrics import concordance_index_censored
from sksurv.util import check_array_survival

from model.exceptions import InvalidSurvivalTarget, NonFiniteFeatures

__all__ = ["CoxEstimator"]

_MAX_NAMED_COLUMNS = 5


def _describe_non_finite(X, feature_names):
    """Build the message for a design matrix holding NaN or infinite values.

    Parameters
    ----------
    X : ndarray, shape = (n_samples, n_features)
        Design matrix already converted to float.

    feature_names : ndarray of str, shape = (n_features,), or None
        Column names, when `X` came from a DataFrame.

    Returns
    -------
    message : str
        What must hold, what was found and how to fix it.
    """
    n_nan = np.isnan(X).sum(axis=0)
    n_inf = np.isinf(X).sum(axis=0)
    bad = np.flatnonzero(n_nan + n_inf)
    names = [str(feature_names[j]) if feature_names is not None else f"column {j}" for j in bad]
    shown = names[:_MAX_NAMED_COLUMNS] + (["..."] if len(names) > _MAX_NAMED_COLUMNS else [])
    return (
        f"`X` must contain only finite numbers, but got {int(n_nan.sum())} NaN and "
        f"{int(n_inf.sum())} infinite value(s) in {len(bad)} column(s): {', '.join(shown)}. "
        "These estimators do not impute: impute or drop the missing values before calling them "
        "(find them with `pd.isnull(X).any()` or `np.isnan(X).any(axis=0)`)."
    )


class CoxEstimator(SurvivalAnalysisMixin, BaseEstimator):
    """Input validation and scoring shared by `PenalizedCox` and `BoostedCox`."""

    def _validate_features(self, X, *, reset):
        X = validate_data(
            self,
            X,
            reset=reset,
            dtype=np.float64,
            ensure_all_finite=False,
            ensure_min_samples=2 if reset else 1,
        )
        if not np.isfinite(X).all():
            raise NonFiniteFeatures(
                _describe_non_finite(X, getattr(self, "feature_names_in_", None))
            )
        return X

    def _validate_target(self, X, y, **kwargs):
        try:
            event, time = check_array_survival(X, y, **kwargs)
        except ValueError as error:
            raise InvalidSurvivalTarget(
                "`y` must be a structured array of (event: bool, time: float > 0) with one row "
                f"per row of `X`, but got: {error}. Build it with "
                "`sksurv.util.Surv.from_arrays(event, time)`."
            ) from error
        return event.astype(bool), time.astype(np.float64)

    def _step_functions(self, X, *, survival, return_array):
        """Breslow step functions of ``predict(X)`` on the fitted ``baseline_``."""
        risk_score = self.predict(X)
        if survival:
            return self._predict_survival_function(self.baseline_, risk_score, return_array)
        return self._predict_cumulative_hazard_function(self.baseline_, risk_score, return_array)

    def predict_cumulative_hazard_function(self, X, return_array=False):
        """Breslow cumulative hazard ``H_0(t) exp(predict(X))`` of each sample.

        Parameters
        ----------
        X : array-like or DataFrame, shape = (n_samples, n_features)
            Finite numeric design matrix with the training columns.

        return_array : bool, default: False
            Return values at ``unique_times_`` instead of step functions.

        Returns
        -------
        cum_hazard : ndarray, shape = (n_samples,) or (n_samples, n_unique_times)
            :class:`~sksurv.functions.StepFunction` per sample, or their values at
            ``unique_times_`` when `return_array` is True.
        """
        return self._step_functions(X, survival=False, return_array=return_array)

    def predict_survival_function(self, X, return_array=False):
        """Breslow survival function ``S_0(t) ** exp(predict(X))`` of each sample.

        Parameters
        ----------
        X : array-like or DataFrame, shape = (n_samples, n_features)
            Finite numeric design matrix with the training columns.

        return_array : bool, default: False
            Return values at ``unique_times_`` instead of step functions.

        Returns
        -------
        survival : ndarray, shape = (n_samples,) or (n_samples, n_unique_times)
            :class:`~sksurv.functions.StepFunction` per sample, or their values at
            ``unique_times_`` when `return_array` is True.
        """
        return self._step_functions(X, survival=True, return_array=return_array)

    def score(self, X, y):
        """Harrell's concordance index of :meth:`predict` against the observed outcomes.

        Parameters
        ----------
        X : array-like, shape = (n_samples, n_features)
            Test samples.

        y : structured array, shape = (n_samples,)
            Event indicator as first field, time of event or censoring as second.

        Returns
        -------
        cindex : float
            Harrell's C from :func:`sksurv.metrics.concordance_index_censored`.
        """
        risk_score = self.predict(X)
        event, time = self._validate_target(risk_score[:, np.newaxis], y)
        return concordance_index_censored(event, time, risk_score)[0]
