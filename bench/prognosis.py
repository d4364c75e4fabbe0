"""Benchmark of in-process prognosis latency: one patient and a batch of 1,000.

Fits a bundle on the synthetic default cohort (2,000 patients, the default bootstrap size),
times ``Predictor.prognosis`` (median over >= 200 calls after warm-up) and
``Predictor.batch`` of 1,000 patients (median of >= 5), prints the figures and writes them to
the "Prognosis (in-process)" section of ``bench/RESULTS.md``, replacing an earlier one.

Run from the repository root::

    .venv/bin/python -m bench.prognosis [--single-calls 200] [--batch-repeats 5]

Targets: single prognosis <= 20 ms, batch of 1,000 <= 2 s (median wall time).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import statistics
import sys
import time
import warnings
from importlib.metadata import version

import numpy as np

from bench.common import write_section
from model.predictor import Predictor
from model.schema import BURDEN_CATEGORIES, GRADES, MODALITIES, PRIMARY_SITES, Patient
from training.fit import fit_bundle
from training.synthetic import simulate_cohort

SECTION = "## Prognosis (in-process)"
SINGLE_TARGET_MS = 20.0
BATCH_TARGET_S = 2.0
BATCH_SIZE = 1000


def _patients(n: int, seed: int) -> list[Patient]:
    """Varied valid patients: every grade, burden category, site and modality."""
    rng = np.random.default_rng(seed)
    burden_ranges = {"<25": (1, 24), "25-50": (26, 49), "50-75": (51, 74), ">75": (76, 95)}
    patients = []
    for i in range(n):
        low, high = burden_ranges[BURDEN_CATEGORIES[i % 4]]
        patients.append(
            Patient(
                age_years=int(rng.integers(30, 85)),
                who_grade=GRADES[i % 3],
                tumor_burden_percent=float(rng.uniform(low, high)),
                primary_site=PRIMARY_SITES[int(rng.integers(4))],
                prior_hepatic_treatment=bool(rng.random() < 0.25),
                extrahepatic_metastases=bool(rng.random() < 0.35),
                somatostatin_analog=bool(rng.random() < 0.6),
                biologic_therapy=bool(rng.random() < 0.15),
                cytotoxic_chemotherapy=bool(rng.random() < 0.25),
                planned_modality=MODALITIES[(i // 3) % 3],
            )
        )
    return patients


def _time(call, repeats: int, warm_up: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `call` over `repeats` runs after `warm_up` runs."""
    for _ in range(warm_up):
        call()
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def _measure(predictor: Predictor, patients, single_calls: int, batch_repeats: int) -> dict:
    single = patients[0]
    batch = patients[:BATCH_SIZE]
    single_wall, single_cpu = _time(lambda: predictor.prognosis(single), single_calls, 20)
    batch_wall, batch_cpu = _time(lambda: predictor.batch(batch), batch_repeats, 1)
    return {
        "single_ms": 1e3 * single_wall,
        "single_cpu_ms": 1e3 * single_cpu,
        "batch_s": batch_wall,
        "batch_cpu_s": batch_cpu,
    }


def _interventional_cost(bundle, patients, repeats: int) -> dict:
    """Cost of interventional TreeSHAP (shap.TreeExplainer) with the boosted model primary."""
    boosted = dataclasses.replace(bundle, primary={"hpfs": "xgboost", "os": "xgboost"})
    with warnings.catch_warnings():
        # shap's plotting module triggers matplotlib's pending deprecations on import.
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        predictor = Predictor(boosted, tree_shap="interventional")
    single_wall, _ = _time(lambda: predictor.prognosis(patients[0]), 50, 5)
    batch_wall, _ = _time(lambda: predictor.batch(patients[:100]), repeats, 1)
    return {"single_ms": 1e3 * single_wall, "batch_100_s": batch_wall}


def _environment() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs, {platform.platform()}",
        "load": f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}",
        "python": platform.python_version(),
        "versions": ", ".join(
            f"{name} {version(name)}"
            for name in ("numpy", "pandas", "scikit-survival", "xgboost", "shap")
        ),
    }


