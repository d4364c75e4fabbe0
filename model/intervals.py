"""Curve summaries and modality comparisons with delta-method intervals from Cox components."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from model.bundle import MONTH_GRID
from model.cox_inference import CoxCurves, cumulative_incidence
from model.modality import (
    HORIZONS_MONTHS,
    INTERVAL_LEVEL,
    NOT_REACHED,
    RMST_HORIZON_MONTHS,
    CurveSummary,
    ModalityComparison,
    median_months,
    rounded,
)

__all__ = ["IncidenceSummary", "analytic_comparison", "incidence_summary", "rmst_weights"]

_Z = float(stats.norm.ppf(0.5 + INTERVAL_LEVEL / 2.0))
_HORIZON_INDEX = np.searchsorted(MONTH_GRID, HORIZONS_MONTHS)
_CHUNK = 100
"""Patients per block of the incidence variance, whose arrays grow with n_times squared."""
INCIDENCE_STEP_MONTHS = 3
"""The incidence curve and its interval are reported every this many months: each reported
month costs one n_times-long gradient per patient."""
INCIDENCE_MONTHS = MONTH_GRID[::INCIDENCE_STEP_MONTHS]


def rmst_weights(months=MONTH_GRID, horizon=RMST_HORIZON_MONTHS) -> np.ndarray:
    """Trapezoid weights over `months` whose dot product with a curve is its RMST to `horizon`."""
    end = int(np.searchsorted(months, horizon)) + 1
    weights = np.zeros(len(months))
    steps = np.diff(months[:end])
    weights[: end - 1] += steps / 2.0
    weights[1:end] += steps / 2.0
    return weights


def _functional_weights() -> np.ndarray:
    """Survival at each horizon, then RMST: shape = (n_horizons + 1, n_times)."""
    indicators = np.zeros((len(HORIZONS_MONTHS), len(MONTH_GRID)))
    indicators[np.arange(len(HORIZONS_MONTHS)), _HORIZON_INDEX] = 1.0
    return np.vstack([indicators, rmst_weights()])


_WEIGHTS = _functional_weights()


def _median_bound(curve):
    return np.nan_to_num(median_months(curve), nan=NOT_REACHED)


def _analytic_summary(curves: CoxCurves, design) -> tuple[CurveSummary, np.ndarray]:
    """Delta-method summary of every modality's curve, and the variances of its functionals."""
    curve, lower, upper = curves.survival_interval(design, z=_Z)
    value, variance = curves.functional(design, _WEIGHTS)
    rmst, rmst_se = value[-1], np.sqrt(variance[-1])
    spread = np.exp(_Z * rmst_se / np.maximum(rmst, 1e-12))
    summary = CurveSummary(
        curve=curve,
        curve_lower=lower,
        curve_upper=upper,
        median=median_months(curve),
        median_lower=_median_bound(lower),
        median_upper=_median_bound(upper),
        at_horizons=curve[..., _HORIZON_INDEX],
        at_horizons_lower=lower[..., _HORIZON_INDEX],
        at_horizons_upper=upper[..., _HORIZON_INDEX],
        rmst=rmst,
        rmst_lower=rmst / spread,
        rmst_upper=np.minimum(rmst * spread, RMST_HORIZON_MONTHS),
        member_at_horizons=None,
        member_rmst=None,
    )
    return summary, variance


def analytic_comparison(curves: CoxCurves, design, planned) -> ModalityComparison:
    """Every modality's curve summary and its paired difference from the planned one.

    Survival (curve and horizons) has log-log intervals; the median's interval is where the
    interval's bounds cross one half (as ``survfit`` reads it); RMST has a log-scale interval;
    differences between modalities are paired and normal on the natural scale. All are
    delta-method intervals (:class:`model.cox_inference.CoxCurves`), so every one contains
    its point estimate by construction.

    Parameters
    ----------
    curves : CoxCurves
        The endpoint's Cox components.
    design : ndarray, shape = (n_modalities, n_patients, n_features)
        Each patient encoded under each modality, in :data:`model.schema.MODALITIES` order.
    planned : ndarray of int, shape = (n_patients,)
        Index of each patient's planned modality.

    Returns
    -------
    ModalityComparison
    """
    planned = np.asarray(planned, dtype=int)
    summary, variance = _analytic_summary(curves, design)
    reference = design[planned, np.arange(planned.size)]
    difference, difference_variance = curves.functional(
        design, _WEIGHTS, reference=np.broadcast_to(reference, design.shape)
    )
    half_width = _Z * np.sqrt(difference_variance)
    at = np.moveaxis(difference[:-1], 0, -1)
    at_lower, at_upper = _recovered_difference_interval(
        summary,
        planned,
        np.moveaxis(variance[:-1], 0, -1),
        np.moveaxis(difference_variance[:-1], 0, -1),
    )
    return ModalityComparison(
        summary,
        planned,
        at,
        at_lower,
        at_upper,
        difference[-1],
        np.clip(difference[-1] - half_width[-1], -RMST_HORIZON_MONTHS, RMST_HORIZON_MONTHS),
        np.clip(difference[-1] + half_width[-1], -RMST_HORIZON_MONTHS, RMST_HORIZON_MONTHS),
    )


