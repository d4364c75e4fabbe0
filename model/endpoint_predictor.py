"""One endpoint's prediction arrays: ensemble pass, check model and conditional survival."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from model.bundle import MONTH_GRID, EndpointModel, ModelBundle, is_linear
from model.cox_inference import CoxCurves
from model.exceptions import ConditionalSurvivalUndefined, ModelError
from model.explain import Explainer
from model.intervals import analytic_comparison, incidence_summary
from model.modality import (
    HORIZONS_MONTHS,
    MONTH_DIGITS,
    SURVIVAL_DIGITS,
    ModalityComparison,
    RoundedComparison,
    compare_modalities,
    curve_records,
    interval_dict,
    median_dict,
    median_months,
    median_with_interval,
    percentile_interval,
    summarise_curves,
)

DISAGREEMENT_RATIO = 1.5
"""The primary and check models disagree when one median exceeds the other by this factor."""

CONDITIONAL_MIN_SURVIVAL = 1e-3
"""Conditional survival S(t)/S(s) is refused where the curve gives S(s) below this."""

ENDPOINT_EVENTS = {"hpfs": "hepatic progression or death", "os": "death"}

CONDITIONAL_DRAWS = 2000
"""Draws from the delta-method distribution for conditional survival's intervals."""

GRID_MONTHS = [int(m) for m in MONTH_GRID]
"""The monthly grid as whole months, the curves' `month` labels."""
_TIE = 1e-9


class Ensemble:
    """One endpoint model's full fit and members, reduced to arrays for fast prediction.

    Parameters
    ----------
    model : EndpointModel
        The fitted family (its full-data fit and bootstrap members).
    """

    def __init__(self, model: EndpointModel):
        self.name = model.name
        self.full = model.full
        self.training_log_hazard = np.sort(np.asarray(model.training_log_hazard, dtype=float))
        self.baseline = np.asarray(model.full.baseline_cumulative_hazard, dtype=float)
        members = model.members or [model.full]
        self.n_members = len(model.members)
        self.member_baselines = np.stack([m.baseline_cumulative_hazard for m in members])
        self.linear = all(is_linear(m) for m in members)
        if self.linear:
            self.member_coefs = np.column_stack([m.coef for m in members if m.coef is not None])
            self.member_intercepts = np.array([m.intercept for m in members])
        else:
            self.members = members

    def log_hazard(self, design):
        """Full-data log relative hazard, shape = (n_samples,)."""
        return np.asarray(self.full.log_hazard(design), dtype=float)

    def survival(self, design):
        """Full-data survival on the month grid, shape = (n_samples, n_times)."""
        return np.exp(-np.exp(self.log_hazard(design))[:, None] * self.baseline)

    def member_survival(self, design):
        """Survival of every member, shape = (n_members, n_samples, n_times)."""
        if self.linear:
            log_hazard = (design @ self.member_coefs + self.member_intercepts).T
        else:
            # One DMatrix for all boosted members: building it costs more than a prediction,
            # and inplace_predict's per-call overhead measured 4x that of predict on a DMatrix.
            matrix = xgb.DMatrix(design, nthread=1)
            log_hazard = np.stack(
                [
                    m.log_hazard(design)
                    if is_linear(m)
                    else m.estimator.booster_.predict(matrix, output_margin=True).astype(float)
                    for m in self.members
                ]
            )
        # In place: the batch arrays are tens of megabytes and temporaries double the cost.
        survival = np.multiply(np.exp(log_hazard)[:, :, None], self.member_baselines[:, None, :])
        np.negative(survival, out=survival)
        return np.exp(survival, out=survival)

    def percentile(self, log_hazard):
        """Mid-rank percentile of each log hazard among the training cohort's, 0-100."""
        # Patients with the same design share a log hazard exactly in exact arithmetic; a
        # tolerance keeps them tied whatever the floating-point path (batch or single).
        below = np.searchsorted(self.training_log_hazard, log_hazard - _TIE, side="left")
        not_above = np.searchsorted(self.training_log_hazard, log_hazard + _TIE, side="right")
        return 50.0 * (below + not_above) / len(self.training_log_hazard)


