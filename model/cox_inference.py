"""Delta-method intervals for Cox-model predictions: survival, RMST, differences, incidence.

A Cox model's prediction for a patient with covariates ``x`` is
``S(t | x) = exp(-H0(t) exp(x'beta))``. Its sampling error has two asymptotically independent
parts (Andersen and Gill 1982; Tsiatis 1981): the error of ``beta`` (covariance ``V``, the
inverse information) and the martingale error of the Breslow increments, whose variance
accumulates as ``sum d_i / S0(t_i)**2``; the Breslow estimator also moves with ``beta`` through
``dH0/dbeta = -A(t) = -sum d_i S1(t_i) / S0(t_i)**2``. Every prediction here is a smooth function
of those errors, so its variance follows by the delta method; R's ``survfit.coxph`` computes the
same variance for one curve. The survival curve and survival at the horizons get intervals on
the log cumulative hazard (log-log) scale, so they stay inside (0, 1) and always contain their
point estimate; RMST on the log scale; differences between modalities on the natural scale,
paired (both modalities share ``beta`` and the baseline, and the shared error cancels).

Written by hand because no maintained Python library exposes the covariance of predicted Cox
survival curves for new patients (lifelines and scikit-survival give point predictions only).
The same pieces give the cumulative incidence of one cause with another competing, from two
cause-specific Cox models (Cheng, Fine and Wei 1998, grid approximation below).

References
----------
Tsiatis AA. A large sample study of Cox's regression model. Ann Stat. 1981;9(1):93-108.
Lin DY, Fleming TR, Wei LJ. Confidence bands for survival curves under the proportional
hazards model. Biometrika. 1994;81(1):73-81.
Cheng SC, Fine JP, Wei LJ. Prediction of cumulative incidence function under the proportional
hazards model. Biometrics. 1998;54(1):219-28.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "BreslowInference",
    "CoxCurves",
    "CoxDeltaMethod",
    "cumulative_incidence",
    "fit_breslow_inference",
    "cox_log_likelihood",
    "fit_cox_coefficients",
    "hazards_from_draws",
]

_Z = float(stats.norm.ppf(0.975))
_TINY = 1e-300


@dataclass(frozen=True)
class BreslowInference:
    """A fitted Cox model reduced to what predictions and their delta-method variance need.

    Attributes
    ----------
    coef : ndarray, shape = (n_features,)
        Log hazard ratios; zero for features the model left out.
    covariance : ndarray, shape = (n_features, n_features)
        Covariance of `coef` (inverse information); zero rows and columns for features left out.
    grid : ndarray, shape = (n_times,)
        Increasing times at which the cumulative quantities below are given.
    cumulative_hazard : ndarray, shape = (n_times,)
        Breslow baseline cumulative hazard ``H0(t)`` at ``x = 0``.
    hazard_variance : ndarray, shape = (n_times,)
        ``sum_{t_i <= t} d_i / S0(t_i) ** 2``, the martingale variance of ``H0(t)``.
    hazard_mean : ndarray, shape = (n_times, n_features)
        ``A(t) = sum_{t_i <= t} d_i S1(t_i) / S0(t_i) ** 2``.
    """

    coef: np.ndarray
    covariance: np.ndarray
    grid: np.ndarray
    cumulative_hazard: np.ndarray
    hazard_variance: np.ndarray
    hazard_mean: np.ndarray


def _risk_set_sums(X, event, time, coef, shift=0.0, offset=0.0):
    """Risk-set sums at the distinct event times, ascending, risks ``exp(X b + offset - shift)``."""
    risk = np.exp(X @ coef + offset - shift)
    order = np.argsort(-time, kind="mergesort")
    descending_time = time[order]
    s0 = np.cumsum(risk[order])
    s1 = np.cumsum(X[order] * risk[order, None], axis=0)
    # Tied subjects share the risk set up to the last of their tie group in descending order.
    last_of_tie = np.searchsorted(-descending_time, -descending_time, side="right") - 1
    event_times, deaths = np.unique(time[event], return_counts=True)
    at = last_of_tie[np.searchsorted(-descending_time, -event_times, side="left")]
    return event_times, deaths.astype(float), s0[at], s1[at], risk


def fit_cox_coefficients(X, event, time, *, ridge=0.0, offset=None, max_iter=100, tol=1e-9):
    """Maximum (ridge-stabilised) Breslow partial likelihood coefficients by Newton-Raphson.

    Written by hand because scikit-survival's ``CoxPHSurvivalAnalysis`` overflows on cohorts
    where a covariate level has no events (its coefficient runs off to infinity) and exposes no
    information matrix; step halving on the penalised likelihood and a small `ridge` keep every
    coefficient finite. Neither it nor lifelines takes an offset, which model updating needs
    (the original linear predictor held fixed, van Houwelingen 2000).

    Parameters
    ----------
    X : ndarray, shape = (n_samples, n_features)
        Design matrix.
    event : ndarray of bool, shape = (n_samples,)
        Whether the event was observed.
    time : ndarray, shape = (n_samples,)
        Time of event or censoring.
    ridge : float or ndarray, shape = (n_features,)
        L2 penalty ``0.5 * sum(ridge * beta ** 2)`` subtracted from the log partial likelihood;
        per coefficient when an array (0 leaves a coefficient unpenalised).
    offset : ndarray, shape = (n_samples,), optional
        A fixed part of each linear predictor (coefficient 1, not estimated).

    Returns
    -------
    coef : ndarray, shape = (n_features,)
    """
    X = np.asarray(X, dtype=float)
    event = np.asarray(event, dtype=bool)
    time = np.asarray(time, dtype=float)
    offset = np.zeros(len(time)) if offset is None else np.asarray(offset, dtype=float)
    ridge = np.broadcast_to(np.asarray(ridge, dtype=float), (X.shape[1],))
    coef = np.zeros(X.shape[1])
    if not event.any() or X.shape[1] == 0:
        return coef

    def objective(beta):
        value, gradient, _ = cox_log_likelihood(X, event, time, beta, offset, information=False)
        return value - 0.5 * ridge @ beta**2, gradient - ridge * beta

    value, gradient = objective(coef)
    for _ in range(max_iter):
        information = _information(X, event, time, coef, offset) + np.diag(ridge)
        if not np.isfinite(information).all():
            break
        step = np.linalg.lstsq(information, gradient, rcond=None)[0]
        for _ in range(30):
            candidate = coef + step
            new_value, new_gradient = objective(candidate)
            if new_value >= value - 1e-12:
                break
            step = step / 2.0
        if not np.isfinite(new_value):  # separation outran the ridge: keep the last finite one
            break
        converged = abs(new_value - value) < tol * (1.0 + abs(value))
        coef, value, gradient = candidate, new_value, new_gradient
        if converged:
            break
    return coef


def cox_log_likelihood(X, event, time, coef, offset=None, *, information=True):
    """Breslow log partial likelihood, its gradient and (optionally) its observed information.

    Parameters
    ----------
    X : ndarray, shape = (n_samples, n_features)
    event : ndarray of bool, shape = (n_samples,)
    time : ndarray, shape = (n_samples,)
    coef : ndarray, shape = (n_features,)
    offset : ndarray, shape = (n_samples,), optional
        Fixed part of the linear predictor.

    Returns
    -------
    value : float
    gradient : ndarray, shape = (n_features,)
    information : ndarray, shape = (n_features, n_features), or None
    """
    X = np.asarray(X, dtype=float)
    event = np.asarray(event, dtype=bool)
    time = np.asarray(time, dtype=float)
    coef = np.asarray(coef, dtype=float)
    offset = np.zeros(len(time)) if offset is None else np.asarray(offset, dtype=float)
    if not event.any():
        return 0.0, np.zeros(coef.size), np.zeros((coef.size, coef.size))
    linear = X @ coef + offset
    shift = linear.max()
    _, deaths, s0, s1, _ = _risk_set_sums(X, event, time, coef, shift, offset)
    value = float(linear[event].sum() - deaths @ (np.log(s0) + shift))
    gradient = X[event].sum(axis=0) - deaths @ (s1 / s0[:, None])
    info = _information(X, event, time, coef, offset) if information else None
    return value, gradient, info


def _information(X, event, time, coef, offset=0.0):
    """Observed information of the Breslow partial likelihood at `coef`."""
    shift = (X @ coef + offset).max()
    event_times, deaths, s0, s1, risk = _risk_set_sums(X, event, time, coef, shift, offset)
    # sum over events of S2/S0 equals sum_j x_j x_j' r_j H0(t_j) (each subject's share of every
    # risk set it was in), which avoids a (n_times, p, p) array.
    cumulative = np.cumsum(deaths / s0)
    at_subject = np.searchsorted(event_times, time, side="right") - 1
    subject_hazard = np.where(at_subject >= 0, cumulative[np.maximum(at_subject, 0)], 0.0)
    means = s1 / s0[:, None]
    return X.T @ (X * (risk * subject_hazard)[:, None]) - (means * deaths[:, None]).T @ means


def fit_breslow_inference(
    X, event, time, coef, grid, *, ridge=0.0, selected=None
) -> BreslowInference:
    """Breslow baseline, its variance terms and the coefficients' covariance on `grid`.

    Parameters
    ----------
    X : ndarray, shape = (n_samples, n_features)
        Design matrix the model was fitted on.
    event : ndarray of bool, shape = (n_samples,)
        Whether the event was observed.
    time : ndarray, shape = (n_samples,)
        Time of event or censoring.
    coef : ndarray, shape = (n_features,)
        Fitted log hazard ratios.
    grid : ndarray, shape = (n_times,)
        Times at which to report the cumulative quantities.
    ridge : float
        L2 penalty the coefficients were fitted with (``0.5 * ridge * |beta|^2``), added to the
        information so that the covariance matches the fitted objective.
    selected : ndarray of bool, shape = (n_features,), optional
        Features in the model; the others (zero coefficient, no variance) were left out.
        Default: the non-zero coefficients.

    Returns
    -------
    BreslowInference
    """
    X = np.asarray(X, dtype=float)
    event = np.asarray(event, dtype=bool)
    time = np.asarray(time, dtype=float)
    coef = np.asarray(coef, dtype=float)
    selected = coef != 0 if selected is None else np.asarray(selected, dtype=bool)
    event_times, deaths, s0, s1, _ = _risk_set_sums(X, event, time, coef)
    increments = deaths / s0
    means = s1 / s0[:, None]
    information = _information(X, event, time, coef)
    covariance = np.zeros((X.shape[1], X.shape[1]))
    block = information[np.ix_(selected, selected)] + ridge * np.eye(int(selected.sum()))
    covariance[np.ix_(selected, selected)] = np.linalg.pinv(block)
    grid = np.asarray(grid, dtype=float)
    # Row 0 stands for "before the first event", so a grid time before it reads zeros.
    on_grid = np.searchsorted(event_times, grid, side="right")
    mean = np.cumsum(means * increments[:, None], axis=0)
    return BreslowInference(
        coef=coef,
        covariance=covariance,
        grid=grid,
        cumulative_hazard=np.concatenate([[0.0], np.cumsum(increments)])[on_grid],
        hazard_variance=np.concatenate([[0.0], np.cumsum(deaths / s0**2)])[on_grid],
        hazard_mean=np.vstack([np.zeros((1, X.shape[1])), mean])[on_grid],
    )


class CoxDeltaMethod:
    """One Cox model's predictions and the pieces of their delta-method variance, on its grid.

    Parameters
    ----------
    inference : BreslowInference
        The fitted model's coefficients, covariance and baseline terms.
    """

    def __init__(self, inference: BreslowInference):
        self.coef = inference.coef
        self.covariance = inference.covariance
        self.baseline = inference.cumulative_hazard
        self.baseline_variance = inference.hazard_variance
        self.mean = inference.hazard_mean
        self.baseline_increments = np.diff(self.baseline, prepend=0.0)
        self.variance_increments = np.diff(self.baseline_variance, prepend=0.0)
        self.mean_increments = np.diff(self.mean, axis=0, prepend=np.zeros((1, self.coef.size)))
        self._mean_covariance = self.mean @ self.covariance
        self._mean_quadratic = np.einsum("tp,tp->t", self._mean_covariance, self.mean)
        self._covariance_factor = _psd_factor(self.covariance)

    def cumulative_hazard(self, design):
        """``H(t | x)`` on the grid, shape = (..., n_times)."""
        return np.exp(np.asarray(design, dtype=float) @ self.coef)[..., None] * self.baseline

    def cumulative_hazard_variance(self, design):
        """Delta-method variance of ``H(t | x)``, shape = (..., n_times).

        ``r^2 [hazard_variance(t) + D(t)' V D(t)]`` with ``r = exp(x'beta)`` and
        ``D(t) = x H0(t) - A(t)``, expanded so that no (..., n_times, p) array is formed.
        """
        design = np.asarray(design, dtype=float)
        risk = np.exp(design @ self.coef)[..., None]
        quadratic = np.einsum("...p,pq,...q->...", design, self.covariance, design)
        cross = design @ self._mean_covariance.T
        variance = (
            self.baseline_variance
            + quadratic[..., None] * self.baseline**2
            - 2.0 * cross * self.baseline
            + self._mean_quadratic
        )
        return risk**2 * np.maximum(variance, 0.0)

    def sensitivities(self, design, weighted_survival):
        """How ``sum_t w_t S(t | x)`` moves with this model's errors.

        ``dL = sum_k a_k e_k + b' dbeta``, with ``e_k`` the martingale error of the baseline
        increment at grid step k and ``dbeta`` the coefficient error.

        Parameters
        ----------
        design : ndarray, shape = (..., n_features)
            Patients.
        weighted_survival : ndarray, shape = (n_functionals, ..., n_support)
            ``w_t S(t | x)`` on the first ``n_support`` grid times (the weights are zero
            beyond), S being the survival the functional is taken of (which may have other
            models' hazards added in).

        Returns
        -------
        a : ndarray, shape = (n_functionals, ..., n_support)
        b : ndarray, shape = (n_functionals, ..., n_features)
        """
        design = np.asarray(design, dtype=float)
        support = weighted_survival.shape[-1]
        weighted = weighted_survival * np.exp(design @ self.coef)[..., None]
        a = -np.flip(np.cumsum(np.flip(weighted, -1), -1), -1)
        flat = weighted.reshape(-1, support)
        at_baseline = (flat @ self.baseline[:support]).reshape(weighted.shape[:-1])
        at_mean = (flat @ self.mean[:support]).reshape(*weighted.shape[:-1], -1)
        return a, -(design * at_baseline[..., None] - at_mean)

    def variance(self, a, b):
        """Delta-method variance of a functional from its :meth:`sensitivities`."""
        baseline_part = (a**2) @ self.variance_increments[: a.shape[-1]]
        coef_part = ((b @ self.covariance) * b).sum(-1)
        return baseline_part + coef_part

    def draw_cumulative_hazards(self, design, n_draws, rng):
        """Draws of ``H(t | x)`` from the estimate's asymptotic normal distribution.

        Lin, Fleming and Wei's (1994) resampling, Gaussian on the two error sources, for
        quantities without a closed-form variance (conditional survival).

        Returns
        -------
        ndarray, shape = (n_draws, ..., n_times)
        """
        return hazards_from_draws(design, *self.draw_errors(n_draws, rng))

    def draw_errors(self, n_draws, rng):
        """The random part of :meth:`draw_cumulative_hazards`, which no patient changes.

        Returns
        -------
        coefs : ndarray, shape = (n_draws, n_features)
            Drawn coefficients.
        baselines : ndarray, shape = (n_draws, n_times)
            Drawn baseline cumulative hazards, non-negative and non-decreasing.
        """
        coef_error = rng.standard_normal((n_draws, self.coef.size)) @ self._covariance_factor.T
        baseline_error = np.cumsum(
            rng.standard_normal((n_draws, self.baseline.size)) * np.sqrt(self.variance_increments),
            axis=1,
        )
        baselines = self.baseline + baseline_error - coef_error @ self.mean.T
        baselines = np.maximum.accumulate(np.maximum(baselines, 0.0), axis=1)
        return coef_error + self.coef, baselines


def hazards_from_draws(design, coefs, baselines):
    """``H(t | x)`` for each drawn (coefficients, baseline) pair.

    Returns
    -------
    ndarray, shape = (n_draws, ..., n_times)
    """
    design = np.asarray(design, dtype=float)
    risk = np.exp(np.tensordot(coefs, design, axes=([1], [-1])))
    return risk[..., None] * baselines.reshape(len(baselines), *([1] * (design.ndim - 1)), -1)


def _psd_factor(covariance):
    """``L`` with ``L L' = covariance`` for a positive semi-definite matrix."""
    values, vectors = np.linalg.eigh(covariance)
    return vectors * np.sqrt(np.clip(values, 0.0, None))


class CoxCurves:
    """Survival whose cumulative hazard is the sum of independent Cox models' hazards.

    One component is an ordinary Cox model (overall survival). Two cause-specific components,
    hepatic progression and death before it, give progression-free survival
    ``exp(-(H_progression + H_death))``, the conventional composite, without assuming that
    the composite itself has proportional hazards; the same pair gives the cumulative
    incidence of progression (:func:`cumulative_incidence`). Cause-specific estimates are
    asymptotically independent, so their delta-method variances add.

    Parameters
    ----------
    components : sequence of BreslowInference
        The fitted components, on one grid.
    """

    def __init__(self, components):
        self.components = [CoxDeltaMethod(c) for c in components]
        self.grid = components[0].grid
        self._seeded: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}

    def survival(self, design):
        """Survival on the grid, shape = (..., n_times)."""
        return np.exp(-sum(c.cumulative_hazard(design) for c in self.components))

    def survival_interval(self, design, z=_Z):
        """Survival and its pointwise log-log interval, each of shape (..., n_times).

        The interval is ``exp(-H exp(+-z se(log H)))``: inside (0, 1) and around the estimate
        by construction.
        """
        cumulative = sum(c.cumulative_hazard(design) for c in self.components)
        variance = sum(c.cumulative_hazard_variance(design) for c in self.components)
        with np.errstate(divide="ignore", invalid="ignore"):
            relative_se = np.where(cumulative > 0, np.sqrt(variance) / cumulative, 0.0)
        spread = np.exp(z * relative_se)
        return np.exp(-cumulative), np.exp(-cumulative * spread), np.exp(-cumulative / spread)

    def functional(self, design, weights, reference=None):
        """``L = sum_t w_t S(t | x)`` (minus the same for `reference`) and its variance.

        Parameters
        ----------
        design : ndarray, shape = (..., n_features)
            Patients (under one modality each).
        weights : ndarray, shape = (n_functionals, n_times)
            One weight vector per functional: an indicator for survival at a month,
            trapezoid weights for the restricted mean.
        reference : ndarray, shape = (..., n_features), optional
            The same patients under another modality: the result is then the paired
            difference ``L(design) - L(reference)``, whose shared errors cancel.

        Returns
        -------
        value, variance : ndarray, shape = (n_functionals, ...)
        """
        weights = np.asarray(weights, dtype=float)
        # Sensitivities need only the times up to the last non-zero weight.
        support = int(np.flatnonzero(weights.any(axis=0)).max()) + 1
        design = np.asarray(design, dtype=float)
        shape = (weights.shape[0], *([1] * (design.ndim - 1)), support)
        weights = weights[:, :support].reshape(shape)
        survival = weights * self.survival(design)[..., :support]
        value = survival.sum(-1)
        if reference is not None:
            reference_survival = weights * self.survival(reference)[..., :support]
            value = value - reference_survival.sum(-1)
        variance = 0.0
        for component in self.components:
            a, b = component.sensitivities(design, survival)
            if reference is not None:
                a_ref, b_ref = component.sensitivities(reference, reference_survival)
                a, b = a - a_ref, b - b_ref
            variance = variance + component.variance(a, b)
        return value, variance

    def draw_survival(self, design, n_draws, rng):
        """Survival curves drawn from the estimate's asymptotic distribution.

        Returns
        -------
        ndarray, shape = (n_draws, ..., n_times)
        """
        return np.exp(
            -sum(c.draw_cumulative_hazards(design, n_draws, rng) for c in self.components)
        )

    def draw_survival_seeded(self, design, n_draws, seed):
        """`draw_survival` with ``np.random.default_rng(seed)``, the same curves, but the random
        part (a few MB, a few tens of ms) drawn once per `(n_draws, seed)` and kept: only the
        patient's risk is computed per call (conditional survival on the request path)."""
        key = (n_draws, seed)
        draws = self._seeded.get(key)
        if draws is None:
            rng = np.random.default_rng(seed)
            draws = [c.draw_errors(n_draws, rng) for c in self.components]
            self._seeded[key] = draws
        return np.exp(-sum(hazards_from_draws(design, *d) for d in draws))


