"""Benchmark: the promotion gate on a small centre's own patients (optimism-corrected route).

Writes the "gate" section of bench/RESULTS.md. Run from the repository root::

    nice -n 10 .venv/bin/python -m bench.gate [--replicates 40] [--no-write]

Production is the reference model of bench/updating.py (fitted like the built-in default on
2,000 simulated patients). Each replicate simulates a centre's 150 patients
(:mod:`training.synthetic_centre`), updates production to them as `netprog update` does (no
patient held out) and runs the gate's checks as `netprog promote` does for such a candidate: on
those same patients, the update repeated on `OPTIMISM_BOOTSTRAP` bootstrap resamples and ΔC
(Harrell, Uno) and the calibration slope optimism-corrected with location-shifted intervals
(:mod:`training.gate_optimism`), and on 400 held-out patients of production's population (the
held-out route); promoted means both passed. Cells: a centre equal to the reference (the update
should change nothing that matters: promoted), one whose hazards are 1.5 times the reference's
(the update re-estimates the baseline: promoted), and the equal centre with its outcome columns
permuted against the patients (nothing to learn: refused).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from bench.common import (
    command_line,
    environment,
    environment_lines,
    markdown_table,
    target_lines,
    write_section,
)
from bench.monitoring import shuffled_outcomes
from bench.updating import reference_bundle
from model.bundle import ModelBundle
from training.gate import compare_on_rows
from training.gate_optimism import OPTIMISM_BOOTSTRAP
from training.synthetic import simulate_cohort
from training.synthetic_centre import centre_spec, simulate_centre
from training.update_run import update_bundle
from training.validate import validate_cohort

N_LOCAL = 150
N_PRODUCTION_HELD_OUT = 400
"""Production's held-out patients: the 20 % `netprog train` keeps of its 2,000."""
EQUAL, BASELINE, SHUFFLED = (
    "centre equal to the reference",
    "centre with hazards × 1.5",
    "centre equal to the reference, outcomes shuffled against the patients",
)
CELLS = {EQUAL: {}, BASELINE: {"hazard_multiplier": 1.5}, SHUFFLED: {}}


def _update(production: ModelBundle, rows: pd.DataFrame, seed: int) -> ModelBundle:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "all coefficients are zero", UserWarning)
        return update_bundle(production, rows, seed=seed, cohort_label="synthetic")[0]


def replicate(
    production: ModelBundle, held_out: pd.DataFrame, cell: str, seed: int, resamples: int
) -> dict:
    """One centre: update production to its patients, then the gate on those patients and on
    production's held-out patients, as `netprog promote` runs it."""
    local = simulate_centre(N_LOCAL, 30_000 + seed, centre_spec(**CELLS[cell]))
    local = validate_cohort(shuffled_outcomes(local, seed) if cell == SHUFFLED else local)
    started = time.perf_counter()
    try:
        candidate = _update(production, local, seed)
    except (ValueError, ArithmeticError) as error:
        # `netprog update` itself would refuse this centre: no candidate reaches the gate.
        return {"cell": cell, "seed": seed, "promoted": None, "update_error": str(error)}
    decision = compare_on_rows(
        candidate, production, local, seed=seed, n_resamples=resamples,
        refit=lambda rows, s: _update(production, rows, s),
    )  # fmt: skip
    guard = compare_on_rows(candidate, production, held_out, seed=seed)
    lowers = [c["lower"] for c in decision["checks"] if c["check"] in ("harrell_c", "uno_c")]
    optimism = [c["optimism"] for c in decision["checks"] if c["check"] in ("harrell_c",)]
    return {
        "cell": cell,
        "seed": seed,
        "promoted": bool(decision["passed"] and guard["passed"]),
        "passed_own": bool(decision["passed"]),
        "passed_production_held_out": bool(guard["passed"]),
        "lowest_lower_bound_delta_c": min((v for v in lowers if v is not None), default=None),
        "mean_optimism_harrell_c": float(np.mean([v for v in optimism if v is not None]))
        if any(v is not None for v in optimism)
        else None,
        "seconds": time.perf_counter() - started,
    }


