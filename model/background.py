"""The explanation background as a summary: weighted cluster centres, never a patient's row.

SHAP values are measured from an average over training patients (the *background*). Keeping
training rows for it would ship patient-level data with every served model; instead the
encoded design matrix is summarised by k-means (scikit-learn's `KMeans`) into cluster centres,
each weighted by its share of the cohort. Every centre averages at least
`min_cluster_size` patients: smaller clusters are dissolved into their nearest centre until
none is left. The weighted mean of the centres is the cohort's mean, so the linear model's
SHAP values and base value are exactly those of the whole cohort; for interventional
TreeSHAP the centres stand in for the rows, each repeated in proportion to its weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from model.exceptions import ModelError

__all__ = ["RISK_QUANTILES", "SummarisedBackground", "risk_quantiles", "summarise_background"]


@dataclass(frozen=True)
class SummarisedBackground:
    """Cluster centres of the encoded training patients and their weights (summing to 1).

    Attributes
    ----------
    centres : DataFrame, shape = (n_centres, n_features)
    weights : ndarray, shape = (n_centres,)
    n_patients : int
        Patients summarised.
    """

    centres: pd.DataFrame
    weights: np.ndarray
    n_patients: int

    def repeated(self, rows: int = 100) -> np.ndarray:
        """The centres, each repeated in proportion to its weight (about `rows` rows in all),
        for methods that take unweighted background rows."""
        counts = np.maximum(1, np.round(self.weights * rows).astype(int))
        # float32-representable: shap's trees and xgboost's compare a centre's fractional
        # values with the split thresholds in different precisions otherwise.
        centres = self.centres.to_numpy(dtype=np.float32).astype(float)
        return np.repeat(centres, counts, axis=0)


def summarise_background(
    design: pd.DataFrame, *, n_clusters: int = 20, min_cluster_size: int = 10, seed: int = 0
) -> SummarisedBackground:
    """Weighted k-means centres of `design`, each averaging at least `min_cluster_size` rows.

    Parameters
    ----------
    design : DataFrame, shape = (n_samples, n_features)
        The encoded training patients.
    n_clusters : int
        Centres sought before small clusters are dissolved.
    min_cluster_size : int
        Fewest patients behind one centre.
    seed : int
        Seeds k-means.

    Raises
    ------
    ModelError
        `design` has fewer than `min_cluster_size` rows.
    """
    values = design.to_numpy(dtype=float)
    if len(values) < min_cluster_size:
        raise ModelError(
            f"the explanation background must summarise at least {min_cluster_size} patients, "
            f"but got {len(values)}; train on a larger cohort"
        )
    k = max(1, min(n_clusters, len(values) // min_cluster_size))
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(values)
    labels = _dissolve_small(values, labels, min_cluster_size)
    kept = np.unique(labels)
    centres = np.vstack([values[labels == c].mean(axis=0) for c in kept])
    sizes = np.array([(labels == c).sum() for c in kept], dtype=float)
    return SummarisedBackground(
        centres=pd.DataFrame(centres, columns=design.columns),
        weights=sizes / sizes.sum(),
        n_patients=len(values),
    )


def _dissolve_small(values: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    """Reassign the members of the smallest too-small cluster to their nearest other centre,
    one cluster at a time, until every cluster holds `min_size` rows or more."""
    labels = labels.copy()
    while True:
        kept, sizes = np.unique(labels, return_counts=True)
        if sizes.min() >= min_size or len(kept) == 1:
            return labels
        smallest = kept[np.argmin(sizes)]
        others = kept[kept != smallest]
        centres = np.vstack([values[labels == c].mean(axis=0) for c in others])
        members = labels == smallest
        distances = ((values[members, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        labels[members] = others[np.argmin(distances, axis=1)]


RISK_QUANTILES = 201
"""Points of the training cohort's log-hazard distribution kept for risk percentiles."""


def risk_quantiles(log_hazard: np.ndarray, n_points: int = RISK_QUANTILES) -> np.ndarray:
    """The training cohort's log relative hazards as `n_points` quantiles (0 to 100 %), in
    place of one value per patient: a risk percentile read from them is within
    100 / (n_points - 1) percentage points of the one read from every patient."""
    values = np.asarray(log_hazard, dtype=float)
    return np.quantile(values, np.linspace(0.0, 1.0, n_points))
