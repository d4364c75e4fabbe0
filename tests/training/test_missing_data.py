"""Incomplete registries: validation, multiple imputation, pooling, the report and training."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bench.missing import make_missing
from model.cox_inference import BreslowInference
from model.schema import IMPUTED_QUANTITIES
from store import registry
from tests.training.store import store_restored_afterwards
from training.cli import main
from training.imputation import imputation_matrix, impute_cohort, missing_mask, n_imputations
from training.imputed_fit import pool_components
from training.missing_data import missing_data_record
from training.synthetic import simulate_cohort
from training.validate import validate_cohort

MADE_MISSING = ("tumor_burden_percent", "who_grade", "extrahepatic_metastases",
                "somatostatin_analog")  # fmt: skip


@pytest.fixture(scope="module")
def holed():
    """300 synthetic patients with 10 % of four fields missing at random (grade and centre)."""
    return validate_cohort(make_missing(simulate_cohort(300, seed=4), 0.10, "MAR", 4))


@pytest.fixture(scope="module")
def export_10_mar(tmp_path_factory, holed):
    path = tmp_path_factory.mktemp("missing") / "registry.csv"
    make_missing(simulate_cohort(300, seed=4), 0.10, "MAR", 4).to_csv(path, index=False)
    return path


def test_validate_accepts_the_10_percent_mar_export_with_a_per_field_summary(export_10_mar, holed):
    result = CliRunner().invoke(main, ["validate", str(export_10_mar)])
    assert result.exit_code == 0, result.output
    counts = missing_mask(holed).sum()
    for name in IMPUTED_QUANTITIES:
        assert f"  {name}: {counts[name]} missing" in result.output
    assert counts[list(MADE_MISSING)].min() > 10
    assert "centre C1:" in result.output


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("tumor_burden_percent", "forty", "row 6, column tumor_burden_percent: must be a number"),
        ("os_event", None, "row 6, column os_event: a value is required here"),
        ("hpfs_months", None, "row 6, column hpfs_months: a value is required here"),
    ],
)
def test_validate_refuses_a_wrong_type_or_a_missing_outcome_naming_row_and_column(
    tmp_path, column, value, expected
):
    cohort = make_missing(simulate_cohort(60, seed=5), 0.10, "MCAR", 5).astype(object)
    cohort.loc[5, column] = value
    path = tmp_path / "bad.csv"
    cohort.to_csv(path, index=False)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert expected in result.output


def test_imputation_fills_only_the_missing_predictors_and_never_the_outcome(holed):
    mask = missing_mask(holed)
    completed = impute_cohort(holed, m=3, seed=0)
    assert len(completed) == 3
    for frame in completed:
        assert not missing_mask(frame).to_numpy().any()
        for column in ("patient_id", "hpfs_months", "hpfs_event", "os_months", "os_event"):
            pd.testing.assert_series_equal(frame[column], holed[column])
        kept = ~mask["tumor_burden_percent"].to_numpy()
        np.testing.assert_array_equal(
            frame["tumor_burden_percent"].to_numpy()[kept],
            holed["tumor_burden_percent"].to_numpy()[kept],
        )
        assert frame["tumor_burden_percent"].between(0, 100).all()
        assert frame["extrahepatic_metastases"].dtype == bool
    missing = mask["tumor_burden_percent"].to_numpy()
    draws = np.stack([f["tumor_burden_percent"].to_numpy()[missing] for f in completed])
    assert (draws.std(axis=0) > 0).mean() > 0.9, "each imputation draws its own values"


def test_the_imputation_models_see_the_outcome_under_each_modality(holed):
    # The models' modality effects differ by grade: a missing grade is drawn from models that
    # know how the outcome relates to it under the modality the patient received.
    table = imputation_matrix(holed)
    for endpoint in ("hpfs", "os"):
        for name in ("event", "hazard"):
            outcome = table[f"{endpoint}_{name}"]
            for modality in ("TAE", "SIRT"):
                received = (holed["modality"] == modality).to_numpy()
                interaction = table[f"{endpoint}_{name}_x_{modality}"].to_numpy()
                np.testing.assert_array_equal(interaction[received], outcome[received])
                assert not interaction[~received].any()
    assert not table.filter(like="_x_TACE").columns.size, "TACE is the reference modality"


def test_a_missing_grade_is_drawn_as_a_category_in_its_true_proportions_per_modality():
    # Rounding linear draws misplaced the middle grade (G2 at 0.44 instead of 0.58 under SIRT
    # in one such cohort), which biased the modality-within-grade effects.
    full = validate_cohort(simulate_cohort(3000, seed=11))
    holed = validate_cohort(make_missing(full, 0.30, "MCAR", 11))
    gone = missing_mask(holed)["who_grade"].to_numpy()
    completed = impute_cohort(holed, m=5, seed=0)
    for modality in ("TACE", "TAE", "SIRT"):
        rows = gone & (full["modality"] == modality).to_numpy()
        true = full["who_grade"][rows].value_counts(normalize=True)
        drawn = pd.concat([c["who_grade"][rows] for c in completed])
        assert set(drawn) <= {"G1", "G2", "G3"}
        shares = drawn.value_counts(normalize=True)
        for grade in ("G1", "G2", "G3"):
            assert shares.get(grade, 0.0) == pytest.approx(true.get(grade, 0.0), abs=0.08), (
                modality,
                grade,
            )


def test_m_is_at_least_10_and_at_least_the_percentage_of_incomplete_patients(holed):
    share = missing_mask(holed).any(axis=1).mean()
    assert n_imputations(holed) == max(10, int(np.ceil(100 * share)))
    assert n_imputations(simulate_cohort(50, seed=1)) == 10


def _inference(coef, variance, hazard):
    grid = np.arange(3.0)
    return BreslowInference(
        coef=np.asarray(coef, float), covariance=np.diag(variance).astype(float), grid=grid,
        cumulative_hazard=np.asarray(hazard, float), hazard_variance=np.full(3, 0.01),
        hazard_mean=np.zeros((3, len(coef))),
    )  # fmt: skip


def test_rubins_rules_add_the_between_imputation_variance():
    fits = [
        _inference([0.1, 1.0], [0.04, 0.09], [0.0, 0.1, 0.2]),
        _inference([0.3, 1.0], [0.04, 0.09], [0.0, 0.2, 0.4]),
    ]
    pooled = pool_components(fits)
    np.testing.assert_allclose(pooled.coef, [0.2, 1.0])
    between = np.var([0.1, 0.3], ddof=1)
    np.testing.assert_allclose(np.diag(pooled.covariance), [0.04 + 1.5 * between, 0.09])
    np.testing.assert_allclose(pooled.cumulative_hazard, [0.0, 0.15, 0.3])
    np.testing.assert_allclose(
        pooled.hazard_variance, 0.01 + 1.5 * np.var([[0, 0.1, 0.2], [0, 0.2, 0.4]], 0, ddof=1)
    )


def test_the_record_counts_missing_values_per_field_and_centre_with_the_mar_caveat(holed):
    record = missing_data_record(holed, m=12)
    mask = missing_mask(holed)
    assert record["fields"]["who_grade"]["n_missing"] == int(mask["who_grade"].sum())
    assert set(record["by_center"]) == set(holed["center"].astype(str))
    assert record["imputation"]["m"] == 12
    assert "missing at random" in record["caveat"]
    for by_endpoint in record["indicator_check"].values():
        assert set(by_endpoint) == {"hpfs", "os"}
        assert all(0.0 <= v["p_value"] <= 1.0 for v in by_endpoint.values())


def test_train_on_an_incomplete_registry_imputes_pools_and_reports(tmp_path):
    path = tmp_path / "registry.csv"
    make_missing(simulate_cohort(400, seed=6), 0.10, "MAR", 6).to_csv(path, index=False)
    report_dir = tmp_path / "report"
    with store_restored_afterwards():
        result = CliRunner().invoke(main, [
            "train", "--data", str(path), "--label", "synthetic", "--seed", "3",
            "--n-bootstrap", "3", "--folds", "3", "--jobs", "1", "--report-dir", str(report_dir),
        ])  # fmt: skip
        assert result.exit_code == 0, result.output
        model = registry.list_models()[0]
        bundle = registry.load_bundle(str(model.tag))
    missing = bundle.metadata["missing_data"]
    assert missing["imputation"]["m"] >= 10
    assert missing["fields"]["tumor_burden_percent"]["n_missing"] > 0
    assert "tumor_burden_percent" in bundle.imputer.models
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert "<h2>Missing data</h2>" in page
    assert "missing at random" in page
    card = json.loads((report_dir / "model_card.json").read_text(encoding="utf-8"))
    assert card["missing_data"]["imputation"]["m"] == missing["imputation"]["m"]
    assert card["missing_data"]["missing_per_field"]["tumor_burden_percent"] > 0