def _recovered_difference_interval(summary, planned, variance, difference_variance):
    """Interval of survival under each modality minus under the planned one, by MOVER.

    The method of variance estimates recovery (Zou and Donner, Stat Med 2008; Newcombe 1998
    for proportions) builds the difference's interval from each survival's own log-log
    interval and their correlation, so it inherits their asymmetry near 0 and 1, where a
    symmetric normal interval of the difference is too short on one side. The correlation
    comes from the delta method: ``(v1 + v2 - v_diff) / (2 sqrt(v1 v2))``.

    Parameters
    ----------
    summary : CurveSummary
        Survival at the horizons with intervals, shape = (n_modalities, n_patients, n_horizons).
    planned : ndarray of int, shape = (n_patients,)
    variance, difference_variance : ndarray, shape = (n_modalities, n_patients, n_horizons)
        Delta-method variances of each survival and of its paired difference from the planned.
    """
    patients = np.arange(planned.size)
    value, lower, upper = summary.at_horizons, summary.at_horizons_lower, summary.at_horizons_upper
    ref_value, ref_lower, ref_upper = (x[planned, patients] for x in (value, lower, upper))
    ref_variance = variance[planned, patients]
    with np.errstate(divide="ignore", invalid="ignore"):
        correlation = (variance + ref_variance - difference_variance) / (
            2.0 * np.sqrt(variance * ref_variance)
        )
    correlation = np.clip(np.nan_to_num(correlation), -1.0, 1.0)
    difference = value - ref_value
    below = (
        (value - lower) ** 2
        + (ref_upper - ref_value) ** 2
        - 2.0 * correlation * (value - lower) * (ref_upper - ref_value)
    )
    above = (
        (upper - value) ** 2
        + (ref_value - ref_lower) ** 2
        - 2.0 * correlation * (upper - value) * (ref_value - ref_lower)
    )
    return (
        np.clip(difference - np.sqrt(np.maximum(below, 0.0)), -1.0, 1.0),
        np.clip(difference + np.sqrt(np.maximum(above, 0.0)), -1.0, 1.0),
    )


@dataclass
class IncidenceSummary:
    """Cumulative incidence of hepatic progression, death competing, with 95 % intervals.

    Attributes
    ----------
    at_horizons, at_horizons_lower, at_horizons_upper : ndarray
        shape = (n_modalities, n_patients, n_horizons): every modality at the horizons.
    curve, curve_lower, curve_upper : ndarray, shape = (n_patients, len(INCIDENCE_MONTHS))
        The planned modality's curve.
    """

    at_horizons: np.ndarray
    at_horizons_lower: np.ndarray
    at_horizons_upper: np.ndarray
    curve: np.ndarray
    curve_lower: np.ndarray
    curve_upper: np.ndarray

    def rounded(self, digits: int) -> tuple[list, list]:
        """(value, lower, upper) triples as nested lists, rounded once for a whole batch.

        Returns
        -------
        at_horizons : list, [modality][patient][horizon] -> [value, lower, upper]
        curve : list, [patient][month] -> [value, lower, upper]
        """
        at_horizons = np.stack(
            [self.at_horizons, self.at_horizons_lower, self.at_horizons_upper], axis=-1
        )
        curve = np.stack([self.curve, self.curve_lower, self.curve_upper], axis=-1)
        return rounded(at_horizons, digits), rounded(curve, digits)


def _incidence(cause, competing, design, at):
    flat = np.asarray(design, dtype=float).reshape(-1, design.shape[-1])
    blocks = [
        cumulative_incidence(cause, competing, flat[start : start + _CHUNK], z=_Z, at=at)
        for start in range(0, len(flat), _CHUNK)
    ]
    shape = (*design.shape[:-1], len(at))
    return [np.concatenate([b[i] for b in blocks]).reshape(shape) for i in range(3)]


def incidence_summary(curves: CoxCurves, design, planned) -> IncidenceSummary:
    """The cumulative incidence of the first component with the second competing.

    Parameters
    ----------
    curves : CoxCurves
        Exactly two components: the cause (hepatic progression) and the competing event (death
        before progression).
    design : ndarray, shape = (n_modalities, n_patients, n_features)
    planned : ndarray of int, shape = (n_patients,)

    Returns
    -------
    IncidenceSummary
    """
    cause, competing = curves.components
    planned_design = design[np.asarray(planned), np.arange(design.shape[1])]
    curve_at = np.searchsorted(MONTH_GRID, INCIDENCE_MONTHS)
    return IncidenceSummary(
        *_incidence(cause, competing, design, _HORIZON_INDEX),
        *_incidence(cause, competing, planned_design, curve_at),
    )
