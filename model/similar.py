"""Patients like this one: the Kaplan-Meier curve of a group of similar training patients.

The rule, stated in every answer: the training patients with the same WHO grade and the same
tumour-burden category as this patient, sorted by their log relative hazard under the
endpoint's primary model (each under the modality they received), are split into consecutive
groups of at least `k` (:data:`K_SIMILAR`; fewer than `k` only where the whole stratum is
smaller); the group whose risk scores span this patient's (under the planned modality) is
shown. Nothing is shown when fewer than :data:`MIN_SIMILAR` training patients share the grade
and burden category.

What a bundle holds for this (:func:`similarity_tables`, made at training time) are only the
groups' aggregates: per endpoint, model family and stratum, the stratum's size, the risk
scores where one group ends and the next begins, and per group its size, its number of
events, its Kaplan-Meier curve (:func:`kaplan_meier_on_grid`: it stops where fewer than
:data:`MIN_AT_RISK_SHOWN` are still followed) and its numbers at risk. No patient's row, time,
event or risk score is kept, and the groups are fixed, not re-drawn around each patient, so
that answers for neighbouring patients cannot be differenced to reveal one patient's outcome.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from model.bundle import MONTH_GRID
from model.schema import ENDPOINTS, burden_categories, effective_grades
from model.support import burden_label

__all__ = ["K_SIMILAR", "MIN_SIMILAR", "SimilarPatients", "similarity_tables"]

K_SIMILAR = 50
"""The smallest group of similar training patients a curve is made of (groups hold between
`k` and ``2k - 1``), unless the whole stratum is smaller."""

MIN_SIMILAR = 20
"""Below this many training patients of the same grade and burden category, nothing is shown:
a curve of fewer patients says little and comes closer to describing individuals."""

AT_RISK_EVERY_MONTHS = 12

MIN_AT_RISK_SHOWN = 5
"""The curve stops where fewer than this many of the group are still followed: a step of the
last few would tell one patient's outcome."""

_DIGITS = 4
"""Decimals of the Kaplan-Meier survival, as of the model's curves."""


def similarity_tables(
    cohort: pd.DataFrame, design, models: dict, *, k: int = K_SIMILAR, minimum: int = MIN_SIMILAR
) -> dict:
    """The groups' aggregates that :class:`SimilarPatients` answers from.

    Parameters
    ----------
    cohort : DataFrame
        The validated training cohort.
    design : ndarray, shape = (n_patients, n_features)
        Its encoding under the modality each patient received.
    models : dict
        ``{endpoint: {family: EndpointModel}}`` fitted on it.
    k, minimum : int
        :data:`K_SIMILAR` and :data:`MIN_SIMILAR`.

    Returns
    -------
    dict
        ``{"k", "minimum", "strata": {endpoint: {family: {(grade, burden): stratum}}}}``, a
        stratum being ``{"n": int, "cuts": list of float, "groups": list of dict}`` (no cuts
        and no groups below `minimum`); a group holds ``n_patients``, ``n_events``, ``curve``
        and ``numbers_at_risk``.
    """
    design = np.asarray(design, dtype=float)
    grades = effective_grades(cohort).to_numpy(dtype=object)
    burdens = burden_categories(cohort["tumor_burden_percent"])
    strata: dict = {}
    for endpoint in ENDPOINTS:
        months = cohort[f"{endpoint}_months"].to_numpy(dtype=float)
        event = cohort[f"{endpoint}_event"].to_numpy(dtype=bool)
        strata[endpoint] = {}
        for family, model in models[endpoint].items():
            log_hazard = np.asarray(model.full.log_hazard(design), dtype=float)
            strata[endpoint][family] = {
                key: _stratum(log_hazard[rows], months[rows], event[rows], k, minimum)
                for key, rows in _strata_rows(grades, burdens).items()
            }
    return {"k": k, "minimum": minimum, "strata": strata}


def _strata_rows(grades, burdens) -> dict[tuple, np.ndarray]:
    keys = pd.Series(list(zip(grades, burdens, strict=True)))
    return {key: rows.to_numpy() for key, rows in keys.groupby(keys).groups.items()}


