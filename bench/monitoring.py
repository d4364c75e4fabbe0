"""Benchmark: calibration monitoring (drift found, false alarms, speed) and the promotion gate.

Writes the "monitoring" section of bench/RESULTS.md. Run from the repository root::

    nice -n 10 .venv/bin/python -m bench.monitoring [--replicates 100] [--no-write]

Monitor cells: a stream of 400 patients treated at 150 a year, then 200 more; in the drift
cell the hazards of hepatic progression and of death are multiplied by 1.5 for every patient
treated from the 401st on (the "given date"); the data cut is 12 months after the 600th
patient's treatment, so each of the 200 has 12-28 months of potential follow-up; 5 % are lost
to follow-up at a uniform time before it. The production model is (a) the generator's truth
before the change, so the stable stream is exactly calibrated and the false-alarm rate is the
method's own, and (b) a model fitted on 2,000 simulated patients (coxnet primary), as deployed.
Drift counts as found when a "worse than predicted" chart crosses its limit at a patient treated
after the change; any crossing on a stable stream is a false alarm.

Gate cells: production is fitted on 1,000 simulated patients. Candidates (a pool of `--pool`
models per cell, reused across replicates): "equal in truth", refitted on the same cohort with
another seed (what a scheduled retrain on an unchanged registry gives); "independent", fitted
on another cohort of the same size from the same generator (equal in expectation, not in fact:
each carries its own estimation error), reported beside the target; "shuffled", fitted on the
same cohort with its outcome columns permuted against the patients. Each replicate draws 300
fresh held-out patients and runs the gate's checks on them (:func:`training.gate.compare_on_rows`,
500 paired resamples).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import (
    REPO_ROOT,
    command_line,
    environment,
    environment_lines,
    markdown_table,
    target_lines,
    write_section,
)
from model.bundle import MONTH_GRID, ModelBundle
from model.schema import OUTCOME_COLUMNS
from training.fit import fit_bundle
from training.gate import compare_on_rows
from training.monitor_run import drift_check, predict_survival
from training.synthetic import (
    MONTH_DAYS,
    CohortSpec,
    draw_progression_and_death,
    simulate_cohort,
    simulate_treated_patients,
    true_log_hazard,
    true_survival,
)
from training.validate import validate_cohort

N_BEFORE, N_AFTER, PER_YEAR, CUT_AFTER_MONTHS = 400, 200, 150, 12
HAZARD_RATIO = 1.5
LOST_FRACTION = 0.05
FAST = {"coxnet": {"cv": 3, "n_alphas": 30, "l1_ratios": (0.9,)}}
GATE_TRAIN_N, GATE_HELD_OUT_N = 1000, 300


def stream(seed: int, hazard_ratio: float, spec: CohortSpec) -> tuple[pd.DataFrame, dict, dict]:
    """One monitored stream: rows (with `_date`), the truth before the change, and the cut."""
    rng = np.random.default_rng(seed)
    n = N_BEFORE + N_AFTER
    frame = simulate_treated_patients(n, rng, spec)
    lp = {e: true_log_hazard(frame, e, spec) for e in ("hpfs", "os")}
    shift = np.where(np.arange(n) >= N_BEFORE, math.log(hazard_ratio), 0.0)
    progression, death = draw_progression_and_death(lp["hpfs"] + shift, lp["os"] + shift, rng, spec)
    days = np.sort(rng.uniform(0, n / PER_YEAR * 365.25, n)).astype(int)
    dates = pd.Timestamp("2030-01-01") + pd.to_timedelta(days, unit="D")
    cut = dates[-1] + pd.Timedelta(days=round(CUT_AFTER_MONTHS * MONTH_DAYS))
    censor = (cut - dates).days.to_numpy() / MONTH_DAYS
    lost = rng.random(n) < LOST_FRACTION
    censor = np.where(lost, rng.uniform(0, censor), censor)
    os_months = np.maximum(np.minimum(death, censor), 0.01)
    hpfs_months = np.maximum(np.minimum(progression, os_months), 0.01)
    frame["patient_id"] = [f"S{seed}-{i:04d}" for i in range(n)]
    frame["_date"] = dates
    frame["os_months"], frame["os_event"] = os_months, (death <= censor).astype(int)
    frame["hpfs_months"] = hpfs_months
    frame["hpfs_event"] = ((progression <= os_months) | (death <= censor)).astype(int)
    frame["_model"] = "production"
    truth = {
        "os": true_survival(lp["os"], MONTH_GRID, "os", spec),
        "hpfs": true_survival(lp["hpfs"], MONTH_GRID, "hpfs", spec, log_hazard_death=lp["os"]),
    }
    return frame, truth, {"cut": cut}


def _found(drift: dict) -> tuple[bool, int | None]:
    """Whether a "worse" chart crossed at a patient treated after the change, and how soon."""
    after = [
        c["flagged_at_patient"] - N_BEFORE
        for c in drift["charts"]
        if c["direction"] == "up" and c["flagged"] and c["flagged_at_patient"] > N_BEFORE
    ]
    return bool(after), (min(after) if after else None)


def monitor_cells(replicates: int, model: ModelBundle, spec: CohortSpec) -> list[dict]:
    cells = []
    for production in ("truth", "fitted"):
        for hazard_ratio in (HAZARD_RATIO, 1.0):
            flagged, delays = 0, []
            for replicate in range(replicates):
                rows, truth, info = stream(50_000 + replicate, hazard_ratio, spec)
                predicted = (
                    truth
                    if production == "truth"
                    else predict_survival(rows, rows["_model"], {"production": model})
                )
                drift = drift_check(rows, predicted, info["cut"], seed=replicate)
                if hazard_ratio == 1.0:
                    flagged += drift["flagged"]
                else:
                    found, delay = _found(drift)
                    flagged += found
                    delays += [delay] if delay is not None else []
            cells.append(
                {
                    "production": production,
                    "stream": "hazard × 1.5 after patient 400" if hazard_ratio != 1 else "stable",
                    "replicates": replicates,
                    "share_flagged": flagged / replicates,
                    "median_patients_after_change": float(np.median(delays)) if delays else None,
                }
            )
            print(cells[-1], flush=True)
    return cells


def _fit(cohort: pd.DataFrame, seed: int) -> ModelBundle:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "all coefficients are zero", UserWarning)
        return fit_bundle(validate_cohort(cohort), seed=seed, n_bootstrap=2, estimator_params=FAST)


def shuffled_outcomes(cohort: pd.DataFrame, seed: int) -> pd.DataFrame:
    """`cohort` with its outcome columns permuted together against the patients."""
    shuffled = cohort.copy()
    outcomes = [*OUTCOME_COLUMNS, "hpfs_event_type"]
    shuffled[outcomes] = cohort[outcomes].sample(frac=1.0, random_state=seed).to_numpy()
    return shuffled


EQUAL_IN_TRUTH = "retrained on the same cohort with another seed (equal in truth)"
INDEPENDENT = "trained on an independent cohort of the same size"
SHUFFLED = "trained on the same cohort with shuffled outcomes"


def gate_cells(replicates: int, pool: int) -> list[dict]:
    cohort = simulate_cohort(GATE_TRAIN_N, seed=1000)
    production = _fit(cohort, seed=0)
    pools = {
        EQUAL_IN_TRUTH: [_fit(cohort, seed=1 + k) for k in range(pool)],
        INDEPENDENT: [
            _fit(simulate_cohort(GATE_TRAIN_N, seed=2000 + k), seed=k) for k in range(pool)
        ],
        SHUFFLED: [_fit(shuffled_outcomes(cohort, k), seed=k) for k in range(pool)],
    }
    cells = []
    for name, candidates in pools.items():
        promoted, lowers = 0, []
        started = time.perf_counter()
        for replicate in range(replicates):
            rows = validate_cohort(simulate_cohort(GATE_HELD_OUT_N, seed=20_000 + replicate))
            decision = compare_on_rows(
                candidates[replicate % pool], production, rows, seed=replicate
            )
            promoted += decision["passed"]
            lowers += [
                c["lower"] for c in decision["checks"] if c["check"] in ("harrell_c", "uno_c")
            ]
        seconds = (time.perf_counter() - started) / replicates
        cells.append(
            {
                "candidate": name,
                "replicates": replicates,
                "pool": pool,
                "share_promoted": promoted / replicates,
                "median_lower_bound_delta_c": float(np.nanmedian(np.array(lowers, dtype=float))),
                "seconds_per_decision": seconds,
            }
        )
        print(cells[-1], flush=True)
    return cells


_REGISTER = (
    "import sys, joblib; from store import registry; "
    "tag = registry.save_bundle(joblib.load(sys.argv[1])); "
    "registry.set_production(tag, reason='bench'); print(registry.pointer_history()[-1]['at'])"
)


def monitor_timing(model: ModelBundle) -> float:
    """Wall seconds of `netprog monitor` on 5,000 patients (a subprocess, imports included).

    The model is registered and promoted in a fresh store; the simulated cohort's treatment
    dates are shifted to start the day after that promotion, so every patient is monitored.
    """
    import joblib

    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "BENTOML_HOME": home, "NETPROG_TRAINING_STORE": f"{home}/ts"}
        joblib.dump(model, Path(home) / "bundle.joblib")
        registered = subprocess.run(
            [sys.executable, "-c", _REGISTER, str(Path(home) / "bundle.joblib")],
            env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        promoted = pd.Timestamp(registered.stdout.strip()).tz_convert(None).normalize()
        cohort = simulate_cohort(5000, seed=7)
        dates = pd.to_datetime(cohort["treatment_date"])
        shifted = dates - dates.min() + promoted + pd.Timedelta(days=1)
        cohort["treatment_date"] = shifted.dt.date.astype(str)
        path = Path(home) / "outcomes.csv"
        cohort.to_csv(path, index=False)
        netprog = str(Path(sys.executable).with_name("netprog"))
        started = time.perf_counter()
        result = subprocess.run(
            [netprog, "monitor", "--data", str(path), "--out", f"{home}/out"],
            env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
    if result.returncode not in (0, 3):
        raise RuntimeError(f"netprog monitor failed: {result.stderr[-2000:]}")
    print(f"netprog monitor on 5,000: {elapsed:.1f} s, exit {result.returncode}", flush=True)
    return elapsed


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def markdown(monitor: list[dict], gate: list[dict], seconds: float, figures: dict) -> str:
    env = environment(["scikit-survival", "lifelines", "numpy"])
    lines = ["## Monitoring and the promotion gate", ""]
    lines += environment_lines(env, command_line()) + [""]
    lines += ["### `netprog monitor`: drift found and false alarms", ""]
    lines += markdown_table(
        ["production model", "stream", "replicates", "flagged", "median patients after change"],
        [
            [c["production"], c["stream"], c["replicates"], _percent(c["share_flagged"]),
             c["median_patients_after_change"] or "–"]
            for c in monitor
        ],
    )  # fmt: skip
    lines += ["", "### The promotion gate (300 held-out patients)", ""]
    lines += markdown_table(
        ["candidate", "replicates", "models in pool", "promoted", "median lower 95% bound of ΔC",
         "s per decision"],
        [
            [c["candidate"], c["replicates"], c["pool"], _percent(c["share_promoted"]),
             f"{c['median_lower_bound_delta_c']:+.3f}", f"{c['seconds_per_decision']:.1f}"]
            for c in gate
        ],
    )  # fmt: skip
    lines += [
        "",
        "Promotion needs, for both endpoints, the lower bound of the paired-bootstrap 95 % "
        "interval of ΔC (Harrell and Uno) above -0.01 and the calibration slope's 95 % "
        "interval overlapping 0.8-1.25. The monitor's stable-stream rows show false alarms; "
        "its drift rows the share of streams flagged within the 200 patients after the change.",
    ]
    lines += ["", f"`netprog monitor` on 5,000 patients: {seconds:.1f} s wall.", ""]
    lines += target_lines("monitoring", figures["targets"])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--gate-replicates", type=int, default=None)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    spec = CohortSpec.load()
    model = _fit(simulate_cohort(2000, seed=4000), seed=0)
    monitor = monitor_cells(args.replicates, model, spec)
    gate = gate_cells(args.gate_replicates or args.replicates, args.pool)
    seconds = monitor_timing(model)
    by = {(c["production"], c["stream"]): c["share_flagged"] for c in monitor}
    by_gate = {c["candidate"]: c["share_promoted"] for c in gate}
    figures = {
        "monitor": monitor,
        "gate": gate,
        "monitor_5000_s": seconds,
        "targets": {
            "monitoring_drift_found": by[("truth", "hazard × 1.5 after patient 400")],
            "monitoring_false_alarms": by[("truth", "stable")],
            "monitoring_gate_shuffled_refused": 1.0 - by_gate[SHUFFLED],
            "monitoring_gate_equal_promoted": by_gate[EQUAL_IN_TRUTH],
            "monitoring_gate_independent_promoted": by_gate[INDEPENDENT],
            "monitoring_5000_s": seconds,
        },
    }
    if not args.no_write:
        write_section("monitoring", markdown(monitor, gate, seconds, figures), figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
