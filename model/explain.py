"""SHAP explanations of a prognosis on the log relative hazard scale, summed per patient field."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb

from model.background import SummarisedBackground
from model.bundle import CurveModel, is_linear
from model.exceptions import ModelError
from model.schema import BOOLEAN_FIELDS, DESIGN_COLUMNS, FIELDS, Patient
from model.support import burden_label

__all__ = [
    "FIELD_FACTORS",
    "SCALE",
    "Explainer",
    "ShapValues",
    "field_labels",
]

SCALE = "log relative hazard"

FIELD_FACTORS = {c.field: str(FIELDS[c.field].factor) for c in DESIGN_COLUMNS}
"""Human name of each explained patient field, in the design's column order (from
:func:`model.schema.about`: the modality columns explain `planned_modality`)."""

TREE_SHAP_METHODS = ("path_dependent", "interventional")


def field_labels(
    patient: Patient, modality: str, grade: str | None = None, burden: str | None = None
) -> dict[str, str]:
    """A human label of the patient's value of every explained field.

    Parameters
    ----------
    patient : Patient
        The patient explained.
    modality : str
        The modality the prognosis is for (the planned one, or the default).
    grade, burden : str, optional
        The patient's derived grade and burden category, where already computed
        (:func:`model.schema.patients_frame`); derived here otherwise.

    Returns
    -------
    dict
        Field name (as in :data:`FIELD_FACTORS`) to label, e.g. ``"tumour burden 50–75 %"``.
    """
    grade = grade or patient.grade
    grade_label = f"grade {grade}"
    if patient.who_grade is None:
        grade_label += f" (derived from Ki-67 {patient.ki67_percent:g} %)"
    labels = {
        "who_grade": grade_label,
        "planned_modality": f"{modality} in a {grade} tumour",
        "tumor_burden_percent": "tumour burden "
        + burden_label(str(burden or patient.burden_category)),
        "age_years": f"age {patient.age_years} years",
    }
    for name in FIELD_FACTORS:
        meta, value = FIELDS[name], getattr(patient, name)
        if name in BOOLEAN_FIELDS:
            labels[name] = meta.yes_no[0] if value else meta.yes_no[1]
        elif name not in labels:
            option = meta.options[value]
            labels[name] = option.explained or option.text.lower()
    return labels


@dataclass
class ShapValues:
    """SHAP values of the log relative hazard of several patients.

    Attributes
    ----------
    values : ndarray, shape = (n_samples, n_features)
        Per design column, in :data:`model.schema.FEATURE_NAMES` order.
    base_value : float
        The expected log relative hazard the values are measured from.
    margin : ndarray, shape = (n_samples,)
        Log relative hazard; ``values.sum(axis=1) == margin - base_value``.
    """

    values: np.ndarray
    base_value: float
    margin: np.ndarray


class Explainer:
    """SHAP values of one fitted model's log relative hazard, summed per patient field.

    The penalised Cox model is linear, so its SHAP values are exact and closed-form:
    ``coef_j * (x_j - mean_j)`` with means over `background`, and the base value is the mean
    log relative hazard of `background`.

    For the boosted model the default is path-dependent TreeSHAP as computed by xgboost itself
    (``Booster.predict(pred_contribs=True)``). Interventional TreeSHAP with the background
    sample (``shap.TreeExplainer(feature_perturbation="interventional")``) is available as
    ``tree_shap="interventional"``; on the synthetic default bundle (2,000-3,000 patients,
    100 background rows, 150-450 depth-3 trees) it took about 2.5 ms per patient and
    endpoint against about 0.2 ms, so a batch of 1,000 patients would spend over 4 s in it
    alone, outside the 2 s batch target; see ``docs/prognosis.md``. The base values differ:

    - path-dependent: xgboost's bias term, the expected margin over the training rows each
      tree was grown on, weighted by the trees' node *cover*. For ``survival:cox`` the cover
      is the sum of the Cox loss Hessians, not a row count, so this is a Hessian-weighted
      average of the training cohort (plus xgboost's base score), not the plain average
      patient; the values are also computed in float32, so additivity holds to about 1e-6
      against xgboost's own sum, which is the reported margin.
    - interventional: the mean margin over `background`, like the linear model.

    Parameters
    ----------
    model : CurveModel
        A fitted model (linear, or with a ``booster_``).
    background : DataFrame, shape = (n_background, n_features)
        Encoded training patients the base value averages over.
    tree_shap : {"path_dependent", "interventional"}, default: "path_dependent"
        The TreeSHAP variant for a boosted model; ignored for a linear one.
    """

    def __init__(
        self,
        model: CurveModel,
        background: pd.DataFrame,
        *,
        tree_shap="path_dependent",
        weights: np.ndarray | None = None,
        n_patients: int | None = None,
    ):
        if tree_shap not in TREE_SHAP_METHODS:
            raise ModelError(
                f"`tree_shap` must be one of {TREE_SHAP_METHODS}, but got {tree_shap!r}"
            )
        self.model = model
        self.tree_shap = tree_shap
        self.linear = is_linear(model)
        background_array = np.ascontiguousarray(background.to_numpy(dtype=float))
        self.background_size = len(background_array)
        self.summary = None
        if weights is not None:
            self.summary = SummarisedBackground(
                background, np.asarray(weights, dtype=float), n_patients or len(background)
            )
        self.background_mean_margin = float(
            np.average(model.log_hazard(background_array), weights=weights)
        )
        self.fields = tuple(FIELD_FACTORS)
        # Every column is summed into the field it explains, so the items stay additive.
        self._grouping = np.array(
            [[c.field == f for f in self.fields] for c in DESIGN_COLUMNS], dtype=float
        )
        if self.linear:
            self._background_means = np.average(background_array, axis=0, weights=weights)
            self.base_value = self.background_mean_margin
        elif tree_shap == "interventional":
            # Imported here: shap is slow to import and only this optional method needs it.
            import shap

            rows = background_array if self.summary is None else self.summary.repeated()
            self._tree_explainer = shap.TreeExplainer(
                model.estimator.booster_,
                data=rows,
                feature_perturbation="interventional",
                model_output="raw",
            )
            self.base_value = float(np.ravel(self._tree_explainer.expected_value)[0])
        else:
            self._booster = model.estimator.booster_
            bias = self._booster.predict(
                xgb.DMatrix(background_array[:1], nthread=1), pred_contribs=True
            )[0, -1]
            self.base_value = float(bias)

    @property
    def method(self) -> str:
        """How the values are computed, in words."""
        if self.linear:
            return "exact SHAP of a linear model: coefficient × (value − background mean)"
        if self.tree_shap == "interventional":
            return "interventional TreeSHAP (shap.TreeExplainer) with the background sample"
        return "path-dependent TreeSHAP (xgboost pred_contribs)"

    @property
    def baseline(self) -> str:
        """What the base value is, in one sentence for the reader of an explanation."""
        if (self.linear or self.tree_shap == "interventional") and self.summary is not None:
            return (
                "The base value is the average log relative hazard of the "
                f"{self.summary.n_patients} training patients (each under the modality they "
                f"received), summarised as {self.background_size} weighted cluster centres of "
                "their factors so that no patient's record is kept; each contribution says how "
                "far this patient's value of a factor moves the log relative hazard away from "
                "that average."
            )
        if self.linear or self.tree_shap == "interventional":
            return (
                f"The base value is the average log relative hazard of {self.background_size} "
                "training patients (a random background sample, each under the modality they "
                "received); each contribution says how far this patient's value of a factor "
                "moves the log relative hazard away from that average patient."
            )
        return (
            "The base value is the boosted model's expected log relative hazard over its "
            "training data as path-dependent TreeSHAP defines it: training patients weighted by "
            "their Cox-loss Hessian (xgboost's node cover), not the plain average patient, "
            f"whose log relative hazard is {self.background_mean_margin:.3f} over "
            + (
                f"{self.background_size} background training patients."
                if self.summary is None
                else f"the {self.summary.n_patients} training patients (from "
                f"{self.background_size} weighted cluster centres)."
            )
        )

    def shap_values(self, design) -> ShapValues:
        """SHAP values of every design column.

        Parameters
        ----------
        design : ndarray, shape = (n_samples, n_features)
            Encoded patients.

        Returns
        -------
        ShapValues
        """
        design = np.asarray(design, dtype=float)
        if self.linear:
            values = (design - self._background_means) * self.model.coef
            return ShapValues(values, self.base_value, self.model.log_hazard(design))
        if self.tree_shap == "interventional":
            values = np.asarray(
                self._tree_explainer.shap_values(design, check_additivity=False), dtype=float
            )
            return ShapValues(values, self.base_value, self.model.log_hazard(design))
        contributions = self._booster.predict(
            xgb.DMatrix(design, nthread=1), pred_contribs=True
        ).astype(float)
        # xgboost sums float32 leaf values, so its own total (not the separately predicted
        # margin, which differs by ~1e-6) is the margin that the values add up to.
        values = contributions[:, :-1]
        return ShapValues(values, self.base_value, values.sum(axis=1) + self.base_value)

    def field_contributions(self, values) -> np.ndarray:
        """SHAP values summed per patient field.

        Parameters
        ----------
        values : ndarray, shape = (n_samples, n_features)
            :attr:`ShapValues.values`.

        Returns
        -------
        ndarray, shape = (n_samples, len(FIELD_FACTORS))
            Contribution of each field of :attr:`fields`, in that order.
        """
        return values @ self._grouping

    def explanation(self, contributions, margin: float, labels: dict[str, str]) -> dict:
        """The JSON explanation of one patient.

        Parameters
        ----------
        contributions : ndarray, shape = (len(FIELD_FACTORS),)
            One row of :meth:`field_contributions`.
        margin : float
            The patient's log relative hazard.
        labels : dict
            :func:`field_labels` of the patient.

        Returns
        -------
        dict
            ``scale``, ``method``, ``base_value``, ``baseline``, ``margin``,
            ``hazard_ratio_vs_baseline`` and ``items`` sorted by absolute contribution.
        """
        order = np.argsort(-np.abs(contributions), kind="stable")
        items = [
            {
                "field": self.fields[j],
                "factor": FIELD_FACTORS[self.fields[j]],
                "label": labels[self.fields[j]],
                "contribution": round(float(contributions[j]), 4),
                "hazard_ratio": round(math.exp(contributions[j]), 3),
            }
            for j in order
        ]
        return {
            "scale": SCALE,
            "method": self.method,
            "base_value": round(self.base_value, 4),
            "baseline": self.baseline,
            "margin": round(float(margin), 4),
            "hazard_ratio_vs_baseline": round(math.exp(margin - self.base_value), 3),
            "note": (
                "SHAP values explain the model's margin, the log relative hazard: positive "
                "contributions raise the risk of the event, negative ones lower it; "
                "hazard_ratio = exp(contribution) is the multiplier on the hazard against the "
                "base value."
            ),
            "items": items,
        }
