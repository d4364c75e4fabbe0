"""Tests of calibration monitoring: O/E, the CUSUM and its limit, who is judged by which model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model.bundle import MONTH_GRID
from training.exceptions import CohortValidationError
from training.monitor_run import (
    Period,
    _period_of,
    drift_check,
    monitor_predictions,
    production_periods,
    treatment_dates,
)
from training.monitoring import observed_expected

N_BEFORE = 400


def _stream(seed: int, hazard_ratio: float, n_after: int = 200) -> tuple[pd.DataFrame, dict]:
    """Exponential outcomes whose predicted hazard is right until patient 400, then × ratio."""
    rng = np.random.default_rng(seed)
    n = N_BEFORE + n_after
    rate = {
        "hpfs": 0.06 * np.exp(rng.normal(0, 0.5, n)),
        "os": 0.02 * np.exp(rng.normal(0, 0.5, n)),
    }
    truth = np.where(np.arange(n) >= N_BEFORE, hazard_ratio, 1.0)
    dates = pd.Timestamp("2030-01-01") + pd.to_timedelta(np.arange(n) * 2, unit="D")
    cut = dates[-1] + pd.Timedelta(days=365)
    censor = (cut - dates).days.to_numpy() / 30.4375
    rows = pd.DataFrame({"patient_id": [f"P{i:04d}" for i in range(n)], "_date": dates})
    predicted = {}
    for endpoint, hazard in rate.items():
        event_time = rng.exponential(1.0 / (hazard * truth))
        rows[f"{endpoint}_months"] = np.minimum(event_time, censor)
        rows[f"{endpoint}_event"] = (event_time <= censor).astype(int)
        predicted[endpoint] = np.exp(-np.outer(hazard, MONTH_GRID))
    rows["_model"] = "m1"
    return rows, {"predicted": predicted, "cut": cut}


def test_observed_over_expected_is_one_within_its_interval_when_the_predictions_are_true():
    rows, info = _stream(seed=1, hazard_ratio=1.0, n_after=1600)
    figures = observed_expected(
        rows["os_event"], rows["os_months"], info["predicted"]["os"][:, 12], 12
    )
    assert figures["oe_ratio"] == pytest.approx(1.0, abs=0.08)
    assert figures["oe_lower"] < 1.0 < figures["oe_upper"]
    assert figures["predicted"] == pytest.approx(np.mean(info["predicted"]["os"][:, 12]))


def test_observed_over_expected_is_not_reported_before_follow_up_reaches_the_horizon():
    figures = observed_expected([0, 0, 1], [3.0, 4.0, 2.0], [0.9, 0.9, 0.9], horizon=12)
    assert figures["oe_ratio"] is None
    assert figures["observed"] is None


def test_a_hazard_raised_by_half_from_a_date_is_flagged_as_worse_after_that_date():
    rows, info = _stream(seed=2, hazard_ratio=1.5)
    drift = drift_check(rows, info["predicted"], info["cut"], n_streams=400, seed=0)
    assert drift["flagged"]
    worse = [c for c in drift["charts"] if c["direction"] == "up" and c["flagged"]]
    assert worse
    assert all(c["flagged_at_patient"] > N_BEFORE for c in worse)
    # Patients 401-600 were treated every other day from 2032-03-11 (month, never the day).
    assert all("2032-03" <= c["flagged_in_month"] <= "2033-03" for c in worse)
    assert drift["false_alarm_rate"] == 0.05
    assert 3.0 < drift["control_limit"] < 15.0


def test_the_stated_false_alarm_rate_holds_on_streams_drawn_from_the_model():
    flagged = [drift_check(*_null(seed), n_streams=300, seed=seed)["flagged"] for seed in range(40)]
    # 40 streams at a 5 % rate: 2 expected; 6 or more has probability below 1 %.
    assert sum(flagged) <= 5


def _null(seed: int):
    rows, info = _stream(seed=100 + seed, hazard_ratio=1.0)
    return rows, info["predicted"], info["cut"]


def test_the_summary_has_windows_of_treatment_date_and_both_horizons():
    rows, info = _stream(seed=3, hazard_ratio=1.0)
    summary = monitor_predictions(rows, info["predicted"], window_months=6, n_streams=200)
    assert summary["status"] in ("stable", "drift")
    assert summary["n_monitored"] == 600
    assert [w["start"] for w in summary["windows"]][:2] == ["2030-01-01", "2030-07-01"]
    assert sum(w["n"] for w in summary["windows"]) == 600
    overall = summary["overall"]["hpfs"]
    assert set(overall) >= {"at_12", "at_24", "calibration_slope_24", "uno_c_24"}
    # Log-normal spread of 0.5 in the hazard: a modest but real C.
    assert 0.55 < overall["uno_c_24"] < 0.68
    assert overall["calibration_slope_24"]["lower"] < 1.0 < overall["calibration_slope_24"]["upper"]


def test_each_patient_is_judged_by_the_model_in_production_at_their_treatment_date():
    history = [
        {"tag": "m:a", "at": "2030-01-01T12:00:00+00:00", "action": "promote"},
        {"tag": "m:b", "at": "2030-06-01T00:00:00+00:00", "action": "promote"},
        {"tag": "m:a", "at": "2030-09-15T08:00:00+00:00", "action": "rollback"},
    ]
    periods = production_periods(history)
    assert [p.tag for p in periods] == ["m:a", "m:b", "m:a"]
    assert isinstance(periods[0], Period)
    dates = pd.Series(
        pd.to_datetime(["2029-12-31", "2030-01-01", "2030-01-02", "2030-06-01", "2030-09-16"])
    )
    # Treated on 1 January, before the noon promotion: no model was in production yet.
    assert _period_of(dates, periods).tolist() == [-1, -1, 0, 1, 2]


def test_a_missing_or_malformed_treatment_date_is_refused_naming_its_row_and_column():
    frame = pd.DataFrame({"treatment_date": ["2030-01-01", "", "01/02/2030", None]})
    with pytest.raises(CohortValidationError) as error:
        treatment_dates(frame)
    message = str(error.value)
    assert "row 2, column treatment_date" in message
    assert "row 3, column treatment_date" in message
    assert "row 4, column treatment_date" in message
    assert "row 1," not in message
    assert "01/02/2030" not in message
    with pytest.raises(CohortValidationError, match="column treatment_date: netprog monitor"):
        treatment_dates(frame.drop(columns="treatment_date"))


def test_patients_with_unknown_fields_are_judged_by_the_answer_the_service_gave_them(
    prognosis_bundle, prognosis_cohort
):
    from model.schema import encode
    from model.unknown_fields import served_survival
    from training.monitor_run import predict_survival

    rows = prognosis_cohort.head(8).copy()
    rows["somatostatin_analog"] = rows["somatostatin_analog"].astype(object)
    rows.loc[rows.index[2], "somatostatin_analog"] = None
    rows.loc[rows.index[5], "tumor_burden_percent"] = np.nan
    tags = pd.Series(["m:a"] * len(rows), index=rows.index)

    predicted = predict_survival(rows, tags, {"m:a": prognosis_bundle})

    for endpoint in ("hpfs", "os"):
        model = prognosis_bundle.models[endpoint][prognosis_bundle.primary[endpoint]]

        def survival_of(part, m=model):
            return m.survival(encode(part).to_numpy())

        expected = served_survival(prognosis_bundle.imputer, survival_of, rows)
        np.testing.assert_allclose(predicted[endpoint], expected)
        assert np.all(np.diff(predicted[endpoint], axis=1) <= 1e-12)
