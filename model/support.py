"""How well the training data (and, for the synthetic default, the source studies) cover a
patient under each modality: propensity, similar treated patients, source patients."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from model.bundle import ModelBundle
from model.exceptions import ModelError
from model.schema import BURDEN_CATEGORIES, MODALITIES

__all__ = [
    "BURDEN_LABELS",
    "MIN_PROPENSITY",
    "MIN_SIMILAR_TREATED",
    "ModalitySupport",
    "SupportTable",
    "burden_label",
    "source_sentence",
    "support_entry",
    "support_warning",
]

MIN_PROPENSITY = 0.05
"""Below this propensity of receiving a modality, its prediction is flagged as extrapolation."""

MIN_SIMILAR_TREATED = 10
"""Fewer training patients of the same grade and burden category who received a modality than
this, and its prediction is flagged as extrapolation."""

BURDEN_LABELS = {c: c.replace("-", "–") + " %" for c in BURDEN_CATEGORIES}
"""Burden categories of :data:`model.schema.BURDEN_CATEGORIES` as written for readers."""


@dataclass
class SupportTable:
    """How well the training data cover each patient under each modality.

    Attributes
    ----------
    propensity : ndarray, shape = (n_patients, n_modalities)
        Modelled probability that a training patient like this one received each modality.
    similar_treated : ndarray of int, shape = (n_patients, n_modalities)
        Training patients with the same grade and burden category who received it.
    extrapolation : ndarray of bool, shape = (n_patients, n_modalities)
        Propensity below :data:`MIN_PROPENSITY` or fewer than :data:`MIN_SIMILAR_TREATED`.
    grades, burden_categories : ndarray of str, shape = (n_patients,)
        The cell each patient was counted in.
    source_patients : ndarray of int, shape = (n_patients, n_modalities), or None
        For a model built from published aggregates (the synthetic default), about how many
        real patients of the patient's grade received each modality in the source studies;
        fewer than the bundle's minimum also flags extrapolation, whatever the synthetic
        sample size. None for a model trained on a registry.
    """

    propensity: np.ndarray
    similar_treated: np.ndarray
    extrapolation: np.ndarray
    grades: np.ndarray
    burden_categories: np.ndarray
    source_patients: np.ndarray | None = None
    min_source_patients: int = 0


class ModalitySupport:
    """Propensity and similar-patient counts of a bundle, ready for fast look-ups.

    Parameters
    ----------
    bundle : ModelBundle
        Its `propensity` model, `propensity_features` and `support_counts` are used.
    """

    def __init__(self, bundle: ModelBundle):
        self.propensity = bundle.propensity
        names = list(bundle.feature_names)
        self._columns = np.array([names.index(f) for f in bundle.propensity_features])
        self._with_names = hasattr(bundle.propensity, "feature_names_in_")
        self._feature_names = list(bundle.propensity_features)
        classes = [str(c) for c in bundle.propensity.classes_]
        missing = [m for m in MODALITIES if m not in classes]
        if missing:
            raise ModelError(
                f"the propensity model must know every modality, but got classes {classes} "
                f"(missing {missing}); refit it on a cohort where each modality was received"
            )
        self._class_order = np.array([classes.index(m) for m in MODALITIES])
        self._linear = _multinomial_arrays(bundle.propensity, self._class_order)
        counts = bundle.support_counts.reindex(columns=list(MODALITIES), fill_value=0)
        self._counts = {
            (str(grade), str(burden)): np.asarray(row, dtype=int)
            for (grade, burden), row in zip(counts.index, counts.to_numpy(), strict=True)
        }
        evidence = bundle.metadata.get("evidence_base") or {}
        by_grade = evidence.get("patients_by_grade_and_modality")
        self._source = (
            {g: np.array([int(by_grade[g][m]) for m in MODALITIES]) for g in by_grade}
            if by_grade
            else None
        )
        self._min_source = int(evidence.get("min_source_patients", 0))

    def evaluate(self, design, grades, burden_categories) -> SupportTable:
        """Support of every modality for every patient.

        Parameters
        ----------
        design : ndarray, shape = (n_patients, n_features)
            Encoded patients (any modality: the propensity columns do not involve it).
        grades, burden_categories : sequence of str, shape = (n_patients,)
            Each patient's grade and burden category.

        Returns
        -------
        SupportTable
        """
        features = np.asarray(design, dtype=float)[:, self._columns]
        if self._linear is not None:
            propensity = _softmax(features @ self._linear[0] + self._linear[1])
        else:
            if self._with_names:
                features = pd.DataFrame(features, columns=self._feature_names)
            propensity = self.propensity.predict_proba(features)[:, self._class_order]
        zero = np.zeros(len(MODALITIES), dtype=int)
        similar = np.array(
            [
                self._counts.get((g, b), zero)
                for g, b in zip(grades, burden_categories, strict=True)
            ],
            dtype=int,
        ).reshape(len(propensity), len(MODALITIES))
        extrapolation = (propensity < MIN_PROPENSITY) | (similar < MIN_SIMILAR_TREATED)
        source = None
        if self._source is not None:
            source = np.array([self._source[str(g)] for g in grades], dtype=int).reshape(
                similar.shape
            )
            extrapolation |= source < self._min_source
        return SupportTable(
            propensity,
            similar,
            extrapolation,
            np.asarray(grades, dtype=object),
            np.asarray(burden_categories, dtype=object),
            source,
            self._min_source,
        )


def support_warning(table: SupportTable, patient: int, modality: int) -> str | None:
    """The extrapolation message of one patient and modality, None when the data cover it."""
    if not table.extrapolation[patient, modality]:
        return None
    name = MODALITIES[modality]
    burden = burden_label(table.burden_categories[patient])
    return (
        f"Few training patients like this one received {name}: modelled propensity "
        f"{table.propensity[patient, modality]:.3f} (flagged below {MIN_PROPENSITY}) and "
        f"{table.similar_treated[patient, modality]} treated patient(s) of grade "
        f"{table.grades[patient]} with tumour burden {burden} "
        f"(flagged below {MIN_SIMILAR_TREATED}).{source_sentence(table, patient, modality)} "
        f"The prediction under {name} is extrapolation beyond the data."
    )


def source_sentence(table: SupportTable, patient: int, modality: int) -> str:
    """A sentence on the source studies' patients behind the comparison, or "" if enough."""
    if table.source_patients is None:
        return ""
    count = int(table.source_patients[patient, modality])
    if count >= table.min_source_patients:
        return ""
    return (
        f" The published studies this synthetic default rests on hold only about {count} "
        f"patient(s) of grade {table.grades[patient]} treated with {MODALITIES[modality]} "
        f"(flagged below {table.min_source_patients}): the comparison rests on very few real "
        "patients."
    )


