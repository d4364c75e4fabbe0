"""Patients like this one: the Kaplan-Meier curve of the most similar training patients.

The rule, stated in every answer: the training patients with the same WHO grade and the same
tumour-burden category as this patient, and among them the `k` whose log relative hazard
under the endpoint's primary model (each under the modality they received) is nearest this
patient's (under the planned modality). Their outcome is shown only as an aggregate, a
Kaplan-Meier curve with numbers at risk (:func:`kaplan_meier_on_grid`), never row by
row, and not at all when fewer than :data:`MIN_SIMILAR` training patients share the grade and
burden category.

What a bundle holds for this (:func:`similarity_tables`, made at training time) is the least
that the rule needs: per endpoint and training patient, the grade, the burden category, the
log relative hazard of each model family and the follow-up time and event, with no identifier
and no other field.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from model.bundle import MONTH_GRID
from model.schema import ENDPOINTS, burden_categories, effective_grades
from model.support import burden_label

__all__ = ["K_SIMILAR", "MIN_SIMILAR", "SimilarPatients", "similarity_tables"]

K_SIMILAR = 50
"""How many of the most similar training patients make the curve (fewer if fewer share the
grade and burden category)."""

MIN_SIMILAR = 20
"""Below this many training patients of the same grade and burden category, nothing is shown:
a curve of fewer patients says little and comes closer to describing individuals."""

AT_RISK_EVERY_MONTHS = 12

MIN_AT_RISK_SHOWN = 5
"""The curve stops where fewer than this many of the selected patients are still followed:
a step of the last few would tell one patient's outcome."""

_DIGITS = 4
"""Decimals of the Kaplan-Meier survival, as of the model's curves."""


def similarity_tables(cohort: pd.DataFrame, design, models: dict) -> dict[str, pd.DataFrame]:
    """What :class:`SimilarPatients` needs of the training cohort, per endpoint.

    Parameters
    ----------
    cohort : DataFrame
        The validated training cohort.
    design : ndarray, shape = (n_patients, n_features)
        Its encoding under the modality each patient received.
    models : dict
        ``{endpoint: {family: EndpointModel}}`` fitted on it.

    Returns
    -------
    dict
        ``{endpoint: DataFrame}`` with columns `who_grade`, `burden_category`,
        ``log_hazard_{family}`` per family, `months` and `event`; no identifier.
    """
    design = np.asarray(design, dtype=float)
    strata = {
        "who_grade": effective_grades(cohort).to_numpy(dtype=object),
        "burden_category": burden_categories(cohort["tumor_burden_percent"]),
    }
    return {
        endpoint: pd.DataFrame(
            {
                **strata,
                **{
                    f"log_hazard_{name}": np.asarray(model.full.log_hazard(design), dtype=float)
                    for name, model in models[endpoint].items()
                },
                "months": cohort[f"{endpoint}_months"].to_numpy(dtype=float),
                "event": cohort[f"{endpoint}_event"].to_numpy(dtype=bool),
            }
        )
        for endpoint in ENDPOINTS
    }


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
    k, minimum : int
        :data:`K_SIMILAR` and :data:`MIN_SIMILAR`.
    """

    def __init__(self, tables: dict, *, synthetic: bool, k=K_SIMILAR, minimum=MIN_SIMILAR):
        self.synthetic = synthetic
        self.k = k
        self.minimum = minimum
        # Keyed by the selected rows: patients with the same selection share one curve, and
        # the selections are few (at most one per window of k rows in each stratum).
        self._curves: dict[tuple, tuple[list, list]] = {}
        self._tables = tables
        self._strata = {
            endpoint: {
                key: {name: rows[name].to_numpy() for name in rows.columns} | {"row": rows.index}
                for key, rows in table.groupby(["who_grade", "burden_category"])
            }
            for endpoint, table in tables.items()
        }

    def _nearest(self, endpoint, family, grade, burden, log_hazard) -> np.ndarray | None:
        stratum = self._strata[endpoint].get((grade, burden))
        if stratum is None or len(stratum["months"]) < self.minimum:
            return None
        distance = np.abs(stratum[f"log_hazard_{family}"] - log_hazard)
        return np.sort(np.argsort(distance, kind="stable")[: self.k])

    def selected(self, endpoint, family, grade, burden, log_hazard) -> pd.DataFrame | None:
        """The selected training rows (for tests: never part of an answer), or None below the
        minimum."""
        nearest = self._nearest(endpoint, family, grade, burden, log_hazard)
        if nearest is None:
            return None
        rows = self._strata[endpoint][(grade, burden)]["row"][nearest]
        return self._tables[endpoint].loc[rows]

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
                f"({burden_label(burden)}) as this patient; of them, the {self.k} whose risk "
                "score (the model's log relative hazard, each under the treatment they "
                "received) is closest to this patient's under the planned treatment."
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
            nearest = self._nearest(endpoint, family, grade, burden, log_hazards[endpoint])
            out[endpoint] = self._endpoint_entry(nearest, grade, burden, endpoint)
        return out

    def _endpoint_entry(self, nearest, grade, burden, endpoint) -> dict:
        stratum = self._strata[endpoint].get((grade, burden))
        if nearest is None or stratum is None:
            size = 0 if stratum is None else len(stratum["months"])
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
        months, event = stratum["months"][nearest], stratum["event"][nearest]
        key = (endpoint, grade, burden, nearest.tobytes())
        if key not in self._curves:
            self._curves[key] = kaplan_meier_on_grid(months, event)
        curve, at_risk = self._curves[key]
        return {
            "shown": True,
            "n_patients": len(nearest),
            "n_events": int(event.sum()),
            "curve": [dict(point) for point in curve],
            "numbers_at_risk": [dict(point) for point in at_risk],
        }
