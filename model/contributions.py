"""Time-dependent contributions of each patient field to S(t), in probability points.

SurvSHAP(t) (Krzyziński et al., Knowledge-Based Systems 2023) explains a survival curve by
Shapley values of S(t) at every time. Here the game is played against one stated reference
patient rather than a background sample ("baseline Shapley", Sundararajan & Najmi 2020): the
value of a coalition of fields is the model's own S(t) for the patient whose fields in the
coalition are this patient's and the others the reference patient's. With the ten explained
fields that is 2^10 = 1,024 curves, computed in one pass of the served model, and the values
are exact, not sampled: they add up to S_patient(t) - S_reference(t) to rounding error at
every t. Averaging over a background sample instead would cost 100 times as many curves, more
than the 30 ms a prognosis with this option may take (bench/prognosis.py).

Probability points move with time even when the model has proportional hazards: a factor
that multiplies the hazard moves S(t) little while S is near 1 and more as it falls, so a
factor's rank among the contributions can change between 12 and 36 months.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pandas as pd

from model.bundle import MONTH_GRID
from model.explain import FIELD_FACTORS
from model.schema import (
    AGE_REFERENCE_YEARS,
    BOOLEAN_FIELDS,
    FEATURE_NAMES,
    FEATURE_SOURCES,
    REFERENCE_LEVELS,
    encode,
)

__all__ = [
    "CONTRIBUTION_HORIZONS",
    "REFERENCE_PATIENT",
    "coalition_designs",
    "exact_shapley",
    "point_incidence",
]

CONTRIBUTION_HORIZONS = (12, 24, 36)
"""Months at which the contributions are computed (1, 2 and 3 years)."""

REFERENCE_PATIENT = {
    "who_grade": REFERENCE_LEVELS["who_grade"],
    "planned_modality": REFERENCE_LEVELS["modality"],
    "primary_site": REFERENCE_LEVELS["primary_site"],
    # Any burden below 25 % encodes as the reference category "<25".
    "tumor_burden_percent": 0.0,
    **dict.fromkeys(BOOLEAN_FIELDS, False),
    "age_years": int(AGE_REFERENCE_YEARS),
}
"""The reference patient every contribution is measured from: each field at the models'
reference level (the 004 abstract's Table 1), no yes/no factor present, age 60."""

REFERENCE_TEXT = (
    "a patient with a G1 tumour, a pancreatic primary, hepatic tumour burden under 25 %, no "
    "prior hepatic resection or ablation, no extrahepatic metastases, no systemic therapy, "
    "aged 60 and treated with TACE"
)

_FIELDS = tuple(FIELD_FACTORS)
_INTERACTION = "modality"
"""The design source whose columns (modality within grade) depend on grade and modality."""


@cache
def _coalitions(n_fields: int) -> tuple[np.ndarray, np.ndarray]:
    """Membership masks of every coalition, shape (2^n, n), and each one's Shapley weight."""
    members = (np.arange(2**n_fields)[:, None] >> np.arange(n_fields)) & 1
    sizes = members.sum(axis=1)
    weights = np.array(
        [
            math.factorial(s) * math.factorial(n_fields - s - 1) / math.factorial(n_fields)
            for s in range(n_fields)
        ]
        + [0.0]
    )[sizes]
    return members.astype(bool), weights


def exact_shapley(values) -> np.ndarray:
    """Exact Shapley values of a game given on every coalition.

    Parameters
    ----------
    values : ndarray, shape = (2 ** n_fields, ...)
        The value of each coalition; coalition ``c`` holds field ``j`` when bit ``j`` of
        ``c`` is set, so ``values[0]`` is the reference and ``values[-1]`` the patient.

    Returns
    -------
    ndarray, shape = (n_fields, ...)
        One value per field; they sum to ``values[-1] - values[0]``.
    """
    values = np.asarray(values, dtype=float)
    n_fields = int(round(math.log2(len(values))))
    if 2**n_fields != len(values):
        raise ValueError(
            f"values must hold one row per coalition (a power of two), but got {len(values)}"
        )
    members, weights = _coalitions(n_fields)
    flat = values.reshape(len(values), -1)
    out = np.empty((n_fields, flat.shape[1]))
    for j in range(n_fields):
        without = np.flatnonzero(~members[:, j])
        out[j] = weights[without] @ (flat[without | (1 << j)] - flat[without])
    return out.reshape((n_fields, *values.shape[1:]))


def _field_of_column() -> np.ndarray:
    sources = [FEATURE_SOURCES[name] for name in FEATURE_NAMES]
    fields = ["planned_modality" if s == _INTERACTION else s for s in sources]
    return np.array([_FIELDS.index(f) for f in fields])


_COLUMN_FIELD = _field_of_column()
_INTERACTION_COLUMNS = np.array([FEATURE_SOURCES[n] == _INTERACTION for n in FEATURE_NAMES])


def coalition_designs(patient: dict, reference: dict | None = None) -> np.ndarray:
    """The design of every coalition of fields between a patient and the reference patient.

    Parameters
    ----------
    patient : dict
        The explained fields (:data:`model.explain.FIELD_FACTORS`) of the patient, with
        `who_grade` the effective grade and `planned_modality` the modality explained.
    reference : dict, optional
        The same fields of the reference patient; :data:`REFERENCE_PATIENT` by default.

    Returns
    -------
    ndarray, shape = (2 ** len(FIELD_FACTORS), len(FEATURE_NAMES))
        Row ``c`` encodes the patient's value of field ``j`` where bit ``j`` of ``c`` is set,
        the reference's elsewhere. Modality enters the design only within grade, so its
        columns are encoded from both the coalition's grade and its modality.
    """
    reference = REFERENCE_PATIENT if reference is None else reference
    # Hybrid k takes its grade from the patient when k // 2, its modality when k % 2; hybrid 0
    # is the reference and hybrid 3 the patient.
    rows = []
    for k in range(4):
        row = dict(reference if k < 3 else patient)
        row["who_grade"] = (patient if k // 2 else reference)["who_grade"]
        row["planned_modality"] = (patient if k % 2 else reference)["planned_modality"]
        rows.append(row)
    frame = pd.DataFrame(rows)
    hybrids = encode(frame, frame["planned_modality"]).to_numpy()
    members, _ = _coalitions(len(_FIELDS))
    design = np.where(members[:, _COLUMN_FIELD], hybrids[3], hybrids[0])
    grade_bit = members[:, _FIELDS.index("who_grade")].astype(int)
    modality_bit = members[:, _FIELDS.index("planned_modality")].astype(int)
    design[:, _INTERACTION_COLUMNS] = hybrids[2 * grade_bit + modality_bit][:, _INTERACTION_COLUMNS]
    return design


def point_incidence(cause, competing, design, months=CONTRIBUTION_HORIZONS) -> np.ndarray:
    """Cumulative incidence of `cause`, `competing` competing, without its interval.

    The same step formula as :func:`model.cox_inference.cumulative_incidence` (constant
    cause-specific hazards within each month), for the 1,024 coalition designs at which its
    delta-method variance would cost far more than the estimate.

    Returns
    -------
    ndarray, shape = (n_samples, len(months))
    """
    at = np.searchsorted(MONTH_GRID, months)
    last = int(at.max()) + 1
    design = np.asarray(design, dtype=float)
    step_cause = np.exp(design @ cause.coef)[:, None] * cause.baseline_increments[:last]
    step_competing = np.exp(design @ competing.coef)[:, None] * competing.baseline_increments[:last]
    step_total = step_cause + step_competing
    survival_before = np.exp(-(np.cumsum(step_total, -1) - step_total))
    share = np.divide(step_cause, step_total, out=np.zeros_like(step_total), where=step_total > 0)
    return np.cumsum(survival_before * share * -np.expm1(-step_total), -1)[:, at]


MEASURES = {
    "hpfs": "probability of being alive and free of hepatic progression",
    "os": "probability of being alive",
    "hepatic_progression": (
        "cumulative incidence of hepatic progression (death as a competing event)"
    ),
}
"""What each explained curve measures; for the incidence, a positive contribution is worse."""

METHOD = (
    "exact Shapley values over the patient's fields (all 1,024 coalitions), each field swapped "
    "between this patient and the reference patient, computed from the model's own curves "
    "(SurvSHAP(t)-style baseline Shapley)"
)

CONTRIBUTION_DIGITS = 8
"""Decimals of a probability contribution: ten of them still add up to within 1e-7."""


def contributions_over_time(games, patient: dict, labels: dict[str, str]) -> dict:
    """Each field's contribution to each curve at 12, 24 and 36 months, JSON-ready.

    Parameters
    ----------
    games : dict
        Curve name (a key of :data:`MEASURES`) to a function from designs, shape
        (n_samples, n_features), to the curve at :data:`CONTRIBUTION_HORIZONS`, shape
        (n_samples, len(CONTRIBUTION_HORIZONS)).
    patient : dict
        The patient's explained fields, as :func:`coalition_designs` takes them.
    labels : dict
        :func:`model.explain.field_labels` of the patient.

    Returns
    -------
    dict
        ``scale``, ``method``, ``reference_patient``, ``reference``, ``horizons`` and, per
        curve, ``at``: per month the patient's ``value``, the reference's
        ``reference_value`` and ``items`` (field, factor, label, contribution) sorted by
        absolute contribution; the contributions add up to value - reference_value.
    """
    design = coalition_designs(patient)
    out = {
        "scale": "probability (multiply by 100 for percentage points)",
        "method": METHOD,
        "reference_patient": dict(REFERENCE_PATIENT),
        "reference": f"The reference patient is {REFERENCE_TEXT}.",
        "horizons": list(CONTRIBUTION_HORIZONS),
    }
    for name, value_of in games.items():
        values = np.asarray(value_of(design), dtype=float)
        shapley = exact_shapley(values)
        out[name] = {
            "measure": MEASURES[name],
            "at": [
                _horizon_entry(month, values[-1, h], values[0, h], shapley[:, h], labels)
                for h, month in enumerate(CONTRIBUTION_HORIZONS)
            ],
        }
    return out


def _horizon_entry(month, value, reference_value, shapley, labels) -> dict:
    order = np.argsort(-np.abs(shapley), kind="stable")
    return {
        "month": month,
        "value": round(float(value), CONTRIBUTION_DIGITS),
        "reference_value": round(float(reference_value), CONTRIBUTION_DIGITS),
        "items": [
            {
                "field": _FIELDS[j],
                "factor": FIELD_FACTORS[_FIELDS[j]],
                "label": labels[_FIELDS[j]],
                "contribution": round(float(shapley[j]), CONTRIBUTION_DIGITS),
            }
            for j in order
        ],
    }
