"""Errors raised while reading, validating and training on cohorts."""

from __future__ import annotations

# The store's errors, defined in store/exceptions.py, are raised through training's commands too.
from store.exceptions import BundleIntegrityError, RegistryError, StoreError

__all__ = [
    "BundleIntegrityError",
    "CohortLabelError",
    "CohortReadError",
    "CohortValidationError",
    "DeviceUnavailableError",
    "EvaluationInputError",
    "GateRefusedError",
    "MissingTruthError",
    "ParallelBackendError",
    "RegistryError",
    "SourceUnavailableError",
    "StoreError",
    "TrainingError",
    "UNFITTABLE",
    "UpdateInputError",
]

UNFITTABLE = "the cohort could not be fitted"
"""How `netprog train` and `netprog update` introduce a fit that diverged on the cohort
(:class:`model.exceptions.FitDiverged`), which they refuse as invalid data (exit 2)."""


class TrainingError(ValueError):
    """Base class of the training package's errors."""


class CohortReadError(TrainingError):
    """A cohort file could not be read at all."""


class CohortValidationError(TrainingError):
    """A cohort failed validation; `problems` lists every problem found."""

    def __init__(self, problems, n_rows: int, max_shown: int = 50):
        self.problems = list(problems)
        self.n_rows = n_rows
        shown = "\n".join(f"  - {p}" for p in self.problems[:max_shown])
        rest = len(self.problems) - max_shown
        more = f"\n  ... and {rest} more problem(s)" if rest > 0 else ""
        super().__init__(
            f"cohort of {n_rows} row(s) is invalid: {len(self.problems)} problem(s); nothing was "
            f"loaded. Rows are counted from 1 (the first data row).\n{shown}{more}"
        )


class EvaluationInputError(TrainingError):
    """Outcomes, predictions or a cohort handed to an evaluation do not fit together."""


class MissingTruthError(TrainingError):
    """An oracle quantity was asked of a cohort without the generator's `true_*` columns."""


class SourceUnavailableError(TrainingError):
    """A cohort source (a database) could not be reached; the data itself may be fine."""


class GateRefusedError(TrainingError):
    """A candidate model failed the promotion gate; `decision` holds every check."""

    def __init__(self, message: str, decision: dict):
        self.decision = decision
        super().__init__(message)


class ParallelBackendError(TrainingError):
    """The requested parallel backend (a Dask cluster) is not installed or not reachable."""


class CohortLabelError(TrainingError):
    """A cohort was not declared synthetic or real, or its declaration contradicts the data."""


class DeviceUnavailableError(TrainingError):
    """`--device cuda` was asked for on a machine without a usable CUDA GPU."""


class UpdateInputError(TrainingError):
    """A local cohort or base model cannot support model updating; nothing was registered."""