def _stratum(log_hazard, months, event, k: int, minimum: int) -> dict:
    """One stratum's groups: consecutive in risk score, each of at least `k` patients."""
    if len(months) < minimum:
        return {"n": len(months), "cuts": [], "groups": []}
    order = np.argsort(log_hazard, kind="stable")
    groups = np.array_split(order, max(1, len(order) // k))
    cuts = [
        float((log_hazard[before].max() + log_hazard[after].min()) / 2)
        for before, after in zip(groups[:-1], groups[1:], strict=True)
    ]
    summaries = []
    for rows in groups:
        curve, at_risk = kaplan_meier_on_grid(months[rows], event[rows])
        summaries.append(
            {
                "n_patients": len(rows),
                "n_events": int(event[rows].sum()),
                "curve": curve,
                "numbers_at_risk": at_risk,
            }
        )
    return {"n": len(months), "cuts": cuts, "groups": summaries}


def kaplan_meier_on_grid(months, event) -> tuple[list[dict], list[dict]]:
    """Kaplan-Meier survival on the month grid, and numbers at risk, while enough are followed.

    The product-limit estimate is written out here rather than taken from sksurv's
    ``kaplan_meier_estimator``, whose input checks cost 0.2 ms a call, a tenth of a batch of
    1,000 prognoses' budget on their own; the test suite checks it against lifelines.

    Returns
    -------
    curve : list of dict
        ``{"month", "survival"}`` for every grid month at which at least
        :data:`MIN_AT_RISK_SHOWN` patients are still followed.
    at_risk : list of dict
        ``{"month", "at_risk"}`` every 12 months over the same months.
    """
    months = np.asarray(months, dtype=float)
    order = np.argsort(months, kind="stable")
    times, first = np.unique(months[order], return_index=True)
    deaths = np.add.reduceat(np.asarray(event, dtype=float)[order], first)
    survival = np.cumprod(1.0 - deaths / (len(months) - first))
    ordered = months[order]
    # Patients still followed at month m: those whose time is >= m.
    followed = len(ordered) - np.searchsorted(ordered, MONTH_GRID, side="left")
    grid = MONTH_GRID[(MONTH_GRID <= months.max()) & (followed >= MIN_AT_RISK_SHOWN)]
    steps = np.searchsorted(times, grid, side="right") - 1
    on_grid = np.where(steps >= 0, survival[np.maximum(steps, 0)], 1.0)
    at_risk_months = grid[grid % AT_RISK_EVERY_MONTHS == 0]
    at_risk = len(ordered) - np.searchsorted(ordered, at_risk_months, side="left")
    return (
        [
            {"month": int(m), "survival": s}
            for m, s in zip(
                grid.astype(int).tolist(), np.round(on_grid, _DIGITS).tolist(), strict=True
            )
        ],
        [
            {"month": int(m), "at_risk": int(n)}
            for m, n in zip(at_risk_months, at_risk, strict=True)
        ],
    )


class SimilarPatients:
    """The "patients like this one" summary of one bundle.

    Parameters
    ----------
    tables : dict
        :func:`similarity_tables` of the training cohort (``bundle.similar_patients``).
    synthetic : bool
        Whether the training patients are synthetic (every summary then says so).
    """

    def __init__(self, tables: dict, *, synthetic: bool):
        self.synthetic = synthetic
        self.k = tables["k"]
        self.minimum = tables["minimum"]
        self._strata = tables["strata"]

    def group(self, endpoint, family, grade, burden, log_hazard) -> dict | None:
        """The aggregate of the group whose risk scores span `log_hazard`, or None below the
        minimum."""
        stratum = self._strata[endpoint][family].get((grade, burden))
        if stratum is None or not stratum["groups"]:
            return None
        return stratum["groups"][int(np.searchsorted(stratum["cuts"], log_hazard))]

    def summary(self, families: dict[str, str], grade, burden, log_hazards: dict) -> dict:
        """The JSON summary for one patient: the rule, and per endpoint the curve or why not.

        Parameters
        ----------
        families : dict
            The primary model family per endpoint.
        grade, burden : str
            The patient's effective WHO grade and burden category.
        log_hazards : dict
            The patient's log relative hazard per endpoint, under the planned modality.
        """
        out = {
            "rule": (
                f"Training patients with the same WHO grade ({grade}) and tumour burden "
                f"({burden_label(burden)}) as this patient, sorted by risk score (the model's "
                "log relative hazard, each under the treatment they received) and split into "
                f"fixed groups of at least {self.k}; shown is the group whose risk scores span "
                "this patient's under the planned treatment."
            ),
            "k": self.k,
            "minimum": self.minimum,
            "synthetic": self.synthetic,
            "note": (
                (
                    "These are synthetic (simulated) training patients, not real people. "
                    if self.synthetic
                    else ""
                )
                + "Shown only in aggregate, as a Kaplan-Meier curve with numbers at risk; "
                "what happened to them is observed, not what the model predicts."
            ),
        }
        for endpoint, family in families.items():
            group = self.group(endpoint, family, grade, burden, log_hazards[endpoint])
            out[endpoint] = self._endpoint_entry(group, endpoint, family, grade, burden)
        return out

    def _endpoint_entry(self, group, endpoint, family, grade, burden) -> dict:
        if group is None:
            stratum = self._strata[endpoint][family].get((grade, burden))
            size = 0 if stratum is None else stratum["n"]
            return {
                "shown": False,
                "n_patients": None,
                "reason": (
                    f"Only {size} training patient(s) share this grade and burden category, "
                    f"fewer than the minimum of {self.minimum}: no curve is shown."
                ),
                "curve": None,
                "numbers_at_risk": None,
            }
        return {
            "shown": True,
            "n_patients": group["n_patients"],
            "n_events": group["n_events"],
            "curve": [dict(point) for point in group["curve"]],
            "numbers_at_risk": [dict(point) for point in group["numbers_at_risk"]],
        }
