"""Turn patients into JSON-ready prognoses: curves, intervals, explanations and modalities."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import pandas as pd

from model.bundle import MONTH_GRID, ModelBundle
from model.endpoint_predictor import (
    CONDITIONAL_MIN_SURVIVAL,
    DISAGREEMENT_RATIO,
    GRID_MONTHS,
    EndpointArrays,
    EndpointPredictor,
)
from model.exceptions import ConditionalSurvivalUndefined, ModelError
from model.explain import field_labels
from model.intervals import INCIDENCE_MONTHS
from model.modality import MONTH_DIGITS, horizon_dicts, modality_entries
from model.prognosis_warnings import (
    DEFAULT_MODALITY,
    REAL_DISCLAIMER,
    SYNTHETIC_DISCLAIMER,
    prognosis_warnings,
)
from model.schema import (
    BURDEN_COLUMN,
    ENDPOINTS,
    FEATURE_NAMES,
    GRADE_COLUMN,
    MODALITIES,
    SCHEMA_VERSION,
    Patient,
    encode,
    patients_frame,
)
from model.support import ModalitySupport
from model.unknown_fields import integrate
from model.views import ClinicianViews

__all__ = [
    "CONDITIONAL_MIN_SURVIVAL",
    "DEFAULT_MODALITY",
    "DISAGREEMENT_RATIO",
    "REAL_DISCLAIMER",
    "SYNTHETIC_DISCLAIMER",
    "Predictor",
]


INCIDENCE_MEASURE = "cumulative incidence of hepatic progression (death as a competing event)"
_INCIDENCE_MONTHS = [int(m) for m in INCIDENCE_MONTHS]


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
    procedure_harms : dict, optional
        Published harms per modality (``serving.harms.load_procedure_harms``), copied into
        every answer as ``procedure_harms``.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        *,
        tree_shap: str = "path_dependent",
        procedure_harms: dict | None = None,
    ):
        if bundle.schema_version != SCHEMA_VERSION or tuple(bundle.feature_names) != FEATURE_NAMES:
            raise ModelError(
                f"the bundle must be built for patient schema version {SCHEMA_VERSION} and its "
                f"design columns, but got version {bundle.schema_version!r}; retrain it with "
                "this version of the code"
            )
        self.bundle = bundle
        self.endpoints = {e: EndpointPredictor(e, bundle, tree_shap) for e in ENDPOINTS}
        self.support = ModalitySupport(bundle)
        self.imputer = getattr(bundle, "imputer", None)
        metadata = bundle.metadata
        self.synthetic = metadata.get("trained_on", "synthetic") != "real"
        self.views = ClinicianViews(
            bundle, self.endpoints, synthetic=self.synthetic, procedure_harms=procedure_harms
        )
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

    def prognosis(
        self,
        patient: Patient,
        months_since_treatment: float | None = None,
        *,
        contributions_over_time: bool = False,
    ) -> dict:
        """The prognosis of one patient.

        Parameters
        ----------
        patient : Patient
            The patient; `planned_modality` chooses the modality of the main prognosis
            (TACE, with a warning, when absent).
        months_since_treatment : float, optional
            Months since embolotherapy of a patient seen at follow-up, free of the endpoint's
            event so far: adds conditional survival S(t)/S(s) per endpoint.
        contributions_over_time : bool, default: False
            Add each field's contribution to S(t) at 12, 24 and 36 months in probability
            points (:mod:`model.contributions`); off by default, as it costs some 1,024 curves
            per endpoint.

        Returns
        -------
        dict
            JSON-ready prognosis; the fields are described in ``docs/prognosis.md``.

        Raises
        ------
        ConditionalSurvivalUndefined
            `months_since_treatment` is outside the grid or where survival is about zero.
        """
        return self.batch(
            [patient], months_since_treatment, contributions_over_time=contributions_over_time
        )[0]

    def batch(
        self,
        patients: list[Patient],
        months_since_treatment: float | Sequence[float | None] | None = None,
        *,
        contributions_over_time: bool = False,
    ) -> list[dict]:
        """Prognoses of many patients, computed together.

        Parameters
        ----------
        patients : list of Patient
            The patients.
        months_since_treatment : float or sequence of (float or None), optional
            One value for all patients or one per patient (None: no conditional survival).
        contributions_over_time : bool, default: False
            As in :meth:`prognosis`, for every patient.

        Returns
        -------
        list of dict
            One prognosis per patient, as :meth:`prognosis` returns it.
        """
        if not patients:
            return []
        months_since = _as_months_list(months_since_treatment, len(patients))
        answers = integrate(
            lambda known, since, floors: self._batch_known(
                known, since, floors, contributions_over_time
            ),
            self.imputer,
            patients,
            months_since,
        )
        for answer in answers:
            if answer["patient_summary"].get("imputed_fields"):
                self.views.retell(answer)
        return answers

    def _batch_known(
        self,
        patients: list[Patient],
        months_since: list[float | None],
        floors: list[float],
        over_time: bool,
    ) -> list:
        """:meth:`batch` of patients with every field known (`model.unknown_fields` mixes);
        `floors`: per patient, the least S(months_since) a conditional answer needs."""
        frame = patients_frame(patients)
        planned_names = [p.planned_modality or DEFAULT_MODALITY for p in patients]
        planned = np.array([MODALITIES.index(m) for m in planned_names])
        n_patients = len(patients)
        stacked = frame.iloc[np.tile(np.arange(n_patients), len(MODALITIES))].reset_index(drop=True)
        modality = pd.Series(np.repeat(MODALITIES, n_patients), index=stacked.index)
        design = encode(stacked, modality).to_numpy().reshape(len(MODALITIES), n_patients, -1)
        grades = frame[GRADE_COLUMN].to_numpy()
        burdens = frame[BURDEN_COLUMN].to_numpy()
        support = self.support.evaluate(design[0], grades, burdens)
        arrays = {e: p.compute(design, planned) for e, p in self.endpoints.items()}
        answers = [
            self._prognosis_dict(
                patients[i], i, planned_names[i], arrays, support, months_since[i], floors[i]
            )
            for i in range(n_patients)
        ]
        for i, answer in enumerate(answers):
            self.views.extend(
                answer,
                patients[i],
                planned_names[i],
                design[planned[i], i],
                over_time=over_time,
            )
        return answers

    def _endpoint_dict(self, endpoint, arrays, support, i, labels, months_since, floor) -> dict:
        predictor = self.endpoints[endpoint]
        data = arrays[endpoint]
        planned = data.rounded.planned[i]
        curves = data.rounded.curves(i, GRID_MONTHS)
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
            try:
                out["conditional"] = predictor.conditional(
                    data, i, months_since, min_survival=floor
                )
            except ConditionalSurvivalUndefined:
                if floor > 0:
                    raise
                # A completion of a patient with unknown fields (floor 0) that puts S(s) at
                # exactly zero: it weighs nothing in the mixture's conditional answer.
                out["conditional"] = None
        out["explanation"] = predictor.explainer.explanation(
            data.field_contributions[i], float(data.margin[i]), labels
        )
        out["modalities"] = modalities
        return out

    def _prognosis_dict(
        self, patient, i, planned_name, arrays, support, months_since, floor
    ) -> dict:
        grade, burden = str(support.grades[i]), str(support.burden_categories[i])
        labels = field_labels(patient, planned_name, grade, burden)
        endpoints = {
            e: self._endpoint_dict(e, arrays, support, i, labels, months_since, floor)
            for e in ENDPOINTS
        }
        return {
            "model": _copy_model_info(self.model_info),
            **endpoints,
            "hepatic_progression": self._incidence_dict(arrays["hpfs"], i),
            "patient_summary": {
                "who_grade": grade,
                "grade_source": "who_grade" if patient.who_grade is not None else "ki67_percent",
                "burden_category": burden,
                "modality": planned_name,
                "planned_modality_given": patient.planned_modality is not None,
            },
            "warnings": prognosis_warnings(
                patient, planned_name, endpoints, support, i, synthetic=self.synthetic
            ),
            "disclaimer": SYNTHETIC_DISCLAIMER if self.synthetic else REAL_DISCLAIMER,
        }

    def _incidence_dict(self, data: EndpointArrays, i: int) -> dict | None:
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


def _median_extrapolated(median: dict, max_follow_up: float) -> bool:
    if median["value"] is None:
        return bool(max_follow_up < MONTH_GRID[-1])
    return bool(median["value"] > max_follow_up)
