"""Tests of the training run: held-out quality against the oracle, reproducibility, registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from training import registry
from training.cli import main
from training.exceptions import BundleIntegrityError, RegistryError
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
    assert 0.8 <= model["horizons"]["24"]["calibration_slope"] <= 1.2


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_both_models_beat_kaplan_meier_and_report_the_published_model_beside_them(
    cv_2000, endpoint
):
    figures = summarise(cv_2000)[endpoint]
    assert set(figures) == {"coxnet", "xgboost", "published", "oracle", "kaplan_meier"}
    for name in ("coxnet", "xgboost", "published"):
        assert figures[name]["harrell_c"] > 0.65
        assert figures[name]["ibs"] < figures["kaplan_meier"]["ibs"] - 0.03


def test_the_same_data_and_seed_give_identical_metrics():
    cohort = resolve_cohort("synthetic:400", seed=5)
    first = summarise(cross_validate(cohort, seed=5, n_splits=3, n_jobs=1))
    again = summarise(cross_validate(cohort, seed=5, n_splits=3, n_jobs=2))
    assert first == again


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("report")
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
        ],
    )
    assert result.exit_code == 0, result.output
    return registry.list_models()[0], report_dir


def test_train_registers_a_bundle_with_its_report_metrics_and_checksums(trained):
    model, report_dir = trained
    metadata = model.info.metadata
    assert metadata["trained_on"] == "synthetic"
    assert metadata["n_patients"] == 400
    assert len(metadata["data_fingerprint"]) == 64
    assert set(metadata["artifact_sha256"]) == {"bundle.joblib", "report.html", "metrics.json"}
    assert set(metadata["metrics"]) == {"hpfs", "os"}
    assert (report_dir / "report.html").read_text().count("not for clinical use") >= 1
    bundle = registry.load_bundle(str(model.tag))
    assert bundle.metadata["tag"] == str(model.tag)
    assert len(bundle.models["os"]["coxnet"].members) == 3


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
    result = CliRunner().invoke(main, ["train", "--data", str(path)])
    assert result.exit_code == 2
    assert "row 4, column os_event" in result.output
    assert len(registry.list_models()) == before


def test_fold_spread_is_reported_and_small(cv_2000):
    assert np.std(cv_2000["os"]["coxnet"]["fold_harrell_c"]) < 0.05
