"""Tests of the cohort sources: CSV, Parquet and a real PostgreSQL server give the same model."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from store import registry
from training.cli import main
from training.exceptions import CohortReadError, CohortValidationError, SourceUnavailableError
from training.fit import data_fingerprint, fit_bundle
from training.pipeline import evaluate_on_rows, resolve_cohort, split_holdout
from training.sources import describe_source, read_source
from training.synthetic import simulate_cohort, write_cohort

FAST = {"coxnet": {"cv": 3, "n_alphas": 30, "l1_ratios": (0.9,)}}
"""One l1_ratio and a short alpha path: seconds per fit, still CV-tuned."""

PG_START_TIMEOUT_S = 60


def _postgres_bin() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(found[-1]).parent if found else None


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user(command: list[str], user: str | None) -> list[str]:
    # PostgreSQL refuses to run as root: under root, run its tools as an unprivileged user.
    return ["runuser", "-u", user, "--", *command] if user else command


@pytest.fixture(scope="session")
def postgres_url():
    """A throw-away PostgreSQL server on 127.0.0.1 (trust auth), from Debian's binaries."""
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; install "
            "the Debian package `postgresql` (make system-deps does)"
        )
    user = None
    if os.geteuid() == 0:
        user = "postgres" if _user_exists("postgres") else "nobody"
    base = Path(tempfile.mkdtemp(prefix="netprog-pg-"))
    if user:
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    data, port = base / "data", _free_loopback_port()
    subprocess.run(
        _as_server_user(
            [str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "netprog"]
            + ["--no-sync", "-E", "UTF8", "--no-locale"],
            user,
        ),
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off"
    subprocess.run(
        _as_server_user(
            [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log")]
            + ["-w", "-t", str(PG_START_TIMEOUT_S), "-o", options, "start"],
            user,
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://netprog@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_server_user(
                [str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], user
            ),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="module")
def registry_export():
    """300 synthetic patients, shuffled like an export whose row order means nothing."""
    return simulate_cohort(300, seed=11).sample(frac=1.0, random_state=4).reset_index(drop=True)


@pytest.fixture(scope="module")
def sources(registry_export, postgres_url, tmp_path_factory):
    """The same rows as a CSV file, a Parquet file and a PostgreSQL table."""
    folder = tmp_path_factory.mktemp("sources")
    csv = write_cohort(registry_export, folder / "cohort.csv")
    parquet = write_cohort(registry_export, folder / "cohort.parquet")
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        registry_export.to_sql(
            "net_registry",
            engine,
            index=False,
            if_exists="replace",
            dtype={"treatment_date": sa.Date(), "age_years": sa.Integer()},
        )
    finally:
        engine.dispose()
    return {
        "csv": (str(csv), None),
        "parquet": (str(parquet), None),
        "postgresql": (postgres_url, "SELECT * FROM net_registry"),
    }


@pytest.fixture(scope="module")
def fitted(sources):
    """Per source: the validated cohort, its bundle (development rows) and held-out metrics."""
    results = {}
    for name, (data, query) in sources.items():
        cohort = resolve_cohort(data, seed=0, query=query)
        development, held_out = split_holdout(cohort, 0.25)
        bundle = fit_bundle(development, seed=3, n_bootstrap=3, n_jobs=1, estimator_params=FAST)
        results[name] = (cohort, bundle, evaluate_on_rows(bundle, held_out, seed=3))
    return results


def test_csv_parquet_and_postgresql_give_the_same_validated_rows_and_fingerprint(fitted):
    csv_cohort = fitted["csv"][0]
    assert len(csv_cohort) == 300
    assert csv_cohort["patient_id"].is_monotonic_increasing
    for name in ("parquet", "postgresql"):
        cohort = fitted[name][0]
        assert data_fingerprint(cohort) == data_fingerprint(csv_cohort), name
        for column in ("age_years", "tumor_burden_percent", "os_months", "os_event"):
            np.testing.assert_array_equal(cohort[column], csv_cohort[column])


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_csv_parquet_and_postgresql_give_the_same_fitted_coxnet_coefficients(fitted, endpoint):
    reference = fitted["csv"][1].models[endpoint]["coxnet"]
    assert np.count_nonzero(reference.full.coef) >= 5
    for name in ("parquet", "postgresql"):
        model = fitted[name][1].models[endpoint]["coxnet"]
        np.testing.assert_array_equal(model.full.coef, reference.full.coef)
        for ours, theirs in zip(model.members, reference.members, strict=True):
            np.testing.assert_array_equal(ours.coef, theirs.coef)


def test_csv_parquet_and_postgresql_give_the_same_held_out_metrics(fitted):
    reference = fitted["csv"][2]
    assert 60 < reference["os"]["coxnet"]["n"] < 90
    assert 0.6 < reference["os"]["coxnet"]["harrell_c"] < 0.95
    assert fitted["parquet"][2] == reference
    assert fitted["postgresql"][2] == reference


def test_train_reads_a_postgresql_query_and_registers_a_model(sources, tmp_path):
    from tests.training.store import store_restored_afterwards

    url, _ = sources["postgresql"]
    record = tmp_path / "run.json"
    with store_restored_afterwards():
        result = CliRunner().invoke(
            main,
            ["train", "--data", url, "--label", "synthetic"]
            + ["--query", "SELECT * FROM net_registry WHERE center <> 'C3'"]
            + ["--n-bootstrap", "2", "--folds", "2", "--jobs", "1"]
            + ["--run-record", str(record)],
        )
        assert result.exit_code == 0, result.output
        import json

        run = json.loads(record.read_text())
        model = registry.get_model(run["tag"])
        assert model.info.metadata["n_cohort"] == run["data"]["n_patients"]
    assert run["status"] in ("registered", "promoted")
    assert run["data"]["source"] == (f"{url} (SELECT * FROM net_registry WHERE center <> 'C3')")
    assert 150 < run["data"]["n_patients"] < 250


def test_an_invalid_row_in_the_database_stops_the_job_with_row_errors_before_fitting(
    sources, postgres_url
):
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE IF EXISTS bad_registry"))
            connection.execute(sa.text("CREATE TABLE bad_registry AS SELECT * FROM net_registry"))
            connection.execute(
                sa.text(
                    "UPDATE bad_registry SET tumor_burden_percent = 140 WHERE patient_id = "
                    "(SELECT min(patient_id) FROM bad_registry)"
                )
            )
    finally:
        engine.dispose()
    before = [str(m.tag) for m in registry.list_models()]
    query = "SELECT * FROM bad_registry ORDER BY patient_id"
    result = CliRunner().invoke(
        main, ["train", "--data", postgres_url, "--label", "synthetic", "--query", query]
    )
    assert result.exit_code == 2
    assert "row 1, column tumor_burden_percent: must be a number between 0 and 100" in (
        result.output
    )
    assert [str(m.tag) for m in registry.list_models()] == before


def test_netprog_validate_checks_a_database_query_like_a_file(sources):
    url, query = sources["postgresql"]
    result = CliRunner().invoke(main, ["validate", url, "--query", query])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("valid cohort of 300 patients")
    missing = CliRunner().invoke(main, ["validate", url, "--query", "SELECT 1 AS patient_id"])
    assert missing.exit_code == 2
    assert "column age_years: required column is missing" in missing.output


def test_a_query_naming_a_missing_table_is_invalid_input_with_the_database_answer(postgres_url):
    with pytest.raises(CohortReadError, match='relation "no_such_table" does not exist'):
        read_source(postgres_url, "SELECT * FROM no_such_table")


def test_an_unreachable_database_is_a_failure_not_invalid_data():
    url = f"postgresql://netprog:secret@127.0.0.1:{_free_loopback_port()}/registry"
    with pytest.raises(SourceUnavailableError, match="must accept the connection") as error:
        read_source(url, "SELECT 1")
    assert "secret" not in str(error.value)
    result = CliRunner().invoke(
        main, ["train", "--data", url, "--label", "real", "--query", "SELECT 1"]
    )
    assert result.exit_code == 1
    assert "secret" not in result.output


def test_a_database_source_needs_a_query_and_a_file_refuses_one(tmp_path):
    with pytest.raises(CohortReadError, match="needs --query"):
        read_source("postgresql://netprog@127.0.0.1/registry")
    with pytest.raises(CohortReadError, match="--query applies to a database URL only"):
        read_source(str(tmp_path / "cohort.csv"), "SELECT 1")


def test_the_recorded_source_never_shows_the_password():
    described = describe_source("postgresql://analyst:s3cret@db.example:5432/registry", "SELECT 1")
    assert described == "postgresql://analyst:***@db.example:5432/registry (SELECT 1)"


def test_every_source_passes_the_one_validation(tmp_path):
    cohort = simulate_cohort(20, seed=2)
    cohort.loc[5, "modality"] = "PRRT"
    path = write_cohort(cohort, tmp_path / "bad.parquet")
    with pytest.raises(CohortValidationError, match="row 6, column modality: must be one of"):
        resolve_cohort(str(path))


def test_row_order_of_the_export_does_not_change_the_cohort():
    cohort = simulate_cohort(40, seed=2)
    reversed_rows = cohort.iloc[::-1].reset_index(drop=True)
    with tempfile.TemporaryDirectory() as folder:
        first = resolve_cohort(str(write_cohort(cohort, Path(folder) / "a.csv")))
        second = resolve_cohort(str(write_cohort(reversed_rows, Path(folder) / "b.csv")))
    pd.testing.assert_frame_equal(first, second)