@dataclass
class EndpointArrays:
    """Everything computed for one endpoint and a batch of patients, before JSON."""

    comparison: ModalityComparison
    rounded: RoundedComparison
    members: np.ndarray | None  # (n_members, n_modalities, n_patients, n_times)
    risk_percentile: np.ndarray  # (n_patients,)
    check_median: np.ndarray | None  # (n_patients,)
    check_at_horizons: np.ndarray | None  # (n_patients, n_horizons)
    field_contributions: np.ndarray  # (n_patients, n_fields)
    margin: np.ndarray  # (n_patients,)
    planned_design: np.ndarray  # (n_patients, n_features)
    incidence: tuple[list, list] | None  # IncidenceSummary.rounded()


class EndpointPredictor:
    """Per-endpoint state precomputed once per bundle."""

    def __init__(self, endpoint: str, bundle: ModelBundle, tree_shap: str):
        self.endpoint = endpoint
        families = bundle.models[endpoint]
        self.primary_name = bundle.primary[endpoint]
        if self.primary_name not in families:
            raise ModelError(
                f"the primary model of {endpoint!r} must be one of {sorted(families)}, but got "
                f"{self.primary_name!r}; fix `primary` in the bundle"
            )
        primary = families[self.primary_name]
        components = getattr(primary, "components", None) or []
        if not components and not primary.members:
            raise ModelError(
                f"the primary model of {endpoint!r} ({self.primary_name}) must have what its "
                "intervals come from (Cox components or bootstrap members), but has neither: it "
                "was fitted as the check model; make the other family primary, or retrain"
            )
        self.curves = CoxCurves(components) if components else None
        self.incidence = self.curves if len(components) == 2 else None
        self.primary = Ensemble(primary)
        others = [name for name in families if name != self.primary_name]
        self.check = Ensemble(families[others[0]]) if others else None
        self.explainer = Explainer(
            families[self.primary_name].full,
            bundle.shap_background,
            tree_shap=tree_shap,
            weights=getattr(bundle, "shap_background_weights", None),
            n_patients=getattr(bundle, "shap_background_patients", None),
        )
        self.event = ENDPOINT_EVENTS[endpoint]
        self.max_follow_up = float(bundle.max_follow_up_months[endpoint])
        beyond = MONTH_GRID[MONTH_GRID > self.max_follow_up]
        self.extrapolated_from_month = int(beyond[0]) if beyond.size else None
        at_risk = getattr(bundle, "numbers_at_risk", {}).get(endpoint)
        self.numbers_at_risk = (
            [{"month": int(m), "at_risk": int(n)} for m, n in at_risk.items()] if at_risk else None
        )
        self.interval_method = (
            "delta method (Cox model, log-log scale)"
            if self.curves is not None
            else f"bootstrap percentile ({self.primary.n_members} refits)"
        )

    def compute(self, design, planned) -> EndpointArrays:
        """Arrays for a batch; `design` has shape (n_modalities, n_patients, n_features)."""
        n_modalities, n_patients, n_features = design.shape
        rows = np.arange(n_patients)
        planned_design = design[planned, rows]
        members = None
        if self.curves is not None:
            comparison = analytic_comparison(self.curves, design, planned)
        else:
            flat = design.reshape(-1, n_features)
            point = self.primary.survival(flat).reshape(n_modalities, n_patients, -1)
            members = self.primary.member_survival(flat)
            members = members.reshape(members.shape[0], n_modalities, n_patients, -1)
            comparison = compare_modalities(summarise_curves(point, members), planned)
        shap_values = self.explainer.shap_values(planned_design)
        check_median = check_at_horizons = None
        if self.check is not None:
            check_curve = self.check.survival(planned_design)
            check_median = median_months(check_curve)
            check_at_horizons = check_curve[:, np.searchsorted(MONTH_GRID, HORIZONS_MONTHS)]
        return EndpointArrays(
            comparison=comparison,
            rounded=RoundedComparison(comparison),
            members=members,
            risk_percentile=self.primary.percentile(self.primary.log_hazard(planned_design)),
            check_median=check_median,
            check_at_horizons=check_at_horizons,
            field_contributions=self.explainer.field_contributions(shap_values.values),
            margin=shap_values.margin,
            planned_design=planned_design,
            incidence=(
                None
                if self.incidence is None
                else incidence_summary(self.incidence, design, planned).rounded(SURVIVAL_DIGITS)
            ),
        )

    def check_model(self, arrays: EndpointArrays, patient: int) -> dict | None:
        """The check model's answer for one patient and whether it disagrees."""
        if self.check is None or arrays.check_median is None or arrays.check_at_horizons is None:
            return None
        summary = arrays.comparison.summary
        planned = arrays.comparison.planned[patient]
        primary_median = float(summary.median[planned, patient])
        check_median = float(arrays.check_median[patient])
        disagree, ratio = _medians_disagree(primary_median, check_median)
        return {
            "model": self.check.name,
            "median_months": {
                "value": None if math.isnan(check_median) else round(check_median, MONTH_DIGITS),
                "reached": not math.isnan(check_median),
            },
            "survival_at": {
                str(h): round(float(v), SURVIVAL_DIGITS)
                for h, v in zip(HORIZONS_MONTHS, arrays.check_at_horizons[patient], strict=True)
            },
            "median_ratio": None if ratio is None else round(ratio, 2),
            "models_disagree": disagree,
        }

    def _planned_members(self, arrays: EndpointArrays, planned: int, patient: int) -> np.ndarray:
        """The member curves of the planned modality: bootstrap members, or Cox draws."""
        if arrays.members is not None:
            return arrays.members[:, planned, patient]
        if self.curves is None:
            raise ModelError(
                f"conditional {self.endpoint} survival needs bootstrap members or Cox components, "
                "but this bundle has neither; retrain it with `netprog train`"
            )
        # A fixed seed: the same patient gets the same interval on every request.
        return self.curves.draw_survival_seeded(
            arrays.planned_design[patient], CONDITIONAL_DRAWS, seed=0
        )

    def conditional(
        self,
        arrays: EndpointArrays,
        patient: int,
        months_since: float,
        *,
        min_survival: float = CONDITIONAL_MIN_SURVIVAL,
    ) -> dict:
        """Survival given event-free survival to `months_since`, for the planned modality.

        Refused (:class:`ConditionalSurvivalUndefined`) where S(months_since) is below
        `min_survival`; `model.unknown_fields` asks each completion of a patient with 0 and
        applies the floor to the mixture, in which an unlikely completion weighs its S(s).
        """
        comparison = arrays.comparison
        planned = comparison.planned[patient]
        point = comparison.summary.curve[planned, patient]
        start = float(np.interp(months_since, MONTH_GRID, point))
        if start < min_survival or start <= 0.0:
            raise conditional_undefined(self.endpoint, self.event, months_since, start)
        members = self._planned_members(arrays, planned, patient)
        later = MONTH_GRID > months_since
        months = np.concatenate([[months_since], MONTH_GRID[later]])
        point_curve = np.concatenate([[1.0], point[later] / start])
        member_curves = _conditional_members(members, months_since, later)
        lower, upper = percentile_interval(member_curves, point_curve)
        median = median_with_interval(point_curve, member_curves, months)
        additional = _additional_survival(months_since, months, point_curve, member_curves)
        month_labels = [
            month_label(months_since),
            *GRID_MONTHS[len(GRID_MONTHS) - int(later.sum()) :],
        ]
        median_entry = median_dict(*median, event=self.event)
        return {
            "months_since_treatment": month_label(months_since),
            "survival_at_start": round(start, SURVIVAL_DIGITS),
            "median_months": median_entry,
            "median_remaining_months": (
                None
                if median_entry["value"] is None
                else round(median_entry["value"] - months_since, MONTH_DIGITS)
            ),
            "additional_survival_at": additional,
            "curve": curve_records(
                month_labels,
                np.round(point_curve, SURVIVAL_DIGITS).tolist(),
                np.round(lower, SURVIVAL_DIGITS).tolist(),
                np.round(upper, SURVIVAL_DIGITS).tolist(),
            ),
        }


