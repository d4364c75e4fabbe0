"""Turn patients into JSON-ready prognoses: curves, intervals, explanations and modalities."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb

from model.bundle import MONTH_GRID, EndpointModel, ModelBundle, is_linear
from model.cox_inference import CoxCurves
from model.exceptions import ConditionalSurvivalUndefined, ModelError
from model.explain import Explainer, field_labels
from model.intervals import INCIDENCE_MONTHS, analytic_comparison, incidence_summary
from model.modality import (
    HORIZONS_MONTHS,
    MONTH_DIGITS,
    SURVIVAL_DIGITS,
    ModalityComparison,
    RoundedComparison,
    compare_modalities,
    curve_records,
    horizon_dicts,
    interval_dict,
    median_dict,
    median_months,
    median_with_interval,
    modality_entries,
    percentile_interval,
    summarise_curves,
)
from model.schema import (
    ENDPOINTS,
    FEATURE_NAMES,
    MODALITIES,
    SCHEMA_VERSION,
    Patient,
    burden_categories,
    encode,
    grade_from_ki67,
    patients_frame,
)
from model.support import ModalitySupport, SupportTable, source_sentence

__all__ = [
    "CONDITIONAL_MIN_SURVIVAL",
    "DEFAULT_MODALITY",
    "DISAGREEMENT_RATIO",
    "Predictor",
]

DEFAULT_MODALITY = "TACE"
"""Modality a prognosis is shown for when none is planned: the reference level of the models."""

DISAGREEMENT_RATIO = 1.5
"""The primary and check models disagree when one median exceeds the other by this factor."""

CONDITIONAL_MIN_SURVIVAL = 1e-3
"""Conditional survival S(t)/S(s) is refused where the curve gives S(s) below this."""

ENDPOINT_EVENTS = {"hpfs": "hepatic progression or death", "os": "death"}

INCIDENCE_MEASURE = "cumulative incidence of hepatic progression (death as a competing event)"

CONDITIONAL_DRAWS = 2000
"""Draws from the delta-method distribution for conditional survival's intervals."""

SYNTHETIC_DISCLAIMER = (
    "Trained on synthetic data, not for clinical use: the models were fitted to a simulated "
    "cohort calibrated to published aggregates, not to patient records."
)
REAL_DISCLAIMER = (
    "Decision support for a multidisciplinary tumour board, not a substitute for clinical "
    "judgement: predictions come from an observational cohort and carry its biases."
)

_MONTHS = [int(m) for m in MONTH_GRID]
_TIE = 1e-9
_INCIDENCE_MONTHS = [int(m) for m in INCIDENCE_MONTHS]


class _Ensemble:
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
            self.member_coefs = np.column_stack([m.coef for m in members])
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
class _EndpointArrays:
    """Everything computed for one endpoint and a batch of patients, before JSON."""

    comparison: ModalityComparison
    rounded: RoundedComparison
    members: np.ndarray  # (n_members, n_modalities, n_patients, n_times)
    risk_percentile: np.ndarray  # (n_patients,)
    check_median: np.ndarray | None  # (n_patients,)
    check_at_horizons: np.ndarray | None  # (n_patients, n_horizons)
    field_contributions: np.ndarray  # (n_patients, n_fields)
    margin: np.ndarray  # (n_patients,)
    planned_design: np.ndarray  # (n_patients, n_features)
    incidence: tuple[list, list] | None  # IncidenceSummary.rounded()


