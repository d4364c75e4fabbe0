"""The held-out test split: a fixed rule on the patient id, the same in every training run.

A patient is held out when a keyed SHA-256 of their `patient_id`, read as a number in [0, 1),
falls below the held-out fraction. The rule depends on nothing but the id (not on the seed,
the cohort size or the row order), so a patient held out by one run is held out by every
run with the same or a larger fraction: as a registry export grows, the models trained on the
old and the new exports never see each other's held-out patients, and the promotion gate can
compare them on patients neither was trained on.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_HOLDOUT_FRACTION",
    "HOLDOUT_RULE",
    "holdout_mask",
    "holdout_scores",
    "patient_hashes",
]

DEFAULT_HOLDOUT_FRACTION = 0.2
HOLDOUT_RULE = "sha256('netprog-holdout-v1:' + patient_id) / 2**64 < fraction"
_HOLDOUT_KEY = "netprog-holdout-v1:"
_PATIENT_KEY = "netprog-patient-v1:"


def holdout_scores(patient_ids: pd.Series) -> np.ndarray:
    """Each patient's position in [0, 1) under the held-out rule, shape = (n_patients,)."""
    return np.array(
        [
            int.from_bytes(hashlib.sha256(f"{_HOLDOUT_KEY}{pid}".encode()).digest()[:8], "big")
            / 2.0**64
            for pid in patient_ids.astype(str)
        ]
    )


def holdout_mask(patient_ids: pd.Series, fraction: float) -> np.ndarray:
    """True for the patients held out at `fraction` (0 holds out nobody)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in [0, 1), but got {fraction!r}")
    return holdout_scores(patient_ids) < fraction


def patient_hashes(patient_ids: pd.Series) -> list[str]:
    """Keyed SHA-256 of each id (hex, in row order): which patients a model saw, not who."""
    return [
        hashlib.sha256(f"{_PATIENT_KEY}{pid}".encode()).hexdigest()
        for pid in patient_ids.astype(str)
    ]
