"""Tests that a training job killed or failing part-way leaves the store and pointer intact."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from store import registry
from tests.training.store import store_restored_afterwards, tree_digest
from training.fit import fit_bundle
from training.synthetic import simulate_cohort, write_cohort
from training.validate import validate_cohort

FAST = {"coxnet": {"cv": 3, "n_alphas": 30, "l1_ratios": (0.9,)}}
NETPROG = Path(sys.executable).with_name("netprog")
STEP_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def small_bundle():
    cohort = validate_cohort(simulate_cohort(200, seed=9))
    return fit_bundle(cohort, seed=0, n_bootstrap=2, n_jobs=1, estimator_params=FAST)


@pytest.fixture
def populated_home(small_bundle, tmp_path):
    """A copy of a BentoML home holding one model that is production."""
    with store_restored_afterwards():
        tag = registry.save_bundle(small_bundle)
        registry.set_production(tag, reason="baseline for the kill test")
        home = tmp_path / "home"
        home.mkdir()
        shutil.copytree(registry.store_home() / "models", home / "models")
        shutil.copyfile(registry.store_home() / registry.POINTER_FILE, home / registry.POINTER_FILE)
    return home


def _wait_for_line(process: subprocess.Popen, text: str) -> list[str]:
    lines, deadline = [], time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    process.kill()
    process.wait()
    process.stderr.close()
    pytest.fail(f"the training job never logged {text!r}; it printed:\n{''.join(lines)}")


def test_a_training_job_killed_mid_fit_leaves_the_store_and_pointer_unchanged(
    populated_home, tmp_path
):
    cohort = write_cohort(simulate_cohort(300, seed=4), tmp_path / "cohort.csv")
    models_before = tree_digest(populated_home / "models")
    pointer_before = (populated_home / registry.POINTER_FILE).read_bytes()
    assert len([name for name in models_before if name.endswith("bundle.joblib")]) == 1
    environment = {
        **os.environ,
        "BENTOML_HOME": str(populated_home),
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [str(NETPROG), "-v", "train", "--data", str(cohort), "--label", "synthetic", "--folds", "2"]
        + ["--n-bootstrap", "400", "--jobs", "1"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_line(process, "fitting ensembles")
    time.sleep(1.0)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    process.stderr.close()
    assert tree_digest(populated_home / "models") == models_before
    assert (populated_home / registry.POINTER_FILE).read_bytes() == pointer_before


def test_an_error_while_writing_the_artifacts_leaves_no_model_behind(small_bundle):
    before = [str(m.tag) for m in registry.list_models()]

    def failing_extras(tag, folder):
        (folder / "report.html").write_text("half a report")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        registry.save_bundle(small_bundle, failing_extras)
    assert [str(m.tag) for m in registry.list_models()] == before
    staging = registry.store_home() / registry.STAGING_DIR
    assert not staging.exists() or list(staging.iterdir()) == []


def test_a_staging_folder_left_by_a_killed_job_is_never_listed_and_is_cleaned_up(small_bundle):
    dead_pid = _a_finished_process_id()
    staging = registry.store_home() / registry.STAGING_DIR
    leftover = staging / f"{dead_pid}-deadbeef-{socket.gethostname()}"
    elsewhere = staging / f"{dead_pid}-deadbeef-another-host"
    (elsewhere / registry.MODEL_NAME).mkdir(parents=True)
    (leftover / registry.MODEL_NAME / "half").mkdir(parents=True)
    (leftover / registry.MODEL_NAME / "half" / "bundle.joblib").write_bytes(b"partial")
    listed = {str(m.tag) for m in registry.list_models()}
    assert not any("half" in tag for tag in listed)
    with store_restored_afterwards():
        tag = registry.save_bundle(small_bundle)
        assert {str(m.tag) for m in registry.list_models()} == listed | {tag}
    assert not leftover.exists()
    assert elsewhere.exists(), "a staging folder of another host's job must be left alone"
    shutil.rmtree(elsewhere)


def _a_finished_process_id() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
