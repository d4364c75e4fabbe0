"""Tests of safe promotion: the gate, forced promotion with a reason, rollback."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from model.schema import OUTCOME_COLUMNS
from store import registry
from tests.training.store import store_restored_afterwards
from training import gate
from training.cli import main
from training.exceptions import RegistryError
from training.gate import EvaluationSet, _unseen_by
from training.holdout import holdout_mask, patient_hashes
from training.pipeline import resolve_cohort, train
from training.synthetic import write_cohort

FAST = {"coxnet": {"cv": 3, "n_alphas": 30, "l1_ratios": (0.9,)}}
"""One l1_ratio and a short alpha path: seconds per fit, still CV-tuned."""


def _train(cohort, seed):
    return train(
        cohort,
        seed=seed,
        n_bootstrap=2,
        n_splits=3,
        n_jobs=1,
        cohort_label="synthetic",
        estimator_params=FAST,
    )


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    """A production model, a candidate on shuffled outcomes and one retrained with a new seed.

    The shuffled candidate is trained by `netprog train --promote`, as a scheduled job would.
    """
    folder = tmp_path_factory.mktemp("gate")
    with store_restored_afterwards():
        # No centre column: the leave-one-centre-out validation is tested elsewhere.
        cohort = resolve_cohort("synthetic:500", seed=0).drop(columns="center")
        production = _train(cohort, seed=0)
        if registry.production_tag() != production.tag:
            registry.set_production(production.tag, reason="test baseline")
        shuffled = cohort.copy()
        outcomes = [*OUTCOME_COLUMNS, "hpfs_event_type"]  # moved together, so they agree
        shuffled[outcomes] = cohort[outcomes].sample(frac=1.0, random_state=1).to_numpy()
        write_cohort(shuffled, folder / "shuffled.csv")
        with warnings.catch_warnings():
            # Outcomes shuffled against the patients leave nothing to learn: the penalised
            # Cox path zeroes every coefficient, and scikit-learn warns that it did.
            warnings.filterwarnings("ignore", "all coefficients are zero", UserWarning)
            result = CliRunner().invoke(
                main,
                ["train", "--data", str(folder / "shuffled.csv"), "--label", "synthetic"]
                + ["--promote"]
                + ["--n-bootstrap", "2", "--folds", "3", "--jobs", "1"]
                + ["--run-record", str(folder / "run.json")],
            )
        record = json.loads((folder / "run.json").read_text())
        retrained = _train(cohort, seed=1)
        yield {
            "production": production.tag,
            "noise": record["tag"],
            "retrained": retrained.tag,
            "noise_exit_code": result.exit_code,
            "noise_output": result.output,
            "noise_record": record,
        }


def _pointer_bytes() -> bytes:
    return (registry.store_home() / registry.POINTER_FILE).read_bytes()


def test_train_promote_refuses_a_candidate_on_shuffled_outcomes_with_exit_code_3(candidates):
    assert candidates["noise_exit_code"] == 3, candidates["noise_output"]
    assert "refused by the promotion gate" in candidates["noise_output"]
    record = candidates["noise_record"]
    assert (record["status"], record["exit_code"]) == ("refused", 3)
    assert record["production"] == candidates["production"]
    assert record["gate"]["passed"] is False
    assert record["gate"]["production"] == candidates["production"]
    assert len(record["gate"]["failures"]) >= 2
    assert record["timings"]["fit"] > 0


def test_a_candidate_trained_on_shuffled_outcomes_is_refused_by_the_gate(candidates):
    before = _pointer_bytes()
    result = CliRunner().invoke(main, ["promote", candidates["noise"]])
    assert result.exit_code == 3, result.output
    assert "refused by the promotion gate" in result.output
    assert _pointer_bytes() == before
    decision = gate.evaluate_gate(candidates["noise"])
    failed = {(c["set"], c["endpoint"], c["check"]) for c in decision["checks"] if not c["passed"]}
    assert ("production held-out", "os", "harrell_c") in failed
    assert ("production held-out", "hpfs", "harrell_c") in failed
    os_check = next(
        c
        for c in decision["checks"]
        if (c["set"], c["endpoint"], c["check"]) == ("production held-out", "os", "harrell_c")
    )
    assert os_check["production"] > 0.75
    assert os_check["candidate"] < 0.6
    assert os_check["upper"] < -0.1
    assert decision["verdict"].startswith("refused: non-inferiority not shown")


def test_a_candidate_retrained_with_another_seed_passes_the_gate_on_non_inferiority(candidates):
    decision = gate.evaluate_gate(candidates["retrained"])
    assert decision["passed"], decision["failures"]
    assert decision["verdict"].startswith("promoted on non-inferiority: the lower bound of the")
    assert [s["name"] for s in decision["evaluation_sets"]] == ["shared held-out"]
    assert decision["evaluation_sets"][0]["n_patients"] > 80
    assert decision["evaluation_sets"][0]["n_excluded"] == 0
    kinds = sorted((c["endpoint"], c["check"]) for c in decision["checks"])
    assert kinds == [
        (endpoint, check)
        for endpoint in ("hpfs", "os")
        for check in ("calibration_slope_24", "harrell_c", "uno_c")
    ]
    for check in decision["checks"]:
        assert check["lower"] <= check["candidate" if "slope" in check["check"] else "difference"]
        if check["check"] in ("harrell_c", "uno_c"):
            assert check["difference"] == pytest.approx(check["candidate"] - check["production"])
            assert check["lower"] > -0.01
            assert check["n_resamples"] >= 490
        else:
            assert check["lower"] <= 1.25
            assert check["upper"] >= 0.8
    assert decision["criteria"]["non_inferiority_margin"] == 0.01


def test_promote_then_rollback_returns_the_previous_model(candidates):
    runner = CliRunner()
    promoted = runner.invoke(main, ["promote", candidates["retrained"]])
    assert promoted.exit_code == 0, promoted.output
    assert registry.production_tag() == candidates["retrained"]
    last = registry.pointer_history()[-1]
    assert last["action"] == "promote"
    assert last["gate"]["passed"] is True
    rolled_back = runner.invoke(main, ["rollback"])
    assert rolled_back.exit_code == 0, rolled_back.output
    assert registry.production_tag() == candidates["production"]
    assert registry.pointer_history()[-1]["action"] == "rollback"
    assert registry.load_bundle().metadata["tag"] == candidates["production"]


def test_a_forced_promotion_records_its_reason_and_the_failed_gate_in_the_history(candidates):
    reason = "registry audit 2024-Q3: the old export double-counted progression"
    result = CliRunner().invoke(
        main, ["promote", candidates["noise"], "--force", "--reason", reason]
    )
    try:
        assert result.exit_code == 0, result.output
        entry = registry.pointer_history()[-1]
        assert entry["tag"] == candidates["noise"]
        assert entry["reason"] == reason
        assert entry["gate"]["passed"] is False
        assert entry["gate"]["forced"] is True
        assert len(entry["gate"]["failures"]) >= 2
    finally:
        assert registry.rollback() == candidates["production"]


def test_force_without_a_reason_is_a_bad_command_line_and_moves_nothing(candidates):
    before = _pointer_bytes()
    result = CliRunner().invoke(main, ["promote", candidates["noise"], "--force"])
    assert result.exit_code == 2
    assert "--force needs --reason" in result.output
    assert _pointer_bytes() == before


def test_promoting_the_production_model_again_is_refused_as_a_no_op(candidates):
    with pytest.raises(RegistryError, match="already production"):
        gate.promote(candidates["production"])


def test_a_promotion_based_on_a_stale_production_moves_nothing(candidates):
    before = _pointer_bytes()
    with pytest.raises(RegistryError, match="moved to .* meanwhile"):
        registry.set_production(candidates["retrained"], expected_production=candidates["noise"])
    assert _pointer_bytes() == before


def test_held_out_sets_nest_and_do_not_depend_on_row_order_or_seed():
    ids = pd.Series([f"P{i:05d}" for i in range(4000)])
    at_20, at_30 = holdout_mask(ids, 0.2), holdout_mask(ids, 0.3)
    assert 0.18 < at_20.mean() < 0.22
    assert 0.28 < at_30.mean() < 0.32
    assert not (at_20 & ~at_30).any()
    reversed_ids = ids.iloc[::-1].reset_index(drop=True)
    np.testing.assert_array_equal(holdout_mask(reversed_ids, 0.2), at_20[::-1])


def test_the_gate_leaves_out_held_out_patients_the_other_model_was_trained_on():
    rows = resolve_cohort("synthetic:40", seed=3)
    seen = set(patient_hashes(rows["patient_id"].iloc[:15]))
    kept = _unseen_by(rows, seen, "candidate held-out", "production")
    assert isinstance(kept, EvaluationSet)
    assert kept.n_excluded == 15
    assert len(kept.rows) == 25
    assert set(kept.rows["patient_id"]) == set(rows["patient_id"].iloc[15:])
    unknown = _unseen_by(rows, None, "candidate held-out", "production")
    assert len(unknown.rows) == 40
    assert "does not record its training patients" in unknown.note
