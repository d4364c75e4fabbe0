"""`netprog monitor`: each followed patient against the model in production at their treatment.

The production pointer's history (store/registry.py) says which model was in production from
when; a patient treated on day ``d`` is judged by the model in production at 00:00 UTC that
day, the one whose prognosis the tumour board could have seen. Patients treated before the
first model entered production are not monitored (counted as such). The statistics are
:mod:`training.monitoring`'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from model.bundle import ModelBundle
from model.schema import ENDPOINTS
from model.unknown_fields import served_survival
from store import registry
from training.evaluate.report import to_jsonable
from training.exceptions import CohortValidationError, EvaluationInputError
from training.fit import survival_target
from training.held_out import predict_rows
from training.monitoring import (
    CUSUM_HAZARD_RATIO,
    CUSUM_HORIZON_MONTHS,
    DEFAULT_FALSE_ALARM,
    DEFAULT_NULL_STREAMS,
    MONITOR_HORIZONS,
    crossing,
    cumulative_hazard_at,
    cusum_paths,
    endpoint_figures,
    simulated_control_limit,
    window_starts,
)
from training.synthetic import MONTH_DAYS
from training.validate import Problem, validate_cohort

__all__ = [
    "DEFAULT_WINDOW_MONTHS",
    "Period",
    "drift_check",
    "monitor_cohort",
    "monitor_predictions",
    "predict_survival",
    "production_periods",
    "treatment_dates",
]

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_MONTHS = 6
"""Width of the treatment-date windows of the report (calendar half-years)."""


@dataclass(frozen=True)
class Period:
    """A model in production from `start` (UTC) until the next period's start."""

    start: pd.Timestamp
    tag: str


def production_periods(history: list[dict] | None = None) -> list[Period]:
    """The production pointer's history as periods, oldest first (promotions and rollbacks)."""
    history = registry.pointer_history() if history is None else history
    periods = [
        Period(pd.Timestamp(entry["at"]).tz_convert("UTC").tz_localize(None), str(entry["tag"]))
        for entry in history
        if entry.get("action") in ("promote", "rollback")
    ]
    return sorted(periods, key=lambda period: period.start)


def treatment_dates(frame: pd.DataFrame) -> pd.Series:
    """The parsed `treatment_date` column; CohortValidationError naming each bad row otherwise.

    `treatment_date` is optional for training but required here: it decides which model each
    patient is judged by and the window they fall in.
    """
    if "treatment_date" not in frame:
        raise CohortValidationError(
            [
                Problem(
                    None,
                    "treatment_date",
                    "netprog monitor needs each patient's treatment date (YYYY-MM-DD) to find "
                    "the model in production at the time; add the column",
                )
            ],
            len(frame),
        )
    raw = frame["treatment_date"]
    text = raw.map(lambda value: None if pd.isna(value) else str(value)[:10])
    parsed = pd.to_datetime(text, errors="coerce", format="%Y-%m-%d")
    problems = [
        Problem(int(position) + 1, "treatment_date", "must be a date YYYY-MM-DD (required here)")
        for position in np.flatnonzero(parsed.isna().to_numpy())
    ]
    if problems:
        raise CohortValidationError(problems, len(frame))
    return parsed


def _period_of(dates: pd.Series, periods: list[Period]) -> np.ndarray:
    """Index into `periods` of the model in production at 00:00 UTC of each date; -1 before."""
    starts = np.array([p.start.to_datetime64() for p in periods], dtype="datetime64[ns]")
    return np.searchsorted(starts, dates.to_numpy(dtype="datetime64[ns]"), side="right") - 1


