"""GPU benchmark: BoostedCox's default fit at 1,000,000 patients on the GPU and the CPU, same run.

For a lent GPU machine (the `device` tool). Simulates one synthetic OS cohort
(``training.synthetic.simulate_cohort``, seed 0) and fits ``BoostedCox`` with its defaults
(early stopping on a 20 % split, then a refit on all rows) on it with ``device="cuda"`` and
with ``device="cpu"`` (one thread, as in the pipeline, and all cores), timing each fit alone;
it also checks that both devices rank patients alike (Harrell C of each on the same rows).
Writes the "gpu" section of ``bench/RESULTS.md`` and ``bench/gpu.json``; without a usable
CUDA GPU it says so and writes nothing (exit 0), so ``bench.run`` can include it everywhere;
with ``--record-absence`` it writes a section saying that nothing was measured, and why.

Run from the repository root::

    .venv/bin/python -m bench.gpu [--patients 1000000] [--skip-cpu-one-thread] [--record-absence]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench.common import (
    SECTION_TITLES,
    command_line,
    environment,
    environment_lines,
    markdown_table,
    target_lines,
    write_section,
)

SECTION = "gpu"
PATIENTS = 1_000_000
PACKAGES = ("numpy", "xgboost", "scikit-survival")


def _fit(design, target, device: str, n_jobs: int | None) -> dict:
    from sksurv.metrics import concordance_index_censored

    from model.estimators import BoostedCox

    estimator = BoostedCox(random_state=0, device=device, n_jobs=n_jobs)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    estimator.fit(design, target)
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    risk = estimator.predict(design[:50_000])
    c = concordance_index_censored(target["event"][:50_000], target["time"][:50_000], risk)[0]
    return {
        "device": device,
        "threads": n_jobs or 1,
        "wall_s": wall,
        "cpu_s": cpu,
        "rounds": estimator.n_estimators_,
        "harrell_c_first_50k": float(c),
    }


def target_values(rows: list[dict]) -> dict[str, float]:
    """The figure the GPU target judges: all-core CPU wall time over the GPU's."""
    gpu = next(r for r in rows if r["device"] == "cuda")
    all_cores = max((r for r in rows if r["device"] == "cpu"), key=lambda r: r["threads"])
    return {"gpu_speedup_1m": all_cores["wall_s"] / gpu["wall_s"]}


def _report(rows: list[dict], args, env: dict) -> str:
    lines = [f"## {SECTION_TITLES[SECTION]}", "", *environment_lines(env, command_line())]
    lines += [
        f"- BoostedCox default fit (early stopping on 20 %, refit on all rows) on "
        f"{args.patients:,} synthetic OS patients (seed 0), `model.schema.encode` design; "
        "wall and CPU seconds of `fit` alone; Harrell C of the fitted model on the first "
        "50,000 training rows (a consistency check between devices, not a quality figure)",
        "",
    ]
    cpu_rows = [r for r in rows if r["device"] == "cpu"]
    gpu = next(r for r in rows if r["device"] == "cuda")
    lines += markdown_table(
        ["device", "threads", "wall s", "CPU s", "rounds", "C (check)", "GPU speed-up"],
        [
            [
                r["device"],
                r["threads"],
                f"{r['wall_s']:.1f}",
                f"{r['cpu_s']:.1f}",
                r["rounds"],
                f"{r['harrell_c_first_50k']:.3f}",
                "" if r is gpu else f"{r['wall_s'] / gpu['wall_s']:.1f}x",
            ]
            for r in [gpu, *cpu_rows]
        ],
    )
    lines += ["", *target_lines(SECTION, target_values(rows))]
    return "\n".join(lines) + "\n"


def absence_report(problem: str, env: dict) -> str:
    """The section of a run that found no usable GPU: nothing measured, and how to measure."""
    return (
        "\n".join(
            [
                f"## {SECTION_TITLES[SECTION]}",
                "",
                *environment_lines(env, command_line()),
                "",
                f"Not measured: {problem}. The script is ready for a machine with a CUDA GPU "
                "(`.venv/bin/python -m bench.gpu`): it fits BoostedCox's default at "
                f"{PATIENTS:,} patients on the GPU and on the CPU in the same run and writes this "
                "section.",
                "",
                *target_lines(SECTION, {"gpu_speedup_1m": None}),
            ]
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=PATIENTS)
    parser.add_argument("--skip-cpu-one-thread", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--record-absence",
        action="store_true",
        help="without a usable GPU, write a section saying so (by default a machine without "
        "one leaves the section, perhaps measured elsewhere, as it is)",
    )
    args = parser.parse_args(argv)

    from training.devices import cuda_problem

    problem = cuda_problem()
    if problem is not None:
        print(f"bench.gpu: nothing measured: {problem}", flush=True)
        if args.record_absence and not args.no_write:
            env = environment(PACKAGES)
            figures = {"environment": env, "problem": problem, "targets": {"gpu_speedup_1m": None}}
            write_section(SECTION, absence_report(problem, env), figures)
        return 0
    from model.schema import encode
    from training.fit import survival_target
    from training.synthetic import simulate_cohort

    cohort = simulate_cohort(args.patients, 0)
    design, target = encode(cohort).to_numpy(dtype=float), survival_target(cohort, "os")
    del cohort
    rows = [_fit(design, target, "cuda", None)]
    rows.append(_fit(design, target, "cpu", os.cpu_count()))
    if not args.skip_cpu_one_thread:
        rows.append(_fit(design, target, "cpu", None))
    env = environment(PACKAGES)
    report = _report(rows, args, env)
    sys.stdout.write(report)
    if not args.no_write:
        figures = {
            "environment": env,
            "settings": vars(args),
            "fits": rows,
            "targets": target_values(rows),
        }
        write_section(SECTION, report, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
