"""Missing data as information: how much is missing, where, and whether it tracks the outcome.

The report and the model card show, per imputable field, how many patients lack it, overall and
per centre, and a missingness-indicator check: a log-rank test of HPFS and OS between patients
with and without the field recorded. A clear difference says the field is not missing
completely at random; it cannot say whether it is missing at random given the other fields
and the outcome (MAR), the assumption multiple imputation rests on, which no data can prove.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sksurv.compare import compare_survival

from model.schema import ENDPOINTS, IMPUTED_QUANTITIES
from model.unknown_fields import field_label
from training.imputation import MICE_ITERATIONS, missing_mask, n_imputations

__all__ = ["MAR_CAVEAT", "missing_data_record", "missingness_summary", "summary_lines"]

MAR_CAVEAT = (
    "Multiple imputation assumes the values are missing at random given the recorded fields, "
    "the centre and the outcome (MAR). The data cannot confirm it: a field left empty because "
    "of its own unrecorded value (e.g. burden not measured because it was obviously high) "
    "would bias the imputed values. The missingness-indicator check shows whether missingness "
    "goes with the outcome; it does not test MAR."
)
MIN_GROUP = 5
"""Patients needed on each side (recorded, missing) for the indicator check."""


def missingness_summary(cohort: pd.DataFrame) -> dict:
    """Missing values per imputable field, overall and per centre.

    Returns
    -------
    dict
        ``{"n_patients", "n_incomplete", "fields": {name: {"label", "n_missing", "percent"}},
        "by_center": {center: {name: percent}}}`` (`by_center` empty without a centre column).
    """
    mask = missing_mask(cohort)
    fields = {
        name: {
            "label": field_label(name),
            "n_missing": int(mask[name].sum()),
            "percent": round(100.0 * float(mask[name].mean()), 1),
        }
        for name in IMPUTED_QUANTITIES
    }
    by_center: dict[str, dict[str, float]] = {}
    if "center" in cohort:
        for center, rows in mask.groupby(cohort["center"].astype(str).to_numpy()):
            by_center[str(center)] = {n: round(100.0 * float(rows[n].mean()), 1) for n in rows}
    return {
        "n_patients": len(cohort),
        "n_incomplete": int(mask.any(axis=1).sum()),
        "fields": fields,
        "by_center": by_center,
    }


def indicator_check(cohort: pd.DataFrame) -> dict:
    """Per field with enough missing values, the log-rank test of each endpoint by missingness."""
    mask = missing_mask(cohort)
    out: dict[str, dict] = {}
    for name in IMPUTED_QUANTITIES:
        missing = mask[name].to_numpy()
        if min(missing.sum(), (~missing).sum()) < MIN_GROUP:
            continue
        out[name] = {}
        for endpoint in ENDPOINTS:
            target = np.array(
                list(zip(cohort[f"{endpoint}_event"].astype(bool),
                         cohort[f"{endpoint}_months"].astype(float), strict=True)),
                dtype=[("event", bool), ("months", float)],
            )  # fmt: skip
            chi2, p_value = compare_survival(target, missing)
            out[name][endpoint] = {"chi2": round(float(chi2), 2), "p_value": float(p_value)}
    return out


def missing_data_record(cohort: pd.DataFrame, m: int | None = None) -> dict:
    """What the report, the model card and the bundle's metadata say about missing data."""
    summary = missingness_summary(cohort)
    record = {
        **summary,
        "indicator_check": indicator_check(cohort),
        "caveat": MAR_CAVEAT,
    }
    if summary["n_incomplete"]:
        record["imputation"] = {
            "method": "multiple imputation by chained equations (scikit-learn IterativeImputer, "
            "Bayesian ridge, sample_posterior=True; the grade and the booleans then drawn "
            "from bootstrapped logistic regressions)",
            "m": int(m if m is not None else n_imputations(cohort)),
            "iterations": MICE_ITERATIONS,
            "variables": "every predictor, received modality, centre, HPFS and OS event "
            "indicators and Nelson-Aalen cumulative hazards, and those outcome terms times "
            "each modality",
            "pooling": "Rubin's rules for the Cox coefficients and baseline; predictions "
            "averaged over imputations",
        }
    return record


def summary_lines(cohort: pd.DataFrame) -> list[str]:
    """The per-field missingness lines `netprog validate` prints."""
    summary = missingness_summary(cohort)
    lines = [
        f"{summary['n_incomplete']} of {summary['n_patients']} patients lack at least one "
        "imputable predictor (multiple imputation in training):"
    ]
    for name, entry in summary["fields"].items():
        lines.append(f"  {name}: {entry['n_missing']} missing ({entry['percent']:g} %)")
    for center, percents in summary["by_center"].items():
        shown = ", ".join(f"{n} {p:g} %" for n, p in percents.items() if p)
        lines.append(f"  centre {center}: {shown or 'complete'}")
    return lines