def predict_survival(
    rows: pd.DataFrame, tags: pd.Series, bundles: dict[str, ModelBundle]
) -> dict[str, np.ndarray]:
    """Per endpoint, each row's served survival on MONTH_GRID from the primary model of its tag."""
    predicted = {}
    for endpoint in ENDPOINTS:
        survival = np.empty((len(rows), 121))
        for tag, bundle in bundles.items():
            mask = (tags == tag).to_numpy()
            if mask.any():
                model = bundle.models[endpoint][bundle.primary[endpoint]]
                # A patient with unknown fields is predicted as the service answered: the
                # mixture over the likely values.
                survival[mask] = served_survival(
                    bundle.imputer,
                    lambda part, m=model: predict_rows(m, part)[1],
                    rows.loc[mask],
                )
        predicted[endpoint] = survival
    return predicted


def drift_check(
    rows: pd.DataFrame,
    predicted: dict[str, np.ndarray],
    as_of: pd.Timestamp,
    false_alarm: float = DEFAULT_FALSE_ALARM,
    n_streams: int = DEFAULT_NULL_STREAMS,
    seed: int = 0,
) -> dict[str, Any]:
    """The CUSUM charts (per endpoint, both directions), their control limit and the verdict."""
    follow_up = ((as_of - rows["_date"]).dt.days.to_numpy() / MONTH_DAYS).clip(min=0)
    charts, potential = [], []
    for endpoint in ENDPOINTS:
        y = survival_target(rows, endpoint)
        survival = predicted[endpoint]
        months = np.minimum(y["months"], CUSUM_HORIZON_MONTHS)
        observed = (y["event"] & (y["months"] <= CUSUM_HORIZON_MONTHS)).astype(float)
        expected = cumulative_hazard_at(survival, months)
        potential_months = np.where(y["event"], np.maximum(follow_up, y["months"]), y["months"])
        potential_months = np.minimum(potential_months, CUSUM_HORIZON_MONTHS)
        potential.append(cumulative_hazard_at(survival, potential_months))
        for direction, path in cusum_paths(observed, expected).items():
            charts.append({"endpoint": endpoint, "direction": direction, "path": path})
    limit = simulated_control_limit(potential, false_alarm, n_streams, seed)
    # The month, not the day: a day would be one identifiable patient's treatment date.
    months = rows["_date"].dt.strftime("%Y-%m").to_numpy()
    for chart in charts:
        first = crossing(chart["path"], limit)
        chart.update(
            largest=float(chart["path"].max()),
            flagged=first is not None,
            flagged_at_patient=None if first is None else first + 1,
            flagged_in_month=None if first is None else months[first],
        )
    return {
        "flagged": any(chart["flagged"] for chart in charts),
        "method": (
            "two-sided risk-adjusted CUSUM of observed against expected events in the first "
            f"{CUSUM_HORIZON_MONTHS:g} months, patients in order of treatment date, tuned to a "
            f"hazard × {CUSUM_HAZARD_RATIO} or ÷ {CUSUM_HAZARD_RATIO}; control limit simulated "
            "from the patients' own predictions"
        ),
        "false_alarm_rate": false_alarm,
        "null_streams": n_streams,
        "control_limit": limit,
        "charts": charts,
    }


def _window_table(rows, predicted, window_months) -> list[dict]:
    starts = window_starts(rows["_date"], window_months).to_numpy()
    windows = []
    for start in sorted(set(starts)):
        mask = starts == start
        subset = rows.loc[mask]
        entry = {
            "start": start,
            "n": int(mask.sum()),
            "models": sorted(set(subset["_model"])),
        }
        for endpoint in ENDPOINTS:
            entry[endpoint] = endpoint_figures(
                survival_target(subset, endpoint), predicted[endpoint][mask]
            )
        windows.append(entry)
    return windows


