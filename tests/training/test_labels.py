"""Tests that cohort labels fail closed: only the built-in synthetic cohort goes undeclared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from model.schema import TRUTH_PREFIX
from store import registry
from tests.training.store import tree_digest
from training.cli import main
from training.exceptions import CohortLabelError
from training.pipeline import declared_label, resolve_cohort, train
from training.synthetic import simulate_cohort, write_cohort

NETPROG = Path(sys.executable).with_name("netprog")
SMALL_RUN = ["--folds", "2", "--n-bootstrap", "2", "--jobs", "1"]
"""Options that would let a wrongly accepted cohort train in seconds (so a regression shows)."""


@pytest.fixture(scope="module")
def unlabelled_csv(tmp_path_factory) -> Path:
    """A valid 150-patient cohort without the generator's `true_*` columns, as a registry's."""
    cohort = simulate_cohort(150, seed=2)
    cohort = cohort.drop(columns=[c for c in cohort if c.startswith(TRUTH_PREFIX)])
    return write_cohort(cohort, tmp_path_factory.mktemp("labels") / "some.csv")


def test_train_on_a_file_without_label_exits_2_naming_label_and_leaves_the_store_unchanged(
    unlabelled_csv, tmp_path
):
    home = tmp_path / "bentoml"
    home.mkdir()
    before = tree_digest(home)
    record = tmp_path / "run.json"
    environment = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    finished = subprocess.run(
        [str(NETPROG), "train", "--data", str(unlabelled_csv), "--run-record", str(record)]
        + SMALL_RUN,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = " ".join((finished.stdout + finished.stderr).split())
    assert finished.returncode == 2, output
    assert "--label real (a registry of real patients) or --label synthetic" in output
    assert "Traceback" not in output
    assert tree_digest(home) == before
    run = json.loads(record.read_text())
    assert (run["status"], run["exit_code"], run["tag"]) == ("invalid_label", 2, None)
    assert run["timings"] == {}


def test_a_database_cohort_without_label_is_refused_before_the_database_is_reached():
    before = [str(m.tag) for m in registry.list_models()]
    unreachable = "postgresql://netprog@127.0.0.1:9/registry"
    result = CliRunner().invoke(
        main, ["train", "--data", unreachable, "--query", "SELECT * FROM net_registry"]
    )
    output = " ".join(result.output.split())
    assert result.exit_code == 2, output
    assert "--label real (a registry of real patients) or --label synthetic" in output
    assert "must accept the connection" not in output
    assert [str(m.tag) for m in registry.list_models()] == before


def test_a_cohort_with_the_generators_truth_declared_real_is_refused_before_fitting(tmp_path):
    path = write_cohort(simulate_cohort(150, seed=3), tmp_path / "simulated.csv")
    before = [str(m.tag) for m in registry.list_models()]
    result = CliRunner().invoke(main, ["train", "--data", str(path), "--label", "real", *SMALL_RUN])
    output = " ".join(result.output.split())
    assert result.exit_code == 2, output
    assert "declared real but carries the synthetic generator's columns" in output
    assert "must be declared with --label synthetic" in output
    assert [str(m.tag) for m in registry.list_models()] == before


def test_the_built_in_cohort_is_synthetic_without_a_label_and_cannot_be_declared_real():
    assert declared_label("synthetic", None) == "synthetic"
    assert declared_label("synthetic:400", "synthetic") == "synthetic"
    with pytest.raises(CohortLabelError, match="must be synthetic"):
        declared_label("synthetic:400", "real")
    assert declared_label("export.parquet", "real") == "real"
    with pytest.raises(CohortLabelError, match="--label must be given"):
        declared_label("export.parquet", None)


def test_the_training_pipeline_never_infers_a_label():
    cohort = resolve_cohort("synthetic:60", seed=1)
    with pytest.raises(CohortLabelError, match="must be one of"):
        train(cohort, cohort_label=None)
    with pytest.raises(CohortLabelError, match="declared real"):
        train(cohort, cohort_label="real")
