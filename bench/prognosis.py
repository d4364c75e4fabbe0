"""Benchmark of in-process prognosis latency: one patient and a batch of 1,000.

Fits a bundle on the synthetic default cohort (2,000 patients, the default bootstrap size),
times ``Predictor.prognosis`` (median over >= 200 calls after warm-up) without and with
``contributions_over_time`` and ``Predictor.batch`` of 1,000 patients (median of >= 5), with
the procedure harms the service adds, prints the figures and writes them to
the "prognosis" section of ``bench/RESULTS.md`` and to ``bench/prognosis.json``.

Run from the repository root::

    .venv/bin/python -m bench.prognosis [--single-calls 200] [--batch-repeats 5]

Targets: ``bench.common.TARGETS`` (``prognosis_*``, judged on the coxnet primary).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import warnings

import numpy as np

from bench.common import (
    SECTION_TITLES,
    command_line,
    environment,
    environment_lines,
    markdown_table,
    target_lines,
    write_section,
)
from model.predictor import Predictor
from model.schema import (
    BOOLEAN_FIELDS,
    BURDEN_CATEGORIES,
    GRADES,
    MODALITIES,
    PRIMARY_SITES,
    Patient,
)
from serving.harms import load_procedure_harms
from training.fit import fit_bundle
from training.synthetic import CohortSpec, burden_draw_ranges, simulate_cohort

SECTION = "prognosis"
BATCH_SIZE = 1000
TARGET_PRIMARY = "coxnet"
"""The primary model the targets are judged on (the default); the boosted one is reported."""
PACKAGES = ("numpy", "pandas", "scikit-survival", "xgboost", "shap")


def _patients(n: int, seed: int) -> list[Patient]:
    """Varied valid patients: every grade, burden category, site and modality.

    Each boolean field is true with its prevalence in the patient's grade in the synthetic
    cohort's specification (`covariates.<field>.by_grade`).
    """
    rng = np.random.default_rng(seed)
    burden_ranges = burden_draw_ranges()
    prevalence = CohortSpec.load().covariates
    patients = []
    for i in range(n):
        low, high = burden_ranges[BURDEN_CATEGORIES[i % len(BURDEN_CATEGORIES)]]
        grade = GRADES[i % len(GRADES)]
        fields = {
            "age_years": int(rng.integers(30, 85)),
            "who_grade": grade,
            "tumor_burden_percent": float(rng.uniform(low, high)),
            "primary_site": PRIMARY_SITES[int(rng.integers(len(PRIMARY_SITES)))],
            "planned_modality": MODALITIES[(i // len(GRADES)) % len(MODALITIES)],
        }
        for name in BOOLEAN_FIELDS:
            fields[name] = bool(rng.random() < prevalence[name]["by_grade"][grade])
        patients.append(Patient(**fields))
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
    explained_wall, explained_cpu = _time(
        lambda: predictor.prognosis(single, contributions_over_time=True), single_calls, 20
    )
    batch_wall, batch_cpu = _time(lambda: predictor.batch(batch), batch_repeats, 1)
    return {
        "single_ms": 1e3 * single_wall,
        "single_cpu_ms": 1e3 * single_cpu,
        "contributions_ms": 1e3 * explained_wall,
        "contributions_cpu_ms": 1e3 * explained_cpu,
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


def target_values(results: dict) -> dict[str, float]:
    """The figures the prognosis targets judge: the coxnet primary's medians."""
    figures = results[TARGET_PRIMARY]
    return {
        "prognosis_single_ms": figures["single_ms"],
        "prognosis_contributions_ms": figures["contributions_ms"],
        "prognosis_batch_s": figures["batch_s"],
    }


def _section(env: dict, bundle, results: dict, interventional: dict | None, args) -> str:
    meta = bundle.metadata
    lines = [
        f"## {SECTION_TITLES[SECTION]}",
        "",
        *environment_lines(env, command_line()),
        "- wall times on a shared machine include waiting for CPU; CPU times do not",
        f"- bundle: synthetic cohort of {meta.get('n_patients')} patients (seed {args.seed}), "
        f"{meta.get('n_bootstrap')} bootstrap members per model and endpoint, "
        f"{len(bundle.shap_background)} SHAP background rows",
        "- one prognosis = both endpoints x 3 modalities, curves with pointwise 95 % intervals, "
        "medians, survival at 12/24/36/60 months, RMST and paired differences, SHAP "
        "explanation, check model and support, out of 100, plain words, harms and similar "
        "patients; in-process, JSON-ready dicts, no serialisation",
        "- with contributions_over_time: also each field's exact Shapley contribution to HPFS, "
        "OS and the cumulative incidence at 12/24/36 months (1,024 coalition curves each)",
        f"- single calls: median of {args.single_calls} after 20 warm-up calls; batches: median "
        f"of {args.batch_repeats} after one warm-up",
        "",
        *markdown_table(
            [
                "primary model",
                "single prognosis, median wall (CPU)",
                "single with contributions_over_time, median wall (CPU)",
                f"batch of {BATCH_SIZE:,}, median wall (CPU)",
            ],
            [
                [
                    name,
                    f"{f['single_ms']:.1f} ms ({f['single_cpu_ms']:.1f} ms)",
                    f"{f['contributions_ms']:.1f} ms ({f['contributions_cpu_ms']:.1f} ms)",
                    f"{f['batch_s']:.2f} s ({f['batch_cpu_s']:.2f} s)",
                ]
                for name, f in results.items()
            ],
        ),
        "",
        *target_lines(SECTION, target_values(results)),
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
            Predictor(variant, procedure_harms=load_procedure_harms()),
            patients,
            args.single_calls,
            args.batch_repeats,
        )
        print(
            f"{primary} primary: single {figures['single_ms']:.1f} ms "
            f"(CPU {figures['single_cpu_ms']:.1f} ms), with contributions "
            f"{figures['contributions_ms']:.1f} ms, batch of {BATCH_SIZE} "
            f"{figures['batch_s']:.2f} s (CPU {figures['batch_cpu_s']:.2f} s)"
        )
    interventional = None
    if not args.skip_interventional:
        interventional = _interventional_cost(bundle, patients, args.batch_repeats)
        print(
            f"interventional TreeSHAP: single {interventional['single_ms']:.1f} ms, "
            f"batch of 100 {interventional['batch_100_s']:.2f} s"
        )
    env = environment(PACKAGES)
    section = _section(env, bundle, results, interventional, args)
    print("\n".join(target_lines(SECTION, target_values(results))[2:]))
    if not args.no_write:
        figures = {
            "environment": env,
            "settings": vars(args),
            "bundle": {
                "n_patients": bundle.metadata.get("n_patients"),
                "n_bootstrap": bundle.metadata.get("n_bootstrap"),
                "shap_background_rows": len(bundle.shap_background),
            },
            "by_primary": results,
            "interventional_tree_shap": interventional,
            "targets": target_values(results),
        }
        path = write_section(SECTION, section, figures)
        print(f"wrote the '{SECTION}' section of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