def conditional_undefined(
    endpoint: str, event: str, months_since: float, start: float
) -> ConditionalSurvivalUndefined:
    """The refusal of a conditional answer where S(months_since) = `start` is about zero."""
    return ConditionalSurvivalUndefined(
        f"`months_since_treatment` must fall where the {endpoint} survival curve is above "
        f"{CONDITIONAL_MIN_SURVIVAL}, but S({months_since:g}) = {start:.2g}: the model gives "
        f"almost no chance of being free of {event} that long, so S(t)/S(s) is undefined. "
        "Check the treatment date, or use the unconditional prognosis."
    )


def _conditional_members(members: np.ndarray, months_since: float, later: np.ndarray) -> np.ndarray:
    """Each member's survival given survival to `months_since`, shape = (n_members, n_later + 1)."""
    member_start = interp_rows(months_since, MONTH_GRID, members)
    member_curves = np.ones((len(members), int(later.sum()) + 1))
    np.divide(
        members[:, later],
        member_start[:, None],
        out=member_curves[:, 1:],
        where=member_start[:, None] > 0,
    )
    # A member that puts S(s) at zero has no conditional curve; it counts as certain
    # failure right after s, the most pessimistic reading, rather than being dropped.
    member_curves[member_start <= 0, 1:] = 0.0
    return member_curves


