"""Tests of internal-external validation: leave one centre out."""

from __future__ import annotations

import pytest

from training.pipeline import leave_one_centre_out
from training.report_sections import loco_section
from training.synthetic import simulate_cohort
from training.validate import validate_cohort

FAST = {"coxnet": {"cv": 3, "n_alphas": 30, "l1_ratios": (0.9,)}}


@pytest.fixture(scope="module")
def three_centres():
    cohort = validate_cohort(simulate_cohort(300, seed=6, n_centers=3))
    return cohort, leave_one_centre_out(cohort, seed=6, estimator_params=FAST)


def test_a_synthetic_cohort_with_three_centres_produces_a_leave_one_centre_out_table(
    three_centres,
):
    cohort, loco = three_centres
    assert loco["centers"] == ["C1", "C2", "C3"]
    for endpoint in ("hpfs", "os"):
        for model in ("coxnet", "xgboost"):
            rows = loco["endpoints"][endpoint][model]
            assert [r["center"] for r in rows] == ["C1", "C2", "C3"]
            assert [r["n"] for r in rows] == [
                int((cohort["center"] == c).sum()) for c in ("C1", "C2", "C3")
            ]
            assert sum(r["events"] for r in rows) == int(cohort[f"{endpoint}_event"].sum())
            for row in rows:
                assert 0.55 < row["harrell_c"] < 0.95
                assert 0.05 < row["ibs"] < 0.3
                assert 0.3 < row["calibration_slope_24"] < 2.5


def test_the_spread_over_centres_summarises_the_rows(three_centres):
    _, loco = three_centres
    rows = loco["endpoints"]["os"]["coxnet"]
    spread = loco["spread"]["os"]["coxnet"]
    values = [r["harrell_c"] for r in rows]
    assert spread["harrell_c_mean"] == pytest.approx(sum(values) / 3)
    assert spread["harrell_c_min"] == min(values)
    assert spread["harrell_c_max"] == max(values)


def test_the_report_section_lists_every_centre_and_model(three_centres):
    _, loco = three_centres
    html = loco_section(loco)
    assert "leave one centre out" in html
    assert html.count("<tr>") == 2 * (1 + 3 * 2 + 2)
    first = loco["endpoints"]["hpfs"]["coxnet"][0]
    assert f"<td>{first['harrell_c']:.3f}</td>" in html


def test_one_centre_or_no_centre_column_gives_no_table():
    one = validate_cohort(simulate_cohort(60, seed=1, n_centers=1))
    assert leave_one_centre_out(one, estimator_params=FAST) is None
    assert leave_one_centre_out(one.drop(columns="center"), estimator_params=FAST) is None
