"""Comparators of the fitted models: the published Table 1 Cox model and the generator's truth."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sksurv.base import SurvivalAnalysisMixin
from sksurv.linear_model.coxph import BreslowEstimator

from model.schema import FEATURE_NAMES, TRUTH_PREFIX, encode
from training.evaluate.common import DECISION_HORIZON, _outcomes
from training.exceptions import MissingTruthError
from training.synthetic import CohortSpec, true_cumulative_hazard, true_hpfs_survival, true_survival

PUBLISHED_SOURCE_PREFIX = "table1_004"


def _published_hazard_ratios(endpoint: str, spec: CohortSpec | None) -> pd.Series:
    """Table 1 hazard ratios by design column; NaN where the spec does not source one from it."""
    spec = spec or CohortSpec.load()
    ratios = spec.raw["hazards"][endpoint]["hazard_ratios"]
    return pd.Series(
        {
            name: float(ratios[name]["value"])
            if str(ratios[name].get("source", "")).startswith(PUBLISHED_SOURCE_PREFIX)
            else math.nan
            for name in FEATURE_NAMES
        }
    )


def published_log_hazard_ratios(endpoint: str, spec: CohortSpec | None = None) -> pd.Series:
    """Log hazard ratios of the 004 abstract's multivariate Table 1, indexed by FEATURE_NAMES.

    Coefficients whose spec entry is not sourced from that table (age: no published HR) are 0.
    """
    return np.log(_published_hazard_ratios(endpoint, spec)).fillna(0.0)


def published_model_risk(
    frame: pd.DataFrame, endpoint: str, spec: CohortSpec | None = None
) -> np.ndarray:
    """Linear predictor of the published model, ``encode(frame) @ log HR``, shape = (n_samples,)."""
    return encode(frame).to_numpy() @ published_log_hazard_ratios(endpoint, spec).to_numpy()


class PublishedCox(SurvivalAnalysisMixin, BaseEstimator):
    """The transparent comparator: Table 1 of the 004 abstract as a fixed-coefficient Cox model.

    Only the baseline hazard is estimated (Breslow, on the training outcomes); the
    coefficients are the published multivariate log hazard ratios.

    Parameters
    ----------
    endpoint : {"hpfs", "os"}
    spec : CohortSpec, optional
        Where the published hazard ratios are read from; default `data/cohort_spec.yaml`.

    Attributes
    ----------
    coef_ : Series, shape = (n_features,)
        Log hazard ratios by design-matrix column.
    baseline_model_ : BreslowEstimator
    unique_times_ : ndarray, shape = (n_unique_times,)
    """

    def __init__(self, *, endpoint: str = "os", spec: CohortSpec | None = None):
        self.endpoint = endpoint
        self.spec = spec

    def fit(self, X: pd.DataFrame, y) -> PublishedCox:
        """Fit the Breslow baseline on the fixed linear predictor.

        Parameters
        ----------
        X : DataFrame, shape = (n_samples, n_fields)
            Patient fields with the received `modality` (not a design matrix).
        y : structured array, shape = (n_samples,)
        """
        event, time = _outcomes(y, "y")
        self.coef_ = published_log_hazard_ratios(self.endpoint, self.spec)
        self.baseline_model_ = BreslowEstimator().fit(self.predict(X), event, time)
        return self

    @property
    def unique_times_(self) -> np.ndarray:
        return self.baseline_model_.unique_times_

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Log relative hazard, shape = (n_samples,)."""
        return encode(X).to_numpy() @ self.coef_.to_numpy()

    def predict_survival_function(self, X: pd.DataFrame, return_array: bool = False):
        """Survival ``S_0(t) ** exp(predict(X))``, at `unique_times_` if `return_array`."""
        return self._predict_survival_function(self.baseline_model_, self.predict(X), return_array)

    def survival_at(self, X: pd.DataFrame, times) -> np.ndarray:
        """Survival at `times`, shape = (n_samples, n_times): the values of
        :func:`~training.evaluate.survival_on_grid` on :meth:`predict_survival_function`
        (times clipped to the baseline's domain), as one power of the baseline at `times`
        rather than one step function per patient."""
        baseline = self.baseline_model_.baseline_survival_
        low, high = baseline.domain
        at_times = baseline(np.clip(np.asarray(times, dtype=float), low, high))
        return np.power(at_times[None, :], np.exp(self.predict(X))[:, None])

    def predict_cumulative_hazard_function(self, X: pd.DataFrame, return_array: bool = False):
        """Cumulative hazard ``H_0(t) exp(predict(X))``, at `unique_times_` if `return_array`."""
        return self._predict_cumulative_hazard_function(
            self.baseline_model_, self.predict(X), return_array
        )


def _truth_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame:
        raise MissingTruthError(
            f"the oracle needs the generator's column {name!r}, but the cohort has no such column: "
            "oracle quantities exist only for cohorts made by `netprog simulate` "
            "(training.synthetic.simulate_cohort)"
        )
    return frame[name].to_numpy(dtype=float)


def oracle_risk(frame: pd.DataFrame, endpoint: str, spec: CohortSpec | None = None) -> np.ndarray:
    """The generator's true risk score (higher = riskier), shape = (n_samples,).

    For OS, the true log relative hazard of death (`true_lp_os`). HPFS ends at progression or
    death, and the sum of two proportional hazards is not proportional, so no single log
    relative hazard orders it at every time: its risk is the log of the true composite
    cumulative hazard at :data:`DECISION_HORIZON` months, ``log(H_progression + H_death)``,
    which orders patients exactly as their true HPFS survival there does.
    """
    if endpoint != "hpfs":
        return _truth_column(frame, f"{TRUTH_PREFIX}lp_{endpoint}")
    spec = spec or CohortSpec.load()
    horizon = [DECISION_HORIZON]
    progression = _truth_column(frame, f"{TRUTH_PREFIX}lp_hpfs")
    death = _truth_column(frame, f"{TRUTH_PREFIX}lp_os")
    cumulative = true_cumulative_hazard(progression, horizon, "hpfs", spec)
    return np.log(cumulative + true_cumulative_hazard(death, horizon, "os", spec))[:, 0]


def oracle_survival(
    frame: pd.DataFrame, endpoint: str, times, spec: CohortSpec | None = None
) -> np.ndarray:
    """The generator's true survival at `times`, shape = (n_samples, n_times).

    HPFS is the composite survival (progression or death, whichever first) from the
    cause-specific `true_lp_hpfs` and `true_lp_os`; OS the Cox model's from `true_lp_os`.
    """
    spec = spec or CohortSpec.load()
    if endpoint == "hpfs":
        progression = _truth_column(frame, f"{TRUTH_PREFIX}lp_hpfs")
        death = _truth_column(frame, f"{TRUTH_PREFIX}lp_os")
        return true_hpfs_survival(progression, death, times, spec)
    log_hazard = _truth_column(frame, f"{TRUTH_PREFIX}lp_{endpoint}")
    return true_survival(log_hazard, times, endpoint, spec)