def _section(env: dict, bundle, results: dict, interventional: dict | None, args) -> str:
    meta = bundle.metadata
    lines = [
        SECTION,
        "",
        f"Measured {env['date']} by `bench.prognosis` (command: "
        f"`.venv/bin/python -m bench.prognosis --single-calls {args.single_calls} "
        f"--batch-repeats {args.batch_repeats}`).",
        "",
        f"- machine: {env['machine']}; load average at the end of the run {env['load']} "
        "(wall times on a shared machine include waiting for CPU; CPU times do not)",
        f"- Python {env['python']}; {env['versions']}",
        f"- bundle: synthetic cohort of {meta.get('n_patients')} patients (seed {args.seed}), "
        f"{meta.get('n_bootstrap')} bootstrap members per model and endpoint, "
        f"{len(bundle.shap_background)} SHAP background rows",
        "- one prognosis = both endpoints x 3 modalities, curves with pointwise 95 % intervals, "
        "medians, survival at 12/24/36/60 months, RMST and paired differences, SHAP "
        "explanation, check model and support; in-process, JSON-ready dicts, no serialisation",
        "",
        "| primary model | single prognosis, median wall (CPU) "
        "| batch of 1,000, median wall (CPU) |",
        "|---|---|---|",
    ]
    for name, figures in results.items():
        lines.append(
            f"| {name} | {figures['single_ms']:.1f} ms ({figures['single_cpu_ms']:.1f} ms) | "
            f"{figures['batch_s']:.2f} s ({figures['batch_cpu_s']:.2f} s) |"
        )
    lines += [
        "",
        f"Targets: single <= {SINGLE_TARGET_MS:g} ms, batch of 1,000 <= {BATCH_TARGET_S:g} s. "
        f"Single calls: median of {args.single_calls} after 20 warm-up calls; batches: median "
        f"of {args.batch_repeats} after one warm-up.",
    ]
    if interventional is not None:
        lines += [
            "",
            "SHAP for the boosted model: xgboost's path-dependent TreeSHAP (`pred_contribs`) is "
            "used. For comparison, interventional TreeSHAP with the background sample "
            f'(`tree_shap="interventional"`) took {interventional["single_ms"]:.1f} ms per '
            f"single prognosis and {interventional['batch_100_s']:.2f} s per batch of 100 "
            "(boosted primary), i.e. roughly "
            f"{10 * interventional['batch_100_s']:.0f} s for 1,000.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2000, help="training cohort size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=-1, help="joblib workers for fitting")
    parser.add_argument("--single-calls", type=int, default=200)
    parser.add_argument("--batch-repeats", type=int, default=5)
    parser.add_argument("--skip-interventional", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)
    if args.single_calls < 200 or args.batch_repeats < 5:
        parser.error("--single-calls must be >= 200 and --batch-repeats >= 5")

    start = time.perf_counter()
    bundle = fit_bundle(
        simulate_cohort(args.patients, args.seed), seed=args.seed, n_jobs=args.n_jobs
    )
    print(f"fitted the bundle in {time.perf_counter() - start:.1f} s")
    patients = _patients(BATCH_SIZE, args.seed)
    results = {}
    for primary in ("coxnet", "xgboost"):
        variant = dataclasses.replace(bundle, primary=dict.fromkeys(("hpfs", "os"), primary))
        results[primary] = figures = _measure(
            Predictor(variant), patients, args.single_calls, args.batch_repeats
        )
        print(
            f"{primary} primary: single {figures['single_ms']:.1f} ms "
            f"(CPU {figures['single_cpu_ms']:.1f} ms), batch of {BATCH_SIZE} "
            f"{figures['batch_s']:.2f} s (CPU {figures['batch_cpu_s']:.2f} s)"
        )
    interventional = None
    if not args.skip_interventional:
        interventional = _interventional_cost(bundle, patients, args.batch_repeats)
        print(
            f"interventional TreeSHAP: single {interventional['single_ms']:.1f} ms, "
            f"batch of 100 {interventional['batch_100_s']:.2f} s"
        )
    section = _section(_environment(), bundle, results, interventional, args)
    if not args.no_write:
        path = write_section("prognosis", section)
        print(f"wrote the '{SECTION[3:]}' section of {path}")
    met = all(
        f["single_ms"] <= SINGLE_TARGET_MS and f["batch_s"] <= BATCH_TARGET_S
        for f in results.values()
    )
    print("targets met" if met else "targets NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