class _EndpointPredictor:
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
        self.primary = _Ensemble(primary)
        others = [name for name in families if name != self.primary_name]
        self.check = _Ensemble(families[others[0]]) if others else None
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

    def compute(self, design, planned) -> _EndpointArrays:
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
        return _EndpointArrays(
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

    def check_model(self, arrays: _EndpointArrays, patient: int) -> dict | None:
        """The check model's answer for one patient and whether it disagrees."""
        if self.check is None:
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

    def conditional(self, arrays: _EndpointArrays, patient: int, months_since: float) -> dict:
        """Survival given event-free survival to `months_since`, for the planned modality."""
        comparison = arrays.comparison
        planned = comparison.planned[patient]
        point = comparison.summary.curve[planned, patient]
        if arrays.members is not None:
            members = arrays.members[:, planned, patient]
        else:
            # A fixed seed: the same patient gets the same interval on every request.
            members = self.curves.draw_survival(
                arrays.planned_design[patient], CONDITIONAL_DRAWS, np.random.default_rng(0)
            )
        start = float(np.interp(months_since, MONTH_GRID, point))
        if start < CONDITIONAL_MIN_SURVIVAL:
            raise ConditionalSurvivalUndefined(
                f"`months_since_treatment` must fall where the {self.endpoint} survival curve is "
                f"above {CONDITIONAL_MIN_SURVIVAL}, but S({months_since:g}) = {start:.2g}: the "
                f"model gives almost no chance of being free of {self.event} that long, so "
                "S(t)/S(s) is undefined. Check the treatment date, or use the unconditional "
                "prognosis."
            )
        later = MONTH_GRID > months_since
        months = np.concatenate([[months_since], MONTH_GRID[later]])
        member_start = np.array([np.interp(months_since, MONTH_GRID, m) for m in members])
        point_curve = np.concatenate([[1.0], point[later] / start])
        member_curves = np.ones((len(members), len(months)))
        np.divide(
            members[:, later],
            member_start[:, None],
            out=member_curves[:, 1:],
            where=member_start[:, None] > 0,
        )
        # A member that puts S(s) at zero has no conditional curve; it counts as certain
        # failure right after s, the most pessimistic reading, rather than being dropped.
        member_curves[member_start <= 0, 1:] = 0.0
        lower, upper = percentile_interval(member_curves, point_curve)
        median = median_with_interval(point_curve, member_curves, months)
        additional = {}
        for h in HORIZONS_MONTHS:
            if months_since + h > MONTH_GRID[-1]:
                additional[str(h)] = None
                continue
            value = np.interp(months_since + h, months, point_curve)
            spread = [np.interp(months_since + h, months, c) for c in member_curves]
            additional[str(h)] = interval_dict(
                value, *percentile_interval(np.array(spread), value), SURVIVAL_DIGITS
            )
        month_labels = [_month_label(months_since), *_MONTHS[len(_MONTHS) - int(later.sum()) :]]
        median_entry = median_dict(*median, event=self.event)
        return {
            "months_since_treatment": _month_label(months_since),
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


def _month_label(months: float) -> int | float:
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


def _as_months_list(months_since_treatment, n_patients) -> list[float | None]:
    if months_since_treatment is None or isinstance(months_since_treatment, numbers.Real):
        values = [months_since_treatment] * n_patients
    else:
        values = list(months_since_treatment)
        if len(values) != n_patients:
            raise ConditionalSurvivalUndefined(
                "`months_since_treatment` must be one number or one per patient, but got "
                f"{len(values)} values for {n_patients} patients"
            )
    for value in values:
        if value is None:
            continue
        if (
            isinstance(value, bool | np.bool_)
            or not isinstance(value, numbers.Real)
            or not (0.0 <= float(value) <= MONTH_GRID[-1])
        ):
            raise ConditionalSurvivalUndefined(
                f"`months_since_treatment` must be a number of months from 0 to "
                f"{MONTH_GRID[-1]:g} (the end of the prediction grid), but got {value!r}"
            )
    return [None if v is None else float(v) for v in values]


class Predictor:
    """Prognoses of HPFS and OS for patients before embolotherapy, from one model bundle.

    Everything that depends only on the bundle (stacked ensemble coefficients, the SHAP
    explainers, support tables, the model description) is prepared once here; a prognosis
    encodes the patients under all three modalities in one design matrix and makes one
    ensemble pass per endpoint.

    Parameters
    ----------
    bundle : ModelBundle
        The fitted models.
    tree_shap : {"path_dependent", "interventional"}, default: "path_dependent"
        TreeSHAP variant when a boosted model is primary; see :class:`model.explain.Explainer`.
    """

    def __init__(self, bundle: ModelBundle, *, tree_shap: str = "path_dependent"):
        if bundle.schema_version != SCHEMA_VERSION or tuple(bundle.feature_names) != FEATURE_NAMES:
            raise ModelError(
                f"the bundle must be built for patient schema version {SCHEMA_VERSION} and its "
                f"design columns, but got version {bundle.schema_version!r}; retrain it with "
                "this version of the code"
            )
        self.bundle = bundle
        self.endpoints = {e: _EndpointPredictor(e, bundle, tree_shap) for e in ENDPOINTS}
        self.support = ModalitySupport(bundle)
        metadata = bundle.metadata
        self.synthetic = metadata.get("trained_on", "synthetic") != "real"
        self.model_info = {
            "tag": metadata.get("tag"),
            "trained_on": metadata.get("trained_on", "synthetic"),
            "data_fingerprint": metadata.get("data_fingerprint"),
            "trained_at": metadata.get("trained_at"),
            "schema_version": bundle.schema_version,
            "primary_model": {e: p.primary_name for e, p in self.endpoints.items()},
            "check_model": {
                e: (p.check.name if p.check is not None else None)
                for e, p in self.endpoints.items()
            },
            "n_bootstrap": {e: p.primary.n_members for e, p in self.endpoints.items()},
            "interval_method": {e: p.interval_method for e, p in self.endpoints.items()},
            "uncertainty": _uncertainty(metadata),
        }

    def prognosis(self, patient: Patient, months_since_treatment: float | None = None) -> dict:
        """The prognosis of one patient.

        Parameters
        ----------
        patient : Patient
            The patient; `planned_modality` chooses the modality of the main prognosis
            (TACE, with a warning, when absent).
        months_since_treatment : float, optional
            Months since embolotherapy of a patient seen at follow-up, free of the endpoint's
            event so far: adds conditional survival S(t)/S(s) per endpoint.

        Returns
        -------
        dict
            JSON-ready prognosis; the fields are described in ``docs/prognosis.md``.

        Raises
        ------
        ConditionalSurvivalUndefined
            `months_since_treatment` is outside the grid or where survival is about zero.
        """
        return self.batch([patient], months_since_treatment)[0]

    def batch(
        self,
        patients: list[Patient],
        months_since_treatment: float | Sequence[float | None] | None = None,
    ) -> list[dict]:
        """Prognoses of many patients, computed together.

        Parameters
        ----------
        patients : list of Patient
            The patients.
        months_since_treatment : float or sequence of (float or None), optional
            One value for all patients or one per patient (None: no conditional survival).

        Returns
        -------
        list of dict
            One prognosis per patient, as :meth:`prognosis` returns it.
        """
        if not patients:
            return []
        months_since = _as_months_list(months_since_treatment, len(patients))
        frame = patients_frame(patients)
        planned_names = [p.planned_modality or DEFAULT_MODALITY for p in patients]
        planned = np.array([MODALITIES.index(m) for m in planned_names])
        n_patients = len(patients)
        stacked = frame.iloc[np.tile(np.arange(n_patients), len(MODALITIES))].reset_index(drop=True)
        modality = pd.Series(np.repeat(MODALITIES, n_patients), index=stacked.index)
        design = encode(stacked, modality).to_numpy().reshape(len(MODALITIES), n_patients, -1)
        grades = frame["who_grade"].to_numpy()
        burdens = burden_categories(frame["tumor_burden_percent"])
        support = self.support.evaluate(design[0], grades, burdens)
        arrays = {e: p.compute(design, planned) for e, p in self.endpoints.items()}
        return [
            self._prognosis_dict(patients[i], i, planned_names[i], arrays, support, months_since[i])
            for i in range(n_patients)
        ]

    def _endpoint_dict(self, endpoint, arrays, support, i, labels, months_since) -> dict:
        predictor = self.endpoints[endpoint]
        data = arrays[endpoint]
        planned = data.rounded.planned[i]
        curves = data.rounded.curves(i, _MONTHS)
        modalities = modality_entries(
            data.rounded,
            support,
            i,
            curves,
            event=predictor.event,
            max_follow_up_months=predictor.max_follow_up,
        )
        main = modalities[planned]
        median = dict(main["median_months"])
        median["extrapolated"] = _median_extrapolated(median, predictor.max_follow_up)
        out = {
            "model": predictor.primary_name,
            "event": predictor.event,
            "modality": MODALITIES[planned],
            "median_months": median,
            "survival_at": main["survival_at"],
            "rmst_60_months": main["rmst_60_months"],
            "curve": main["curve"],
            "max_follow_up_months": round(predictor.max_follow_up, MONTH_DIGITS),
            "extrapolated_from_month": predictor.extrapolated_from_month,
            "numbers_at_risk": predictor.numbers_at_risk,
            "interval_method": predictor.interval_method,
            "risk_percentile": round(float(data.risk_percentile[i]), 1),
            "check_model": predictor.check_model(data, i),
        }
        if months_since is not None:
            out["conditional"] = predictor.conditional(data, i, months_since)
        out["explanation"] = predictor.explainer.explanation(
            data.field_contributions[i], float(data.margin[i]), labels
        )
        out["modalities"] = modalities
        return out

    def _prognosis_dict(self, patient, i, planned_name, arrays, support, months_since) -> dict:
        labels = field_labels(patient, planned_name)
        endpoints = {
            e: self._endpoint_dict(e, arrays, support, i, labels, months_since) for e in ENDPOINTS
        }
        return {
            "model": _copy_model_info(self.model_info),
            **endpoints,
            "hepatic_progression": self._incidence_dict(arrays["hpfs"], i),
            "patient_summary": {
                "who_grade": patient.grade,
                "grade_source": "who_grade" if patient.who_grade is not None else "ki67_percent",
                "burden_category": patient.burden_category,
                "modality": planned_name,
                "planned_modality_given": patient.planned_modality is not None,
            },
            "warnings": self._warnings(patient, planned_name, endpoints, support, i),
            "disclaimer": SYNTHETIC_DISCLAIMER if self.synthetic else REAL_DISCLAIMER,
        }

    def _incidence_dict(self, data: _EndpointArrays, i: int) -> dict | None:
        """The cumulative incidence of hepatic progression, death competing, for one patient."""
        incidence = data.incidence
        if incidence is None:
            return None
        follow_up = self.endpoints["hpfs"].max_follow_up
        planned = int(data.comparison.planned[i])
        at_horizons, curve = incidence

        def horizons(m):
            return horizon_dicts(at_horizons[m][i], extrapolated_after=follow_up)

        return {
            "measure": INCIDENCE_MEASURE,
            "event": "hepatic progression",
            "competing_event": "death before hepatic progression",
            "modality": MODALITIES[planned],
            "cumulative_incidence_at": horizons(planned),
            "curve": [
                {"month": m, "incidence": v, "lower": lo, "upper": hi}
                for m, (v, lo, hi) in zip(_INCIDENCE_MONTHS, curve[i], strict=True)
            ],
            "modalities": [
                {"modality": name, "cumulative_incidence_at": horizons(m)}
                for m, name in enumerate(MODALITIES)
            ],
            "interval_method": "delta method (cause-specific Cox models, log-log scale)",
            "note": (
                "The chance that hepatic disease has progressed by each month. It is not "
                "1 − HPFS: HPFS also ends at death, and a patient who dies first can no longer "
                "progress."
            ),
        }

    def _warnings(self, patient, planned_name, endpoints, support: SupportTable, i) -> list[dict]:
        warnings = []
        if self.synthetic:
            warnings.append(_warning("synthetic_training_data", SYNTHETIC_DISCLAIMER))
        if patient.planned_modality is None:
            warnings.append(
                _warning(
                    "no_planned_modality",
                    f"No planned modality was given: the prognosis is shown for "
                    f"{DEFAULT_MODALITY}, the reference modality, and all three modalities "
                    "are compared under `modalities`.",
                )
            )
        warnings.extend(_grade_warnings(patient))
        for m, name in enumerate(MODALITIES):
            if support.extrapolation[i, m]:
                role = "the planned modality" if name == planned_name else "a comparison"
                warnings.append(
                    _warning(
                        "modality_extrapolated",
                        f"{name} ({role}): {_support_message(support, i, m)}",
                        modality=name,
                    )
                )
        for endpoint, data in endpoints.items():
            check = data["check_model"]
            if check is not None and check["models_disagree"]:
                warnings.append(
                    _warning(
                        "models_disagree",
                        f"The {data['model']} and {check['model']} models' median "
                        f"{endpoint.upper()} differ by more than {DISAGREEMENT_RATIO:g}-fold "
                        f"({_median_text(data['median_months'])} against "
                        f"{_median_text(check['median_months'])}): treat the estimate with "
                        "extra caution.",
                        endpoint=endpoint,
                    )
                )
            outside = [
                h
                for h, v in data["survival_at"].items()
                if not v["lower"] <= v["value"] <= v["upper"]
            ]
            if outside:
                warnings.append(
                    _warning(
                        "interval_excludes_estimate",
                        f"The {endpoint.upper()} 95 % interval at {', '.join(outside)} months "
                        f"({data['interval_method']}) does not contain the model's estimate: "
                        "the resampled fits sit off the full-data fit, so read the estimate "
                        "with extra caution.",
                        endpoint=endpoint,
                    )
                )
            extrapolated = [h for h, v in data["survival_at"].items() if v["extrapolated"]]
            if extrapolated or data["median_months"]["extrapolated"]:
                warnings.append(
                    _warning(
                        "beyond_follow_up",
                        f"Training follow-up for {endpoint.upper()} was adequate only to "
                        f"{data['max_follow_up_months']} months; "
                        + (
                            f"survival at {', '.join(extrapolated)} months"
                            if extrapolated
                            else "the median"
                        )
                        + " is extrapolated beyond it.",
                        endpoint=endpoint,
                    )
                )
        return warnings


def _uncertainty(metadata: dict) -> dict:
    """Which uncertainty the intervals carry: the training sample's, or the literature's."""
    stated = metadata.get("uncertainty") or {}
    return {
        "kind": stated.get("kind", "sampling"),
        "text": stated.get(
            "text", "The intervals carry the sampling uncertainty of the training cohort."
        ),
    }


def _copy_model_info(info: dict) -> dict:
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in info.items()}


def _warning(code: str, message: str, **context) -> dict:
    return {"code": code, "message": message, **context}


def _median_text(median: dict) -> str:
    if median["value"] is None:
        return f"not reached by {MONTH_GRID[-1]:g} months"
    return f"{median['value']} months"


def _median_extrapolated(median: dict, max_follow_up: float) -> bool:
    if median["value"] is None:
        return bool(max_follow_up < MONTH_GRID[-1])
    return bool(median["value"] > max_follow_up)


def _support_message(support: SupportTable, i: int, m: int) -> str:
    return (
        f"modelled propensity {support.propensity[i, m]:.3f} and "
        f"{support.similar_treated[i, m]} training patient(s) of the same grade and burden "
        f"category treated with it.{source_sentence(support, i, m)} Its prediction is "
        "extrapolation."
    )


def _grade_warnings(patient: Patient) -> list[dict]:
    if patient.who_grade is None:
        return [
            _warning(
                "grade_derived_from_ki67",
                f"WHO grade was not given: {patient.grade} was derived from Ki-67 "
                f"{patient.ki67_percent:g} % (WHO 2010: <3 % G1, 3–20 % G2, >20 % G3).",
            )
        ]
    if patient.ki67_percent is not None:
        from_ki67 = grade_from_ki67(patient.ki67_percent)
        if from_ki67 != patient.who_grade:
            return [
                _warning(
                    "grade_ki67_mismatch",
                    f"The recorded grade {patient.who_grade} was used, but Ki-67 "
                    f"{patient.ki67_percent:g} % corresponds to {from_ki67} (WHO 2010).",
                )
            ]
    return []