def interp_rows(x: float, xp: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``np.interp(x, xp, row)`` for every row of `rows` at once (one point, shared `xp`):
    a Python loop over 2,000 drawn curves cost some 30 ms a conditional request."""
    xp = np.asarray(xp, dtype=float)
    if x <= xp[0]:
        return rows[:, 0].astype(float)
    if x >= xp[-1]:
        return rows[:, -1].astype(float)
    j = int(np.searchsorted(xp, x, side="right")) - 1
    slope = (rows[:, j + 1] - rows[:, j]) / (xp[j + 1] - xp[j])
    return slope * (x - xp[j]) + rows[:, j]


def _additional_survival(months_since, months, point_curve, member_curves) -> dict:
    """Survival a further 12, 24, 36, 60 months, with intervals; None past the grid's end."""
    additional: dict[str, dict | None] = {}
    for h in HORIZONS_MONTHS:
        if months_since + h > MONTH_GRID[-1]:
            additional[str(h)] = None
            continue
        value = np.interp(months_since + h, months, point_curve)
        spread = interp_rows(months_since + h, months, member_curves)
        additional[str(h)] = interval_dict(
            value, *percentile_interval(spread, value), SURVIVAL_DIGITS
        )
    return additional


def month_label(months: float) -> int | float:
    return int(months) if float(months).is_integer() else round(float(months), 2)


def _medians_disagree(primary: float, check: float) -> tuple[bool, float | None]:
    """Whether two medians (NaN = not reached within the grid) differ by more than the ratio."""
    primary_reached, check_reached = not math.isnan(primary), not math.isnan(check)
    if primary_reached and check_reached:
        ratio = max(primary, check) / max(min(primary, check), 1e-9)
        return ratio > DISAGREEMENT_RATIO, ratio
    if not primary_reached and not check_reached:
        return False, None
    # The unreached median lies beyond the grid, so the ratio is at least grid end / reached
    # median: certain disagreement when that bound already exceeds the threshold, and no flag
    # when the unreached one could still be within the ratio.
    reached = primary if primary_reached else check
    return bool(MONTH_GRID[-1] / max(reached, 1e-9) > DISAGREEMENT_RATIO), None
