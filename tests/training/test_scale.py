"""Tests of scaling out: a Dask cluster gives the local results; --device reaches xgboost."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from tests.training.store import store_restored_afterwards
from training import parallel
from training.cli import main
from training.exceptions import ParallelBackendError
from training.fit import make_estimator
from training.pipeline import resolve_cohort, train

FAST = {"coxnet": {"cv": 3, "n_alphas": 30, "l1_ratios": (0.9,)}}


@pytest.fixture(scope="module")
def local_and_dask_runs():
    """The same 300 patients trained locally and on a two-process LocalCluster on loopback."""
    from distributed import LocalCluster

    cohort = resolve_cohort("synthetic:300", seed=8)
    options = {
        "seed": 8,
        "n_bootstrap": 3,
        "n_splits": 3,
        "estimator_params": FAST,
        "cohort_label": "synthetic",
    }
    with store_restored_afterwards():
        local = train(cohort, n_jobs=1, **options)
        with LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster:
            on_dask = train(cohort, dask_scheduler=cluster.scheduler_address, **options)
        yield local, on_dask


def test_a_local_cluster_and_a_local_run_give_identical_metrics(local_and_dask_runs):
    local, on_dask = local_and_dask_runs
    assert on_dask.tag != local.tag
    for key in ("metrics", "held_out_metrics", "primary", "data_fingerprint", "n_patients"):
        assert on_dask.bundle.metadata[key] == local.bundle.metadata[key], key
    assert 0.6 < local.bundle.metadata["metrics"]["os"]["coxnet"]["harrell_c"] < 0.95
    assert on_dask.results["leave_one_centre_out"] == local.results["leave_one_centre_out"]


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_a_local_cluster_and_a_local_run_fit_identical_models(local_and_dask_runs, endpoint):
    local, on_dask = local_and_dask_runs
    ours, theirs = on_dask.bundle.models[endpoint], local.bundle.models[endpoint]
    np.testing.assert_array_equal(ours["coxnet"].full.coef, theirs["coxnet"].full.coef)
    design = on_dask.bundle.shap_background.to_numpy()
    primary = local.bundle.primary[endpoint]
    assert on_dask.bundle.primary[endpoint] == primary
    if primary == "coxnet":
        pairs = zip(ours[primary].components, theirs[primary].components, strict=True)
        assert len(ours[primary].components) == (2 if endpoint == "hpfs" else 1)
        for mine, reference in pairs:
            np.testing.assert_array_equal(mine.coef, reference.coef)
            np.testing.assert_allclose(mine.covariance, reference.covariance, rtol=1e-9, atol=1e-15)
    else:
        assert len(ours[primary].members) == 3
        for mine, reference in zip(ours[primary].members, theirs[primary].members, strict=True):
            np.testing.assert_array_equal(mine.log_hazard(design), reference.log_hazard(design))
    np.testing.assert_array_equal(
        ours["xgboost"].full.log_hazard(design), theirs["xgboost"].full.log_hazard(design)
    )


def test_an_unreachable_scheduler_fails_with_the_address_and_a_remedy(monkeypatch):
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT_S", 1)
    with (
        pytest.raises(ParallelBackendError, match="tcp://127.0.0.1:9 must answer within 1 s"),
        parallel.joblib_backend("tcp://127.0.0.1:9"),
    ):
        pass


def test_device_cuda_reaches_the_boosted_models_estimator_params(monkeypatch, tmp_path):
    # No GPU here: check that the option arrives where xgboost reads it, without fitting; the
    # GPU check (tests/training/test_devices.py) is told there is one.
    captured = {}

    def fake_training(cohort, **options):
        captured.update(options)
        raise RuntimeError("stop before fitting")

    monkeypatch.setattr("training.pipeline.train", fake_training)
    monkeypatch.setattr("training.devices.cuda_problem", lambda: None)
    result = CliRunner().invoke(
        main, ["train", "--data", "synthetic:60", "--device", "cuda", "--jobs", "1"]
    )
    assert result.exit_code == 1
    assert captured["estimator_params"] == {"xgboost": {"device": "cuda"}}
    assert captured["dask_scheduler"] is None
    booster = make_estimator("xgboost", 0, captured["estimator_params"]["xgboost"])
    assert booster.get_params()["device"] == "cuda"
    assert booster._booster_params(0)["device"] == "cuda"


def test_device_cpu_adds_no_estimator_params(monkeypatch):
    captured = {}

    def fake_training(cohort, **options):
        captured.update(options)
        raise RuntimeError("stop before fitting")

    monkeypatch.setattr("training.pipeline.train", fake_training)
    CliRunner().invoke(main, ["train", "--data", "synthetic:60", "--jobs", "1"])
    assert captured["estimator_params"] == {}
