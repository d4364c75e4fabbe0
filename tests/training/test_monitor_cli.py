"""Tests of `netprog monitor` end to end: exit codes, report, JSON, refusal of bad input."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
from click.testing import CliRunner

from netprog.cli import main
from store import registry
from tests.conftest import PROGNOSIS_FAST_ESTIMATORS
from tests.training.store import store_restored_afterwards
from training.fit import fit_bundle
from training.synthetic import simulate_cohort
from training.validate import validate_cohort


@pytest.fixture(scope="module")
def deployed():
    """A small model in production, and the day after its promotion."""
    with store_restored_afterwards():
        bundle = fit_bundle(
            validate_cohort(simulate_cohort(600, seed=11)),
            seed=0,
            n_bootstrap=2,
            estimator_params=PROGNOSIS_FAST_ESTIMATORS,
        )
        tag = registry.save_bundle(bundle)
        registry.set_production(tag, reason="monitor test")
        promoted = pd.Timestamp(registry.pointer_history()[-1]["at"]).tz_convert(None)
        yield {"tag": tag, "first_day": promoted.normalize() + pd.Timedelta(days=1)}


def _outcomes(deployed, tmp_path, n: int, seed: int, hazard_scale: float = 1.0):
    cohort = simulate_cohort(n, seed=seed)
    cohort = cohort.drop(columns=[c for c in cohort if c.startswith("true_")])
    dates = pd.to_datetime(cohort["treatment_date"])
    cohort["treatment_date"] = (dates - dates.min() + deployed["first_day"]).dt.date.astype(str)
    for column in ("hpfs_months", "os_months"):
        cohort[column] = (cohort[column] / hazard_scale).clip(lower=0.01)
    path = tmp_path / f"outcomes-{seed}.csv"
    cohort.to_csv(path, index=False)
    return path, cohort


def _run(path, out):
    return CliRunner().invoke(main, ["monitor", "--data", str(path), "--out", str(out)])


def test_a_stream_followed_as_predicted_is_stable_with_exit_0_and_a_self_contained_report(
    deployed, tmp_path
):
    path, cohort = _outcomes(deployed, tmp_path, 300, seed=21)
    result = _run(path, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "300 patients monitored: stable" in result.output
    summary = json.loads((tmp_path / "out" / "monitor.json").read_text())
    assert summary["status"] == "stable"
    assert summary["models"][-1]["tag"] == deployed["tag"]
    assert summary["models"][-1]["n_patients"] == 300
    assert summary["drift"]["false_alarm_rate"] == 0.05
    assert len(summary["drift"]["charts"]) == 4
    assert all("path" not in chart for chart in summary["drift"]["charts"])
    assert (
        summary["overall"]["os"]["at_12"]["oe_lower"]
        < 1
        < summary["overall"]["os"]["at_12"]["oe_upper"]
    )
    page = (tmp_path / "out" / "monitor.html").read_text()
    assert page.count("data:image/png;base64,") == 5
    assert "http://" not in page
    assert "https://" not in page
    assert "<script" not in page
    text = json.dumps(summary) + page
    assert not any(pid in text for pid in cohort["patient_id"])


def test_outcomes_three_times_faster_than_predicted_are_drift_with_exit_3(deployed, tmp_path):
    path, _ = _outcomes(deployed, tmp_path, 300, seed=22, hazard_scale=2.0)
    result = _run(path, tmp_path / "out")
    assert result.exit_code == 3, result.output
    assert "DRIFT (" in result.output
    summary = json.loads((tmp_path / "out" / "monitor.json").read_text())
    worse = {c["endpoint"] for c in summary["drift"]["charts"] if c["flagged"]}
    assert worse
    assert summary["overall"]["hpfs"]["at_12"]["oe_lower"] > 1.0


def test_a_bad_row_is_refused_with_exit_2_naming_row_and_column_and_nothing_written(
    deployed, tmp_path, caplog
):
    path, cohort = _outcomes(deployed, tmp_path, 50, seed=23)
    cohort.loc[4, "treatment_date"] = "last tuesday"
    cohort.to_csv(path, index=False)
    with caplog.at_level(logging.INFO):
        result = _run(path, tmp_path / "out")
    assert result.exit_code == 2
    assert "row 5, column treatment_date" in result.output
    assert "last tuesday" not in result.output
    assert not (tmp_path / "out").exists()
    assert not any(pid in caplog.text + result.output for pid in cohort["patient_id"])


def test_patients_treated_before_deployment_are_not_monitored(deployed, tmp_path):
    path, cohort = _outcomes(deployed, tmp_path, 200, seed=24)
    early = pd.to_datetime(cohort["treatment_date"]) - pd.Timedelta(days=8000)
    cohort.loc[:49, "treatment_date"] = early[:50].dt.date.astype(str)
    cohort.to_csv(path, index=False)
    result = _run(path, tmp_path / "out")
    assert result.exit_code in (0, 3), result.output
    summary = json.loads((tmp_path / "out" / "monitor.json").read_text())
    assert (summary["n_monitored"], summary["n_before_deployment"]) == (150, 50)
