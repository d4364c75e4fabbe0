"""What a clinician and a patient can read, added to a prognosis: out of 100, plain words,
the procedure's harms, patients like this one and (on request) contributions over time."""

from __future__ import annotations

import numpy as np

from model.bundle import MONTH_GRID
from model.contributions import CONTRIBUTION_HORIZONS, contributions_over_time, point_incidence
from model.explain import FIELD_FACTORS, field_labels
from model.plain_language import out_of_100, plain_summaries
from model.schema import Patient
from model.similar import SimilarPatients

__all__ = ["ClinicianViews"]

_AT = np.searchsorted(MONTH_GRID, CONTRIBUTION_HORIZONS)


def _survival_game(endpoint):
    """S(t) at the contribution horizons as the prognosis computes it for one endpoint.

    ``exp(-sum_k exp(x'beta_k) H0_k(t))`` over the Cox components (the full-data fit's
    ``exp(-exp(margin) H0(t))`` for a boosted primary), evaluated at the three horizons only:
    the 1,024 coalitions' whole curves would cost some 40 times more.
    """
    if endpoint.curves is not None:
        components = [(c.coef, c.baseline[_AT]) for c in endpoint.curves.components]
        return lambda design: np.exp(
            -sum(np.exp(design @ coef)[:, None] * baseline for coef, baseline in components)
        )
    primary = endpoint.primary
    baseline = primary.baseline[_AT]
    return lambda design: np.exp(-np.exp(primary.log_hazard(design))[:, None] * baseline)


def _incidence_game(curves):
    cause, competing = curves.components
    return lambda design: point_incidence(cause, competing, design)


class ClinicianViews:
    """Adds the clinician's and patient's views to the prognoses of one bundle.

    Parameters
    ----------
    bundle : ModelBundle
        The served bundle (its `similar_patients` tables, when it has them).
    endpoints : dict
        The predictor's per-endpoint state (``Predictor.endpoints``).
    synthetic : bool
        Whether the model was trained on synthetic data.
    procedure_harms : dict, optional
        The published harms per modality (``serving.harms.load_procedure_harms``); the
        answer's ``procedure_harms`` is None without them.
    """

    def __init__(self, bundle, endpoints: dict, *, synthetic: bool, procedure_harms=None):
        self.endpoints = endpoints
        self.synthetic = synthetic
        self.procedure_harms = procedure_harms
        tables = getattr(bundle, "similar_patients", None)
        self.similar = SimilarPatients(tables, synthetic=synthetic) if tables else None
        self.games = {name: _survival_game(e) for name, e in endpoints.items()}
        incidence = endpoints["hpfs"].incidence
        if incidence is not None:
            self.games["hepatic_progression"] = _incidence_game(incidence)

    def extend(
        self, answer: dict, patient: Patient, modality: str, design_row, *, over_time: bool
    ) -> None:
        """Add the views to one patient's answer, in place.

        Parameters
        ----------
        answer : dict
            The patient's prognosis so far.
        patient : Patient
            The patient.
        modality : str
            The modality of the prognosis (planned or default).
        design_row : ndarray, shape = (n_features,)
            The patient encoded under that modality.
        over_time : bool
            Add ``contributions_over_time`` (about 1,024 extra curves per endpoint).
        """
        counts = out_of_100(answer)
        answer["out_of_100"] = counts
        answer["plain_language"] = plain_summaries(counts, synthetic=self.synthetic)
        # Shared, not copied, like the curves: an answer is read-only (docs/prognosis.md).
        answer["procedure_harms"] = self.procedure_harms
        answer["similar_patients"] = self._similar(patient, design_row)
        if over_time:
            answer["contributions_over_time"] = contributions_over_time(
                self.games, _explained_fields(patient, modality), field_labels(patient, modality)
            )

    def retell(self, answer: dict) -> None:
        """Recount the views of an answer mixed over unknown fields (`model.unknown_fields`).

        The counts and words follow the mixed survival and its wider intervals; the similar
        patients and the contributions stay those of the most probable completion, and say so.
        """
        counts = out_of_100(answer)
        answer["out_of_100"] = counts
        answer["plain_language"] = plain_summaries(counts, synthetic=self.synthetic)
        imputed = ", ".join(answer["patient_summary"]["imputed_fields"])
        caveat = (
            f"Not recorded for this patient: {imputed}. Shown for the most probable value, "
            "which the imputation model chose; the survival figures above integrate over all."
        )
        for name in ("similar_patients", "contributions_over_time"):
            if answer.get(name) is not None:
                answer[name] = {**answer[name], "imputed_note": caveat}

    def _similar(self, patient: Patient, design_row) -> dict | None:
        if self.similar is None:
            return None
        row = np.asarray(design_row, dtype=float)[None, :]
        families = {name: e.primary_name for name, e in self.endpoints.items()}
        log_hazards = {
            name: float(e.primary.log_hazard(row)[0]) for name, e in self.endpoints.items()
        }
        return self.similar.summary(families, patient.grade, patient.burden_category, log_hazards)


def _explained_fields(patient: Patient, modality: str) -> dict:
    fields = {name: getattr(patient, name, None) for name in FIELD_FACTORS}
    fields["who_grade"] = patient.grade
    fields["planned_modality"] = modality
    return fields