def support_entry(support: SupportTable, patient: int, modality: int) -> dict:
    """The JSON support of one patient under one modality."""
    return {
        "propensity": round(float(support.propensity[patient, modality]), 3),
        "similar_treated": int(support.similar_treated[patient, modality]),
        "similar_definition": (
            f"training patients with grade {support.grades[patient]} and tumour burden "
            f"{burden_label(support.burden_categories[patient])} who received "
            f"{MODALITIES[modality]}"
        ),
        "extrapolation": bool(support.extrapolation[patient, modality]),
        "source_patients": (
            None
            if support.source_patients is None
            else int(support.source_patients[patient, modality])
        ),
        "warning": support_warning(support, patient, modality),
    }


def burden_label(category: str) -> str:
    """A burden category as written for readers: "50–75 %"."""
    return BURDEN_LABELS[category]


def _multinomial_arrays(model, class_order) -> tuple[np.ndarray, np.ndarray] | None:
    """Coefficients and intercepts, in `MODALITIES` order and on the raw features, of a
    standardised multinomial logistic model (what training fits), or None for another model.

    Evaluated with one matrix product, the propensity costs a few microseconds per patient
    instead of scikit-learn's input validation (a tenth of one prognosis, measured).
    """
    steps = getattr(model, "steps", None)
    if not steps or len(steps) != 2:
        return None
    scaler, logistic = steps[0][1], steps[1][1]
    if not isinstance(scaler, StandardScaler) or not isinstance(logistic, LogisticRegression):
        return None
    coef = np.asarray(logistic.coef_, dtype=float)
    if coef.shape[0] != len(class_order):
        return None
    scale = scaler.scale_ if scaler.scale_ is not None else np.ones(coef.shape[1])
    mean = scaler.mean_ if scaler.mean_ is not None else np.zeros(coef.shape[1])
    raw_coef = coef / scale
    intercept = logistic.intercept_ - raw_coef @ mean
    return raw_coef[class_order].T.copy(), intercept[class_order].copy()


def _softmax(scores: np.ndarray) -> np.ndarray:
    scores = scores - scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    return scores / scores.sum(axis=1, keepdims=True)
