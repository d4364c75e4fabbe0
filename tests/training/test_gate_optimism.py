"""The gate on the candidate's own patients: bootstrap optimism correction when held-out events
are few."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from model.schema import ENDPOINTS, OUTCOME_COLUMNS
from netprog.cli import main
from store import registry, training_store
from tests.training.store import store_restored_afterwards
from tests.training.updating_reference import FAST, reference_bundle
from training import gate, gate_optimism
from training.evaluate.efron import efron_cox
from training.gate_optimism import optimism_corrected
from training.pipeline import train
from training.synthetic import simulate_cohort, write_cohort
from training.synthetic_centre import centre_spec, simulate_centre
from training.update_run import update
from training.validate import validate_cohort

NOISE_COLUMNS = [f"x{k}" for k in range(6)]


def _noise_cohort(n: int, seed: int) -> pd.DataFrame:
    """Six predictors with no bearing on either outcome: any C above 0.5 is optimism."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, len(NOISE_COLUMNS))), columns=NOISE_COLUMNS)
    for endpoint in ENDPOINTS:
        months, censored = rng.exponential(24.0, n), rng.uniform(6.0, 60.0, n)
        frame[f"{endpoint}_months"] = np.minimum(months, censored)
        frame[f"{endpoint}_event"] = months <= censored
    return frame


def _unpenalised_cox(rows: pd.DataFrame, seed: int) -> dict[str, np.ndarray]:
    """The procedure: an unpenalised Cox fit per endpoint on all six predictors."""
    return {
        e: efron_cox(rows[NOISE_COLUMNS].to_numpy(), rows[f"{e}_months"], rows[f"{e}_event"])[0]
        for e in ENDPOINTS
    }


def _linear_predict(coefficients, endpoint: str, rows: pd.DataFrame):
    log_hazard = rows[NOISE_COLUMNS].to_numpy() @ coefficients[endpoint]
    return log_hazard, np.exp(-0.5 * np.exp(log_hazard))


def test_an_overfitted_procedure_on_noise_is_corrected_to_no_discrimination_and_shrinkage():
    rows = _noise_cohort(80, seed=0)
    candidate = _unpenalised_cox(rows, 0)
    production = {e: np.random.default_rng(9).normal(size=len(NOISE_COLUMNS)) for e in ENDPOINTS}

    figures = optimism_corrected(
        rows, candidate, production, _unpenalised_cox, _linear_predict, n_resamples=100, seed=1
    )

    # About 58 events per endpoint for six predictors: the apparent C is 0.58-0.60 and the
    # apparent slope near 1; the truth is C 0.5, and a slope near 0 on new patients.
    for endpoint in ENDPOINTS:
        harrell, slope = figures[endpoint]["harrell_c"], figures[endpoint]["slope"]
        assert harrell["optimism"] > 0.04
        assert harrell["candidate"] == pytest.approx(0.5, abs=0.05)
        assert harrell["difference"] == pytest.approx(harrell["candidate"] - harrell["production"])
        assert harrell["lower"] < harrell["difference"] < harrell["upper"]
        assert slope["apparent"] > 1.0
        assert slope["slope"] < 0.65
        assert slope["slope"] == pytest.approx(slope["apparent"] - slope["optimism"])
        assert figures[endpoint]["failed_resamples"] == 0


def test_the_figures_do_not_depend_on_how_many_processes_share_the_resamples():
    rows = _noise_cohort(60, seed=4)
    candidate = _unpenalised_cox(rows, 0)
    arguments = (rows, candidate, candidate, _unpenalised_cox, _linear_predict)

    alone = optimism_corrected(*arguments, n_resamples=12, seed=2, n_jobs=1)
    shared = optimism_corrected(*arguments, n_resamples=12, seed=2, n_jobs=2)

    assert shared == alone


def test_resamples_on_which_the_procedure_fails_are_counted_and_too_many_leave_no_figure():
    rows = _noise_cohort(60, seed=5)
    candidate = _unpenalised_cox(rows, 0)
    calls = iter(range(1000))

    def fails_mostly(resample: pd.DataFrame, seed: int):
        call = next(calls)
        if call % 3 == 1:
            raise ValueError("too few events in this draw")
        if call % 3 == 2:
            raise ArithmeticError("Numerical error, because weights are too large.")
        return _unpenalised_cox(resample, seed)

    production = {e: np.random.default_rng(9).normal(size=len(NOISE_COLUMNS)) for e in ENDPOINTS}

    figures = optimism_corrected(
        rows, candidate, production, fails_mostly, _linear_predict, n_resamples=30
    )

    assert figures["os"]["failed_resamples"] == 20
    assert figures["os"]["harrell_c"]["lower"] is None
    assert figures["os"]["harrell_c"]["note"] == "only 10 of 30 resamples usable"
    assert figures["os"]["slope"]["slope"] is None


def test_a_candidate_that_ranks_the_patients_as_production_has_delta_c_zero_uncorrected():
    rows = _noise_cohort(80, seed=0)
    production = _unpenalised_cox(rows, 0)
    recalibrated = {e: 0.5 * coefficients for e, coefficients in production.items()}

    figures = optimism_corrected(
        rows, recalibrated, production, _unpenalised_cox, _linear_predict, n_resamples=40
    )

    for endpoint in ENDPOINTS:
        for name in ("harrell_c", "uno_c"):
            entry = figures[endpoint][name]
            assert (entry["difference"], entry["lower"], entry["upper"]) == (0.0, 0.0, 0.0)
            assert entry["candidate"] == entry["production"]
            assert "ranks these patients exactly as production" in entry["note"]
        # The slope is still the procedure's, corrected: refits on noise are over-spread.
        assert figures[endpoint]["slope"]["optimism"] > 0.2