def summarise(frame: pd.DataFrame) -> list[dict]:
    rows = []
    for cell in CELLS:
        part = frame[(frame["cell"] == cell) & frame["promoted"].notna()]
        rows.append(
            {
                "cell": cell,
                "replicates": len(part),
                "updates_refused": int(((frame["cell"] == cell) & frame["promoted"].isna()).sum()),
                "share_promoted": float(part["promoted"].astype(bool).mean()),
                "share_passed_own": float(part["passed_own"].astype(bool).mean()),
                "share_passed_production_held_out": float(
                    part["passed_production_held_out"].astype(bool).mean()
                ),
                "median_lowest_lower_bound_delta_c": float(
                    part["lowest_lower_bound_delta_c"].median()
                ),
                "median_optimism_harrell_c": float(part["mean_optimism_harrell_c"].median()),
                "median_seconds": float(part["seconds"].median()),
            }
        )
    return rows


def markdown(cells: list[dict], resamples: int, wall: float, figures: dict) -> str:
    env = environment(["scikit-survival", "numpy"])
    lines = ["## The promotion gate on a centre's own patients", ""]
    lines += environment_lines(env, command_line()) + [""]
    lines += [
        f"Production: the reference model (2,000 simulated patients). Each replicate updates it "
        f"to a simulated centre's {N_LOCAL} patients, none held out, and runs the gate on those "
        f"patients with {resamples} bootstrap refits of the update (optimism-corrected ΔC and "
        "calibration slope, location-shifted 95 % intervals; `training.gate_optimism`; an "
        "update that keeps production's ranking has ΔC 0 there), and on "
        f"{N_PRODUCTION_HELD_OUT} held-out patients of production's own population (paired "
        "bootstrap, the held-out route), as `netprog promote` does; promoted = passed both.",
        "",
    ]
    lines += markdown_table(
        ["centre", "replicates", "update refused", "passed on own patients",
         "passed on production's held-out", "promoted",
         "median lowest lower 95% bound of ΔC (own)", "median optimism of Harrell C (own)",
         "median s per decision"],
        [
            [c["cell"], c["replicates"], c["updates_refused"], f"{c['share_passed_own']:.0%}",
             f"{c['share_passed_production_held_out']:.0%}", f"{c['share_promoted']:.0%}",
             f"{c['median_lowest_lower_bound_delta_c']:+.3f}",
             f"{c['median_optimism_harrell_c']:+.4f}", f"{c['median_seconds']:.1f}"]
            for c in cells
        ],
    )  # fmt: skip
    lines += [
        "",
        "Promotion needs, for both endpoints, the lower bound of the optimism-corrected 95 % "
        "interval of ΔC (Harrell and Uno) above -0.01 and the calibration slope's interval "
        "overlapping 0.8-1.25 (the held-out route's limits). Decisions ran two at a time on "
        f"the bench machine's two cores; {wall / 60:.1f} min in all.",
        "",
    ]
    lines += target_lines("gate", figures)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=40)
    parser.add_argument("--resamples", type=int, default=OPTIMISM_BOOTSTRAP)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    production = reference_bundle()
    held_out = validate_cohort(simulate_cohort(N_PRODUCTION_HELD_OUT, seed=50_000))
    records = Parallel(n_jobs=args.jobs, verbose=5)(
        delayed(replicate)(production, held_out, cell, seed, args.resamples)
        for seed in range(args.replicates)
        for cell in CELLS
    )
    frame = pd.DataFrame(records)
    cells = summarise(frame)
    by = {c["cell"]: c["share_promoted"] for c in cells}
    figures = {
        "gate_own_shuffled_refused": 1.0 - by[SHUFFLED],
        "gate_own_equal_promoted": by[EQUAL],
        "gate_own_baseline_promoted": by[BASELINE],
    }
    text = markdown(cells, args.resamples, time.perf_counter() - began, figures)
    print(text)
    if not args.no_write:
        write_section(
            "gate",
            text,
            {"targets": figures, "cells": cells, "resamples": args.resamples,
             "replicates": args.replicates},
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
