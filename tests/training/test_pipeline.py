"""Tests of the training run: held-out quality against the oracle, reproducibility, registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sksurv.linear_model import CoxnetSurvivalAnalysis

from model.bundle import MONTH_GRID
from store import registry, training_store
from training import cross_validation
from training.cli import main
from training.evaluate import harrell_c, oracle_risk, oracle_survival
from training.exceptions import BundleIntegrityError, RegistryError
from training.fit import survival_target
from training.pipeline import choose_primary, cross_validate, resolve_cohort, summarise


@pytest.fixture(scope="module")
def cv_2000():
    cohort = resolve_cohort("synthetic:2000", seed=0)
    return cross_validate(cohort, seed=0, n_splits=5, n_jobs=2)


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_the_primary_model_is_close_to_the_oracle_on_held_out_patients(cv_2000, endpoint):
    primary = choose_primary(cv_2000)[endpoint]
    model, oracle = cv_2000[endpoint][primary], cv_2000[endpoint]["oracle"]
    assert model["harrell_c"] > oracle["harrell_c"] - 0.02
    assert model["ibs"] < oracle["ibs"] + 0.01
    assert 0.8 <= model["calibration_slope_24"] <= 1.2


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_both_models_beat_kaplan_meier_and_report_the_published_model_beside_them(
    cv_2000, endpoint
):
    figures = summarise(cv_2000)[endpoint]
    assert set(figures) == {"coxnet", "xgboost", "published", "oracle", "kaplan_meier"}
    for name in ("coxnet", "xgboost", "published"):
        assert figures[name]["harrell_c"] > 0.65
        assert figures[name]["ibs"] < figures["kaplan_meier"]["ibs"] - 0.03


FAST = {"coxnet": {"cv": 3, "n_alphas": 30, "l1_ratios": (0.9,)}}


def test_the_same_data_and_seed_give_identical_metrics():
    cohort = resolve_cohort("synthetic:400", seed=5)
    first = summarise(cross_validate(cohort, seed=5, n_splits=3, n_jobs=1, estimator_params=FAST))
    again = summarise(cross_validate(cohort, seed=5, n_splits=3, n_jobs=2, estimator_params=FAST))
    assert first == again


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("report")
    record = report_dir / "run.json"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            "synthetic:400",
            "--seed",
            "3",
            "--n-bootstrap",
            "3",
            "--folds",
            "3",
            "--jobs",
            "1",
            "--report-dir",
            str(report_dir),
            "--run-record",
            str(record),
        ],
    )
    assert result.exit_code == 0, result.output
    (report_dir / "train.out").write_text(result.output, encoding="utf-8")
    return registry.list_models()[0], report_dir


def test_train_registers_a_bundle_with_its_report_metrics_and_checksums(trained):
    model, report_dir = trained
    metadata = model.info.metadata
    assert metadata["trained_on"] == "synthetic"
    assert metadata["n_cohort"] == 400
    assert metadata["n_patients"] + metadata["holdout"]["n_patients"] == 400
    assert 60 < metadata["holdout"]["n_patients"] < 100
    assert len(metadata["data_fingerprint"]) == 64
    assert set(metadata["artifact_sha256"]) == {
        "bundle.joblib",
        "report.html",
        "metrics.json",
        "model_card.md",
        "model_card.json",
        "training_side.json",
    }
    side = training_store.folder_of(str(model.tag))
    assert {p.name for p in side.iterdir()} == {
        "holdout.parquet",
        "training_ids.json",
        "development_rows.parquet",
    }
    assert not (Path(model.path) / "holdout.parquet").exists()
    assert not (Path(model.path) / "development_rows.parquet").exists()
    assert len(registry.holdout_rows(str(model.tag))) == metadata["holdout"]["n_patients"]
    assert len(registry.fitted_rows(str(model.tag))) == metadata["n_patients"]
    assert set(metadata["metrics"]) == {"hpfs", "os"}
    assert set(metadata["held_out_metrics"]["os"]) == {"coxnet", "xgboost"}
    assert (report_dir / "report.html").read_text().count("not for clinical use") >= 1
    bundle = registry.load_bundle(str(model.tag))
    assert bundle.metadata["tag"] == str(model.tag)
    # The Cox family carries its delta-method components instead of bootstrap members.
    assert [len(bundle.models[e]["coxnet"].components) for e in ("hpfs", "os")] == [2, 1]
    assert bundle.models["os"]["coxnet"].members == []


def test_an_altered_artifact_fails_the_checksum_check_naming_it(trained):
    model, _ = trained
    path = Path(model.path_of("bundle.joblib"))
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(BundleIntegrityError, match="artifact bundle.joblib .* was altered"):
            registry.load_bundle(str(model.tag))
    finally:
        path.write_bytes(original)
    registry.load_bundle(str(model.tag))


def test_the_first_model_becomes_production_and_promote_and_rollback_move_the_pointer(trained):
    first, _ = trained
    assert registry.production_tag() == str(first.tag)
    with pytest.raises(RegistryError, match="no previous production model"):
        registry.rollback()
    registry.set_production(str(first.tag), reason="test re-promotion")
    assert registry.rollback() == str(first.tag)


def test_an_unknown_tag_says_how_to_train():
    with pytest.raises(RegistryError, match="netprog train"):
        registry.get_model("netprog-bundle:doesnotexist")


def test_train_on_an_invalid_cohort_stops_before_fitting_with_row_errors(tmp_path):
    path = tmp_path / "bad.csv"
    cohort = resolve_cohort("synthetic:50", seed=1)
    cohort.loc[3, "os_event"] = 7
    cohort.to_csv(path, index=False)
    before = len(registry.list_models())
    record = tmp_path / "run.json"
    result = CliRunner().invoke(
        main,
        ["train", "--data", str(path), "--label", "synthetic", "--run-record", str(record)],
    )
    assert result.exit_code == 2
    assert "row 4, column os_event" in result.output
    assert len(registry.list_models()) == before
    run = json.loads(record.read_text())
    assert (run["status"], run["exit_code"], run["tag"]) == ("invalid_data", 2, None)
    assert "row 4, column os_event" in run["error"]
    assert run["timings"] == {}


def test_train_on_a_cohort_the_cox_fit_diverges_on_exits_as_invalid_data_with_the_remedy(
    tmp_path, monkeypatch
):
    def overflowing_coxnet(self, X, y):
        raise ArithmeticError("Numerical error, because weights are too large.")

    path = tmp_path / "cohort.csv"
    resolve_cohort("synthetic:300", seed=1).to_csv(path, index=False)
    monkeypatch.setattr(CoxnetSurvivalAnalysis, "fit", overflowing_coxnet)
    before = len(registry.list_models())
    record = tmp_path / "run.json"

    result = CliRunner().invoke(
        main,
        ["train", "--data", str(path), "--label", "synthetic", "--jobs", "1"]
        + ["--run-record", str(record)],
    )

    assert result.exit_code == 2, result.output
    assert "the cohort could not be fitted" in result.output
    assert "duplicated patients" in result.output
    assert len(registry.list_models()) == before
    run = json.loads(record.read_text())
    assert (run["status"], run["exit_code"], run["tag"]) == ("invalid_data", 2, None)


def test_the_run_record_names_the_tag_status_exit_code_timings_and_metrics(trained):
    model, report_dir = trained
    run = json.loads((report_dir / "run.json").read_text())
    assert (run["tag"], run["status"], run["exit_code"]) == (str(model.tag), "promoted", 0)
    assert run["production"] == str(model.tag)
    assert set(run["timings"]) == {
        "load",
        "validate",
        "cross_validate",
        "leave_one_centre_out",
        "fit",
        "held_out",
        "analyse",
        "register",
    }
    assert all(seconds >= 0 for seconds in run["timings"].values())
    assert run["duration_s"] >= sum(run["timings"].values()) - 1e-3
    assert run["data"]["n_patients"] == 400
    assert run["data"]["source"] == "synthetic:400"
    assert run["metrics"]["cross_validated"] == model.info.metadata["metrics"]
    assert 0.6 < run["metrics"]["held_out"]["os"]["coxnet"]["harrell_c"] < 0.95
    assert run["gate"] is None
    assert run["error"] is None


def test_the_train_summary_shows_fold_means_with_their_sd(trained):
    _, report_dir = trained
    output = (report_dir / "train.out").read_text(encoding="utf-8")
    assert "CV: mean ± SD over the 3 cross-validation folds" in " ".join(output.split())
    assert output.count(" ± ") >= 4 * 4


def test_the_report_shows_held_out_and_leave_one_centre_out_tables(trained):
    _, report_dir = trained
    page = (report_dir / "report.html").read_text()
    assert "Held-out test patients" in page
    assert "Internal-external validation (leave one centre out)" in page
    assert page.count("<td>C1</td>") == 4
    assert page.endswith("</body></html>")
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert metrics["leave_one_centre_out"]["centers"] == ["C1", "C2", "C3"]


def test_the_model_card_holds_the_tripod_items_and_the_synthetic_warning(trained):
    model, report_dir = trained
    card = json.loads((report_dir / "model_card.json").read_text())
    assert card["tag"] == str(model.tag)
    assert card["warnings"][0].startswith("Synthetic cohort")
    assert card["data"]["n_patients"] == 400
    assert card["data"]["treatment_dates"]["first"] < card["data"]["treatment_dates"]["last"]
    assert sum(card["data"]["centres"].values()) == 400
    assert set(card["outcomes"]) == {"hpfs", "os"}
    assert len(card["predictors"]) == 20
    assert card["missing_data"]["missing_per_field"]["age_years"] == 0
    assert card["model_building"]["n_bootstrap"] == 3
    assert card["model_building"]["cv_folds"] == 3
    held_out = card["performance"]["held_out"]["os"]["coxnet"]
    assert held_out["harrell_c_lower"] < held_out["harrell_c"] < held_out["harrell_c_upper"]
    cv = card["performance"]["cross_validated"]["os"]["coxnet"]
    assert cv["harrell_c_fold_range"][0] <= cv["harrell_c"] <= cv["harrell_c_fold_range"][1]
    assert cv["n_folds"] == 3
    assert all(cv[f"{name}_sd"] > 0 for name in ("harrell_c", "uno_c", "ibs"))
    assert "pooled_harrell_c" in cv
    page = (report_dir / "model_card.md").read_text()
    for heading in (
        "## Intended use",
        "## Data (TRIPOD+AI 5, 6)",
        "## Outcomes (TRIPOD+AI 7)",
        "## Predictors and their handling (TRIPOD+AI 8)",
        "## Sample size (TRIPOD+AI 9)",
        "## Missing data (TRIPOD+AI 10)",
        "## Model building (TRIPOD+AI 12)",
        "## Performance and calibration (TRIPOD+AI 12e, 23)",
        "### Internal-external validation (leave one centre out)",
        "## Limitations",
    ):
        assert heading in page
    assert "mean ± SD over 3 folds" in page
    report = (report_dir / "report.html").read_text()
    assert "Cross-validated metrics: mean ± SD over 3 folds" in report
    assert "pooled Harrell C" in report
    assert "not for clinical use" in page


def test_train_help_documents_the_exit_codes():
    result = CliRunner().invoke(main, ["train", "--help"])
    for line in ("0  trained", "1  failed", "2  invalid data", "3  refused by the promotion gate"):
        assert line in result.output


def test_fold_spread_is_reported_and_small(cv_2000):
    figures = cv_2000["os"]["coxnet"]
    assert len(figures["folds"]) == figures["n_folds"] == 5
    for name in ("harrell_c", "uno_c", "ibs"):
        assert 0 < figures[f"{name}_sd"] < 0.05, name


def _fold_shifted_oracle(recorded):
    """`_fold_predictions` stand-in: the oracle's risk, shifted by an offset of each fold's own.

    A fold's own C ignores a shift common to its rows; a C pooled over folds does not, so the
    two differ by construction.
    """

    def predict(name, cohort, train, test, endpoint, seed, params=None):
        rows = cohort.iloc[test]
        recorded.append((endpoint, name, np.asarray(test)))
        shift = 10.0 * float(np.min(test))
        return (
            oracle_risk(rows, endpoint) + shift,
            oracle_survival(rows, endpoint, MONTH_GRID),
        )

    return predict


def test_cross_validated_c_is_the_mean_of_each_folds_own_c_not_a_pooled_c(monkeypatch):
    cohort = resolve_cohort("synthetic:300", seed=4)
    recorded: list = []
    monkeypatch.setattr(cross_validation, "_fold_predictions", _fold_shifted_oracle(recorded))
    cv = cross_validate(cohort, seed=4, n_splits=3, n_jobs=1)
    y = survival_target(cohort, "os")
    risk = oracle_risk(cohort, "os")
    tests = [test for endpoint, name, test in recorded if (endpoint, name) == ("os", "coxnet")]
    assert len(tests) == 3
    assert sorted(np.concatenate(tests).tolist()) == list(range(len(cohort)))
    per_fold = [harrell_c(y["event"][t], y["months"][t], risk[t]) for t in tests]
    figures = cv["os"]["coxnet"]
    assert [fold["harrell_c"] for fold in figures["folds"]] == pytest.approx(per_fold)
    assert figures["harrell_c"] == pytest.approx(np.mean(per_fold))
    assert figures["harrell_c_sd"] == pytest.approx(np.std(per_fold, ddof=1))
    assert [fold["n_test"] for fold in figures["folds"]] == [len(t) for t in tests]
    assert figures["pooled"]["harrell_c"] < figures["harrell_c"] - 0.05
    summary = summarise(cv)["os"]["coxnet"]
    assert summary["harrell_c"] == pytest.approx(np.mean(per_fold))
    assert summary["pooled_harrell_c"] == pytest.approx(figures["pooled"]["harrell_c"])
    for name in ("uno_c", "ibs", "calibration_slope_24"):
        values = [fold[name] for fold in figures["folds"]]
        assert summary[name] == pytest.approx(np.mean(values)), name
        assert summary[f"{name}_sd"] == pytest.approx(np.std(values, ddof=1)), name


def test_the_primary_model_is_chosen_by_the_mean_over_folds_not_the_pooled_c():
    def model(fold_mean, pooled):
        return {"harrell_c": fold_mean, "pooled": {"harrell_c": pooled}}

    cv = {
        endpoint: {"coxnet": model(0.74, 0.70), "xgboost": model(0.72, 0.76)}
        for endpoint in ("hpfs", "os")
    }
    assert choose_primary(cv) == {"hpfs": "coxnet", "os": "coxnet"}


def _folds_model(per_fold):
    return {"harrell_c": float(np.mean(per_fold)), "folds": [{"harrell_c": c} for c in per_fold]}


def test_boosting_is_primary_only_when_it_beats_cox_by_more_than_one_standard_error():
    cox = _folds_model([0.70, 0.72, 0.74, 0.76, 0.78])
    # Ahead by 0.01 on average, but the paired fold differences (+0.05, -0.03, ...) have a
    # standard error of 0.016: within noise, so the Cox family (analytic intervals) stays.
    noisy = _folds_model([0.75, 0.69, 0.77, 0.75, 0.81])
    assert choose_primary({e: {"coxnet": cox, "xgboost": noisy} for e in ("hpfs", "os")}) == {
        "hpfs": "coxnet",
        "os": "coxnet",
    }
    # Ahead by 0.01 in every fold: the standard error is 0, so boosting wins.
    steady = _folds_model([0.71, 0.73, 0.75, 0.77, 0.79])
    assert choose_primary(
        {"hpfs": {"coxnet": cox, "xgboost": steady}, "os": {"coxnet": cox, "xgboost": noisy}}
    ) == {"hpfs": "xgboost", "os": "coxnet"}