def register_with_held_out(bundle, held_out: pd.DataFrame) -> str:
    """`bundle` registered with `held_out` as its held-out rows, as `netprog train` keeps them."""

    def write_extras(tag: str, folder) -> None:
        training_store.write_patient_files(
            tag, folder, {registry.HOLDOUT_FILE: lambda path: held_out.to_parquet(path)}
        )

    return registry.save_bundle(bundle, write_extras)


@pytest.fixture(scope="module")
def production():
    """The reference model as production, with 400 held-out patients of its own population."""
    with store_restored_afterwards():
        held_out = validate_cohort(simulate_cohort(400, seed=77))
        tag = register_with_held_out(reference_bundle(), held_out)
        registry.set_production(tag, reason="test")
        yield tag


def _shuffled(cohort: pd.DataFrame, seed: int) -> pd.DataFrame:
    shuffled = cohort.copy()
    outcomes = [*OUTCOME_COLUMNS, "hpfs_event_type"]
    shuffled[outcomes] = cohort[outcomes].sample(frac=1.0, random_state=seed).to_numpy()
    return shuffled


def test_an_update_without_held_out_patients_is_judged_on_its_own_patients_and_promoted(
    production,
):
    local = simulate_centre(150, 9, centre_spec(hazard_multiplier=2.0))
    run = update(local, cohort_label="synthetic")

    decision = gate.evaluate_gate(run.tag, optimism_resamples=40, n_jobs=2)

    assert decision["passed"], decision["failures"]
    own, held_out = decision["evaluation_sets"]
    assert (own["name"], own["method"], own["n_patients"], own["used"]) == (
        "candidate's own",
        "optimism-corrected bootstrap",
        150,
        True,
    )
    assert (held_out["name"], held_out["method"]) == ("production held-out", "held-out")
    for check in (c for c in decision["checks"] if c["set"] == "candidate's own"):
        assert check["method"] == "optimism-corrected bootstrap"
        if check["check"] == "calibration_slope_24":
            assert check["n_resamples"] == 40
            assert check["candidate"] == pytest.approx(check["apparent"] - check["optimism"])
        else:
            # An update of the baseline (or slope) only keeps production's ranking: ΔC is 0.
            assert (check["difference"], check["lower"], check["n_resamples"]) == (0.0, 0.0, 0)


def test_an_update_on_outcomes_shuffled_against_the_patients_is_refused_on_production_patients(
    production,
):
    local = _shuffled(simulate_centre(150, 9, centre_spec()), seed=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "all coefficients are zero", UserWarning)
        run = update(local, cohort_label="synthetic")

    decision = gate.evaluate_gate(run.tag, optimism_resamples=40, n_jobs=2)

    # On its own (shuffled) patients the update is as good as production, which predicts
    # nothing there either; on the patients production was accepted on, its flattened risks
    # are far too timid.
    assert not decision["passed"]
    refused = [c for c in decision["checks"] if not c["passed"]]
    assert {(c["set"], c["check"]) for c in refused} >= {
        ("production held-out", "calibration_slope_24")
    }
    slope = next(c for c in refused if c["check"] == "calibration_slope_24")
    assert slope["lower"] > 1.25


def test_a_retrain_with_few_held_out_events_is_judged_on_its_development_patients(production):
    cohort = simulate_centre(300, 12, centre_spec())
    run = train(
        cohort, seed=0, n_bootstrap=2, n_splits=3, n_jobs=1, cohort_label="synthetic",
        estimator_params=FAST, promote_if_none=False,
    )  # fmt: skip
    held_out = run.results["held_out"]["holdout"]
    assert max(held_out["n_events"].values()) < 100

    decision = gate.evaluate_gate(run.tag, optimism_resamples=20, n_jobs=2)

    own, theirs = decision["evaluation_sets"]
    assert (own["name"], theirs["name"]) == ("candidate's own", "production held-out")
    assert own["n_patients"] == held_out["n_development"]
    assert f"replaces the candidate's {held_out['n_patients']} held-out patients" in own["note"]
    mine = [c for c in decision["checks"] if c["set"] == "candidate's own"]
    assert len(mine) == 6
    assert all(c["n_resamples"] >= 18 for c in mine if c["check"] == "calibration_slope_24")


def test_update_with_promote_is_refused_for_shuffled_outcomes_and_production_stays(
    production, tmp_path, monkeypatch
):
    monkeypatch.setattr(gate_optimism, "OPTIMISM_BOOTSTRAP", 30)
    path = write_cohort(
        _shuffled(simulate_centre(150, 9, centre_spec()), seed=1), tmp_path / "local.csv"
    )

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "all coefficients are zero", UserWarning)
        result = CliRunner().invoke(
            main, ["update", "--data", str(path), "--label", "synthetic", "--promote"]
        )

    assert result.exit_code == 3, result.output
    assert "refused by the promotion gate" in result.output
    assert "production held-out" in result.output
    assert registry.production_tag() == production