def cumulative_incidence(cause: CoxDeltaMethod, competing: CoxDeltaMethod, design, z=_Z, at=None):
    """Cumulative incidence of `cause` with `competing` as a competing event, with its interval.

    Both cause-specific hazards are taken as constant within each grid step, so that step k
    contributes ``S(t_{k-1}) * a_k / (a_k + b_k) * (1 - exp(-(a_k + b_k)))`` with ``a_k`` and
    ``b_k`` the two cumulative-hazard increments; on a monthly grid this differs from the
    continuous-time integral by far less than the sampling error. The variance is the delta
    method over both models' errors, which are asymptotically independent (their score
    processes are orthogonal martingales); the interval is on the ``log(-log(1 - F))`` scale.

    Parameters
    ----------
    cause, competing : CoxDeltaMethod
        Cause-specific Cox models on the same grid.
    design : ndarray, shape = (..., n_features)
        Patients.
    at : ndarray of int, optional
        Grid indices to report (all by default): the variance costs n_times x len(at) per
        patient.

    Returns
    -------
    incidence, lower, upper : ndarray, shape = (..., len(at))
    """
    design = np.asarray(design, dtype=float)
    risk_cause = np.exp(design @ cause.coef)[..., None]
    risk_competing = np.exp(design @ competing.coef)[..., None]
    step_cause = risk_cause * cause.baseline_increments
    step_competing = risk_competing * competing.baseline_increments
    step_total = step_cause + step_competing
    survival_before = np.exp(-(np.cumsum(step_total, -1) - step_total))
    leaving = -np.expm1(-step_total)
    staying = 1.0 - leaving
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(step_total > 0, step_cause / step_total, 0.0)
        per_total = np.where(step_total > 0, leaving / step_total, 1.0)
    contribution = survival_before * share * leaving
    incidence = np.cumsum(contribution, -1)
    at = np.arange(incidence.shape[-1]) if at is None else np.asarray(at)
    # d contribution_j / d step: the step's own share of leaving, and every later step's loss of
    # survival (the incidence still to come, F(t) - F(t_j), falls by that much per unit hazard).
    own_cause = survival_before * (share * staying + (1.0 - share) * per_total)
    own_competing = survival_before * share * (staying - per_total)
    later = incidence[..., None, at] - incidence[..., :, None]  # [..., j, t] = F(t) - F(t_j)
    mask = np.arange(incidence.shape[-1])[:, None] <= at[None, :]
    incidence = incidence[..., at]
    gradient_cause = np.where(mask, own_cause[..., :, None] - later, 0.0)
    gradient_competing = np.where(mask, own_competing[..., :, None] - later, 0.0)
    variance = _incidence_variance(cause, gradient_cause, risk_cause, design) + (
        _incidence_variance(competing, gradient_competing, risk_competing, design)
    )
    se = np.sqrt(np.maximum(variance, 0.0))
    complement = np.clip(1.0 - incidence, _TINY, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        transformed = np.log(-np.log(complement))
        transformed_se = se / (complement * -np.log(complement))
        lower = -np.expm1(-np.exp(transformed - z * transformed_se))
        upper = -np.expm1(-np.exp(transformed + z * transformed_se))
    positive = incidence > 0
    return incidence, np.where(positive, lower, 0.0), np.where(positive, upper, 0.0)


def _incidence_variance(model: CoxDeltaMethod, gradient, risk, design):
    """Variance contribution of one cause-specific model; `gradient` is [..., step j, time t]."""
    scaled = gradient * risk[..., None]
    baseline_part = model.variance_increments @ scaled**2
    at_baseline = model.baseline_increments @ scaled
    b = design[..., None, :] * at_baseline[..., None] - (
        np.swapaxes(scaled, -1, -2) @ model.mean_increments
    )
    coef_part = ((b @ model.covariance) * b).sum(-1)
    return baseline_part + coef_part