def monitor_predictions(
    rows: pd.DataFrame,
    predicted: dict[str, np.ndarray],
    *,
    as_of: pd.Timestamp | None = None,
    window_months: int = DEFAULT_WINDOW_MONTHS,
    false_alarm: float = DEFAULT_FALSE_ALARM,
    n_streams: int = DEFAULT_NULL_STREAMS,
    seed: int = 0,
) -> dict[str, Any]:
    """The monitoring summary of followed patients and their predictions.

    Parameters
    ----------
    rows : DataFrame, shape = (n_samples, n_columns)
        Validated cohort rows with `_date` (parsed treatment date) and `_model` (tag), sorted
        by treatment date.
    predicted : dict
        Per endpoint, predicted survival on MONTH_GRID, shape = (n_samples, 121), row-aligned.
    as_of : Timestamp, optional
        The data cut: the end of follow-up of patients with an event. Default: the latest
        treatment date plus follow-up in the rows.
    """
    if as_of is None:
        ends = rows["_date"] + pd.to_timedelta(rows["os_months"] * MONTH_DAYS, unit="D")
        as_of = ends.max().normalize()
    overall = {
        endpoint: endpoint_figures(
            survival_target(rows, endpoint), predicted[endpoint], deciles=True
        )
        for endpoint in ENDPOINTS
    }
    drift = drift_check(rows, predicted, as_of, false_alarm, n_streams, seed)
    return {
        "as_of": as_of.date().isoformat(),
        "n_monitored": len(rows),
        "treatment_dates": [
            rows["_date"].min().date().isoformat(),
            rows["_date"].max().date().isoformat(),
        ],
        "horizons_months": list(MONITOR_HORIZONS),
        "window_months": window_months,
        "overall": overall,
        "windows": _window_table(rows, predicted, window_months),
        "drift": drift,
        "status": "drift" if drift["flagged"] else "stable",
    }


def _monitored_rows(cohort: pd.DataFrame, periods: list[Period]) -> tuple[pd.DataFrame, int]:
    dates = treatment_dates(cohort)
    rows = validate_cohort(cohort).assign(_date=dates.to_numpy())
    rows["_period"] = _period_of(rows["_date"], periods)
    before = int((rows["_period"] < 0).sum())
    rows = rows[rows["_period"] >= 0].copy()
    rows["_model"] = [periods[i].tag for i in rows["_period"]]
    rows = rows.sort_values(["_date", "patient_id"], kind="stable").reset_index(drop=True)
    return rows, before


def monitor_cohort(
    cohort: pd.DataFrame,
    *,
    as_of: pd.Timestamp | None = None,
    window_months: int = DEFAULT_WINDOW_MONTHS,
    false_alarm: float = DEFAULT_FALSE_ALARM,
    n_streams: int = DEFAULT_NULL_STREAMS,
    seed: int = 0,
) -> dict[str, Any]:
    """Monitor the registered production models on `cohort` (validated here, nothing changed).

    Raises
    ------
    CohortValidationError
        The cohort is invalid or a treatment date is missing or malformed (rows named).
    EvaluationInputError
        No model was ever in production, or no patient was treated after the first one.
    """
    periods = production_periods()
    if not periods:
        raise EvaluationInputError(
            "no model has been in production yet, so there is nothing to monitor; promote one "
            "with `netprog promote TAG`"
        )
    rows, before = _monitored_rows(cohort, periods)
    if rows.empty:
        raise EvaluationInputError(
            f"all {before} patient(s) were treated before the first model entered production "
            f"({periods[0].start.date()}); monitoring needs patients treated after deployment"
        )
    bundles = {tag: registry.load_bundle(tag) for tag in sorted(set(rows["_model"]))}
    predicted = predict_survival(rows, rows["_model"], bundles)
    summary = monitor_predictions(
        rows,
        predicted,
        as_of=as_of,
        window_months=window_months,
        false_alarm=false_alarm,
        n_streams=n_streams,
        seed=seed,
    )
    summary["n_before_deployment"] = before
    summary["models"] = [
        {
            "tag": period.tag,
            "from": period.start.isoformat(),
            "n_patients": int((rows["_period"] == i).sum()),
        }
        for i, period in enumerate(periods)
    ]
    logger.info("monitored %d patients: %s", len(rows), summary["status"])
    return to_jsonable(summary)
