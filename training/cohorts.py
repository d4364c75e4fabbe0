"""Which cohort a run trains on: the built-in synthetic one or a source, its label and order."""

from __future__ import annotations

import pandas as pd

from model.schema import TRUTH_PREFIX
from training.exceptions import CohortLabelError, CohortValidationError
from training.holdout import holdout_mask
from training.sources import read_source
from training.synthetic import CohortSpec, simulate_cohort
from training.validate import Problem, validate_cohort

DEFAULT_SYNTHETIC_SIZE = 2000
BUILT_IN_COHORT = "synthetic"
"""`--data` naming the built-in synthetic cohort (``synthetic`` or ``synthetic:N``)."""
COHORT_LABELS = ("synthetic", "real")
HOW_TO_DECLARE = (
    "declare the cohort with --label real (a registry of real patients) or --label synthetic "
    "(simulated data)"
)


def canonical_order(cohort: pd.DataFrame) -> pd.DataFrame:
    """Rows by `patient_id`, index 0..n-1: the models depend on the rows, not on export order."""
    return cohort.sort_values("patient_id", kind="stable").reset_index(drop=True)


def is_built_in(data: str) -> bool:
    """Whether `--data` names the built-in synthetic cohort rather than a file or database."""
    return data == BUILT_IN_COHORT or data.startswith(f"{BUILT_IN_COHORT}:")


def declared_label(data: str, label: str | None) -> str:
    """The cohort label of a `netprog train` run, checked before anything is read.

    Only the built-in synthetic cohort is labelled without a declaration. Every other cohort,
    file or database alike, must be declared: a label inferred from the columns would call
    simulated data without `true_*` columns "real" and drop the not-for-clinical-use warning
    from every answer, so an undeclared cohort is refused instead.

    Raises
    ------
    CohortLabelError
        If `label` is missing for a file or database cohort, or is "real" for the built-in
        synthetic cohort.
    """
    if is_built_in(data):
        if label not in (None, "synthetic"):
            raise CohortLabelError(
                f"--data {data} is the built-in synthetic cohort, so --label must be synthetic "
                f"(or left out), but got --label {label}"
            )
        return "synthetic"
    if label not in COHORT_LABELS:
        raise CohortLabelError(
            f"--label must be given for every cohort but the built-in synthetic one, but "
            f"--data {data} came without it; {HOW_TO_DECLARE}. Nothing was read or fitted."
        )
    return label


def check_label(cohort: pd.DataFrame, label: str | None) -> str:
    """`label` if it is a cohort label the data does not contradict.

    Raises
    ------
    CohortLabelError
        If `label` is not "synthetic" or "real", or is "real" for a cohort that carries the
        synthetic generator's `true_*` columns.
    """
    if label not in COHORT_LABELS:
        raise CohortLabelError(
            f"`cohort_label` must be one of {COHORT_LABELS}, but got {label!r}; {HOW_TO_DECLARE}"
        )
    truth = sorted(str(c) for c in cohort.columns if str(c).startswith(TRUTH_PREFIX))
    if label == "real" and truth:
        raise CohortLabelError(
            f"the cohort is declared real but carries the synthetic generator's columns "
            f"({', '.join(truth[:3])}{', …' if len(truth) > 3 else ''}); simulated data must "
            "be declared with --label synthetic"
        )
    return label


def builtin_default_spec(data: str) -> CohortSpec | None:
    """The specification the built-in default (``--data synthetic[:N]``) is simulated from."""
    return CohortSpec.load() if is_built_in(data) else None


def resolve_cohort(data: str, seed: int = 0, query: str | None = None) -> pd.DataFrame:
    """Load and validate the cohort named by `--data`.

    `data` is a CSV or Parquet file, an SQLAlchemy URL with `query` (see
    :func:`training.sources.read_source`), or ``synthetic[:N]`` for the synthetic default.
    Every source passes the one cohort validation; the rows come back in canonical order.
    """
    if is_built_in(data):
        size = int(data.partition(":")[2] or DEFAULT_SYNTHETIC_SIZE)
        return canonical_order(validate_cohort(simulate_cohort(size, seed)))
    return canonical_order(validate_cohort(read_source(data, query)))


def split_holdout(cohort: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The development rows (fitting, tuning, CV) and the held-out test rows (`holdout`)."""
    held_out = holdout_mask(cohort["patient_id"], fraction)
    development = cohort[~held_out].reset_index(drop=True)
    if development.empty or not development["os_event"].any():
        raise CohortValidationError(
            [
                Problem(
                    None,
                    None,
                    f"no development rows with events remain after holding out "
                    f"{fraction:.0%}; lower --holdout-fraction",
                )
            ],
            len(cohort),
        )
    return development, cohort[held_out].reset_index(drop=True)
