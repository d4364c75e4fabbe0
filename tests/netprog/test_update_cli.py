"""`netprog update`: a registered model updated to a centre's cohort, or a clear refusal."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from sksurv.linear_model import CoxnetSurvivalAnalysis

from netprog.cli import main
from store import registry, training_store
from tests.training.store import store_restored_afterwards
from tests.training.updating_reference import reference_bundle
from training import gate_optimism, update_run, updating
from training.synthetic import write_cohort
from training.synthetic_centre import centre_spec, simulate_centre
from training.update_card import LOCAL_ROWS_FILE


@pytest.fixture
def production():
    """The reference bundle registered as production; the store restored afterwards."""
    with store_restored_afterwards():
        tag = registry.save_bundle(reference_bundle())
        registry.set_production(tag, reason="test")
        yield tag


def _tags() -> set[str]:
    return {str(m.tag) for m in registry.list_models()}


def _run(*arguments: str):
    return CliRunner().invoke(main, ["update", *arguments], catch_exceptions=False)


def test_update_registers_a_candidate_whose_card_records_the_path_and_the_local_numbers(
    production, tmp_path: Path, caplog
):
    local = simulate_centre(150, 4, centre_spec(hazard_multiplier=2.0))
    path = write_cohort(local, tmp_path / "local.csv")
    before = _tags()

    with caplog.at_level(logging.DEBUG):
        result = _run("--data", str(path), "--label", "synthetic", "--from", production)

    assert result.exit_code == 0, result.output
    (new,) = _tags() - before
    assert registry.production_tag() == production
    card = json.loads(Path(registry.get_model(new).path_of("model_card.json")).read_text())
    assert card["updated_from"] == production
    assert card["data"]["n_local"] == 150
    assert card["data"]["local_events"]["os"] == int(local["os_event"].sum())
    assert card["updating"]["primary_path"]["os"] in (1, 2)
    assert f"hpfs coxnet (primary): {card['updating']['primary_path']['hpfs']}" in result.output
    bundle = registry.load_bundle(new)
    assert bundle.metadata["n_patients"] == 150
    assert registry.training_patients(new) is not None
    stored = registry.get_model(new)
    rows = training_store.verified_file(new, Path(stored.path), LOCAL_ROWS_FILE)
    assert len(pd.read_parquet(rows)) == 150
    assert not Path(stored.path_of(LOCAL_ROWS_FILE)).exists()
    logged = result.output + caplog.text
    assert not any(patient_id in logged for patient_id in local["patient_id"])
    assert f"{local['age_years'].iloc[0]} years" not in logged


def test_a_cohort_with_a_missing_column_is_refused_and_nothing_is_registered(
    production, tmp_path: Path
):
    local = simulate_centre(150, 5, centre_spec()).drop(columns=["os_event"])
    path = write_cohort(local, tmp_path / "local.csv")
    before = _tags()

    result = _run("--data", str(path), "--label", "synthetic")

    assert result.exit_code == 2
    assert "os_event" in result.output
    assert _tags() == before


def test_a_cohort_with_too_few_events_is_refused_and_nothing_is_registered(
    production, tmp_path: Path
):
    local = simulate_centre(12, 6, centre_spec())
    path = write_cohort(local, tmp_path / "local.csv")
    before = _tags()

    result = _run("--data", str(path), "--label", "synthetic")

    assert result.exit_code == 2
    assert "at least 10" in result.output
    assert _tags() == before


def test_an_unknown_from_tag_is_refused_with_the_tag_and_nothing_is_registered(
    production, tmp_path: Path
):
    path = write_cohort(simulate_centre(150, 7, centre_spec()), tmp_path / "local.csv")
    before = _tags()

    result = _run("--data", str(path), "--label", "synthetic", "--from", "netprog-bundle:nosuch")

    assert result.exit_code == 2
    assert "netprog-bundle:nosuch" in result.output
    assert "netprog models" in result.output
    assert _tags() == before


def test_a_synthetic_cohort_declared_real_is_refused(production, tmp_path: Path):
    path = write_cohort(simulate_centre(150, 8, centre_spec()), tmp_path / "local.csv")
    before = _tags()

    result = _run("--data", str(path), "--label", "real")

    assert result.exit_code == 2
    assert _tags() == before


def test_a_cohort_the_refit_diverges_on_is_refused_as_invalid_data_and_nothing_is_registered(
    production, tmp_path: Path, monkeypatch
):
    def refit_chosen(**arguments):
        decision = updating.choose_method(**arguments)
        linear = arguments["design"] is not None
        return dataclasses.replace(decision, method=4) if linear else decision

    def overflowing_coxnet(self, X, y):
        raise ArithmeticError("Numerical error, because weights are too large.")

    path = write_cohort(simulate_centre(150, 9, centre_spec()), tmp_path / "local.csv")
    monkeypatch.setattr(update_run, "choose_method", refit_chosen)
    monkeypatch.setattr(CoxnetSurvivalAnalysis, "fit", overflowing_coxnet)
    before = _tags()

    result = _run("--data", str(path), "--label", "synthetic")

    assert result.exit_code == 2, result.output
    assert "the cohort could not be fitted" in result.output
    assert "duplicated patients" in result.output
    assert "Traceback" not in result.output
    assert _tags() == before


def test_netprog_offers_update():
    result = CliRunner().invoke(main, ["--help"])

    assert "  update" in result.output


def test_update_with_promote_is_judged_on_its_own_patients_and_promoted(
    production, tmp_path: Path, monkeypatch
):
    monkeypatch.setattr(gate_optimism, "OPTIMISM_BOOTSTRAP", 30)
    path = write_cohort(
        simulate_centre(150, 9, centre_spec(hazard_multiplier=2.0)), tmp_path / "local.csv"
    )
    before = _tags()

    result = _run("--data", str(path), "--label", "synthetic", "--promote", "--jobs", "1")

    # No held-out patients: the update's own 150 are validated by bootstrap refits of it
    # (refused before, for want of anything to judge on).
    assert result.exit_code == 0, result.output
    (new,) = _tags() - before
    assert f"{new} promoted to production" in result.output
    assert registry.production_tag() == new
    gate = registry.pointer_history()[-1]["gate"]
    assert {check["set"] for check in gate["checks"]} == {"candidate's own"}
    slopes = [check for check in gate["checks"] if check["check"] == "calibration_slope_24"]
    assert [check["n_resamples"] for check in slopes] == [30, 30]
