"""Training-cost benchmark: fit time and peak memory of each estimator and of the pipeline.

Every measurement runs in a fresh Python subprocess, so that memory high-water marks and
warm caches do not carry over. The subprocess simulates an OS cohort of the requested size
(``training.synthetic.simulate_cohort``, seed 0), then fits one of:

- ``PenalizedCox`` or ``BoostedCox`` with their defaults (one thread, as inside the
  pipeline) on ``model.schema.encode`` of the cohort, OS endpoint, at 1,000, 10,000 and
  100,000 patients (median of 3 fits up to 10,000); ``BoostedCox`` also at 1,000,000, its
  default fit (early stopping on a 20 % split, then a refit on all rows) measured, which
  takes some ten minutes here; ``--boosted-1m-fixed`` fits 100 fixed rounds instead
  (``early_stopping_rounds=None``) and extrapolates the default fit from them
  (:func:`extrapolate_boosted`). ``bench/gpu.py`` measures the same fit on a GPU.
- the whole training pipeline, ``training.pipeline.train`` with the ``netprog train`` defaults
  (5-fold cross-validation of both families and the references, 20 bootstrap members per
  family and endpoint, 2 joblib workers, report and registration) in a temporary
  ``BENTOML_HOME`` with ``BENTOML_DO_NOT_TRACK=true``, at 1,000, 10,000 and 100,000
  patients. When the 100,000-patient run is left out (``--pipeline-sizes 1000 10000``), its
  time is extrapolated, stage by stage, from the 10,000-patient run (see
  :func:`extrapolate_pipeline`) and labelled so.

Time is the wall time of the fit alone (simulation excluded). Memory is reported twice: the
main process's peak resident set (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, exact, but
blind to joblib's worker processes) and the peak summed resident set of the process and all
its descendants, sampled by the parent with psutil every 0.1 s (it counts shared pages once
per process and can miss spikes shorter than the sampling interval). ``--device cuda``
variants of ``BoostedCox`` run only when ``nvidia-smi`` lists a GPU.

Target: ``bench.common.TARGETS["training_100k_min"]``, judged on a measured run only (an
extrapolation is reported beside it, not judged).

Run from the repository root::

    .venv/bin/python -m bench.training [--pipeline-sizes 1000 10000] [--boosted-1m-fixed]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from bench.common import (
    SECTION_TITLES,
    TARGETS,
    _commit,
    command_line,
    environment,
    environment_lines,
    figures_path,
    gpu_present,
    markdown_table,
    target_lines,
    write_section,
)

SECTION = "training"
ESTIMATOR_SIZES = (1_000, 10_000, 100_000)
BOOSTED_ONLY_SIZE = 1_000_000
PIPELINE_SIZES = (1_000, 10_000, 100_000)
PIPELINE_TARGET_SIZE = 100_000
PIPELINE_TARGET = TARGETS["training_100k_min"]
FIXED_ROUNDS = 100
SAMPLE_SECONDS = 0.1
RESULT_PREFIX = "BENCH-RESULT "
LINEAR_STAGES = ("validating", "setting the held-out patients aside", "analysing the cohort")
LINEAR_STAGES += ("writing the report and registering",)
TIMING_REPEATS = 3
REPEATED_UP_TO = 10_000
PACKAGES = ("numpy", "pandas", "scikit-learn", "scikit-survival", "xgboost", "bentoml", "psutil")
REPO_ROOT = Path(__file__).resolve().parents[1]


def _maxrss_mib() -> float:
    import resource

    # Linux reports ru_maxrss in KiB (macOS in bytes, where this bench is not run).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fit_estimator(spec: dict) -> dict:
    import statistics

    from model.estimators import BoostedCox, PenalizedCox
    from model.schema import encode
    from training.fit import survival_target
    from training.synthetic import simulate_cohort

    seed, rounds = spec["seed"], spec.get("rounds")
    cohort = simulate_cohort(spec["patients"], seed)
    design, target = encode(cohort), survival_target(cohort, "os")
    del cohort
    if spec["kind"] == "PenalizedCox":
        estimator = PenalizedCox(random_state=seed)
    elif rounds is None:
        estimator = BoostedCox(random_state=seed, device=spec["device"])
    else:
        estimator = BoostedCox(
            random_state=seed,
            device=spec["device"],
            n_estimators=rounds,
            early_stopping_rounds=None,
        )
    setup_mib = _maxrss_mib()
    wall, cpu = [], []
    for _ in range(spec.get("repeats", 1)):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        estimator.fit(design, target)
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    extra = {}
    if spec["kind"] == "BoostedCox":
        extra = {"rounds": estimator.n_estimators_, "best_iteration": estimator.best_iteration_}
    return {
        "seconds": statistics.median(wall),
        "cpu_seconds": statistics.median(cpu),
        "setup_mib": setup_mib,
        **extra,
    }


def _fit_pipeline(patients: int, seed: int) -> dict:
    from training.pipeline import train
    from training.synthetic import simulate_cohort

    cohort = simulate_cohort(patients, seed)
    setup_mib = _maxrss_mib()
    cpu_before = _tree_cpu_seconds()
    start = time.perf_counter()
    marks: list[tuple[str, float]] = [("validating", start)]
    train(
        cohort,
        seed=seed,
        n_bootstrap=20,
        n_splits=5,
        n_jobs=2,
        cohort_label="synthetic",
        progress=lambda step: marks.append((step, time.perf_counter())),
    )
    end = time.perf_counter()
    stages = {}
    for (name, began), (_, ended) in zip(marks, [*marks[1:], ("end", end)], strict=True):
        stages[name] = ended - began
    return {
        "seconds": end - start,
        "cpu_seconds": _tree_cpu_seconds() - cpu_before,
        "setup_mib": setup_mib,
        "stages": stages,
    }


def _tree_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its live descendants (joblib's workers
    stay alive between calls, so their time is counted here)."""
    total = 0.0
    process = psutil.Process()
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def child_main(spec: dict) -> None:
    """Run one measurement described by `spec` and print its result as one JSON line."""
    if spec["kind"] == "pipeline":
        result = _fit_pipeline(spec["patients"], spec["seed"])
    else:
        result = _fit_estimator(spec)
    result["peak_main_mib"] = _maxrss_mib()
    print(RESULT_PREFIX + json.dumps(result), flush=True)


class _TreeSampler(threading.Thread):
    """Peak summed RSS of a process and its descendants, sampled every SAMPLE_SECONDS."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak_bytes = 0
        self.done = threading.Event()

    def _rss(self) -> int:
        total = 0
        try:
            members = [self.process, *self.process.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        for member in members:
            try:
                total += member.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def run(self) -> None:
        while not self.done.wait(SAMPLE_SECONDS):
            self.peak_bytes = max(self.peak_bytes, self._rss())


def measure(spec: dict, timeout: float) -> dict:
    """Run `spec` in a fresh subprocess; its result with the sampled peak tree RSS added."""
    with tempfile.TemporaryDirectory(prefix="netprog-bench-") as home:
        env = {
            **os.environ,
            "BENTOML_HOME": home,
            "BENTOML_DO_NOT_TRACK": "true",
            "PYTHONPATH": str(REPO_ROOT),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.training", "--child", json.dumps(spec)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        sampler = _TreeSampler(process.pid)
        sampler.start()
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.communicate()
            return {**spec, "error": f"timed out after {timeout:.0f} s"}
        finally:
            sampler.done.set()
            sampler.join()
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if process.returncode != 0 or not lines:
        return {**spec, "error": (stderr.strip().splitlines() or ["no output"])[-1]}
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    stamp = {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": _commit()}
    return {**spec, **result, "peak_tree_mib": sampler.peak_bytes / 2**20, "load": load, **stamp}


def _key(result: dict) -> tuple:
    return tuple(result.get(k) for k in ("kind", "patients", "device", "rounds"))


def earlier_measurements(paths: list[str]) -> list[dict]:
    """The measurements of earlier runs' figures files (`paths`, default bench/training.json),
    read before this run writes its own; the first file's row wins where two repeat one."""
    rows: list[dict] = []
    for path in [Path(p) for p in paths] or [figures_path(SECTION)]:
        if path.exists():
            figures = json.loads(path.read_text(encoding="utf-8")).get("figures", {})
            rows = with_earlier(rows, figures.get("measurements", []))
    return [{k: v for k, v in row.items() if k != "earlier"} for row in rows]


def with_earlier(results: list[dict], earlier: list[dict]) -> list[dict]:
    """`results` and, after them, the `earlier` measurements this run did not repeat.

    An earlier row keeps its own date, commit and load, and is marked ``earlier`` so that the
    table says which run measured it (for measurements too long to repeat in every run).
    """
    done = {_key(r) for r in results}
    kept = [
        {**r, "earlier": True}
        for r in earlier
        if _key(r) not in done and "error" not in r and "measured" in r
    ]
    return [*results, *kept]


def plan(args: argparse.Namespace, gpu: bool) -> list[dict]:
    """The measurements to run, cheapest first."""
    devices = ("cpu", "cuda") if gpu else ("cpu",)
    specs = []
    for patients in args.estimator_sizes:
        repeats = TIMING_REPEATS if patients <= REPEATED_UP_TO else 1
        specs.append(
            {"kind": "PenalizedCox", "patients": patients, "device": "cpu", "repeats": repeats}
        )
        specs += [
            {"kind": "BoostedCox", "patients": patients, "device": d, "repeats": repeats}
            for d in devices
        ]
    rounds = FIXED_ROUNDS if args.boosted_1m_fixed else None
    if not args.no_boosted_1m:
        specs += [
            {"kind": "BoostedCox", "patients": BOOSTED_ONLY_SIZE, "device": d, "rounds": rounds}
            for d in devices
        ]
    specs += [{"kind": "pipeline", "patients": n, "device": "cpu"} for n in args.pipeline_sizes]
    return [{**spec, "seed": args.seed} for spec in specs]


def _find(results, **keys) -> dict | None:
    for result in results:
        if all(result.get(k) == v for k, v in keys.items()) and "error" not in result:
            return result
    return None


def extrapolate_boosted(results: list[dict]) -> dict | None:
    """Default BoostedCox fit at 1,000,000 rows from its fixed-round fit: an extrapolation.

    Assumes the cost per round at 1,000,000 rows measured with the fixed rounds, and as many
    early-stopping rounds as the default fit used at 100,000 rows: ``best + early_stopping``
    rounds on 80 % of the rows, then ``best + 1`` rounds on all of them.
    """
    fixed = _find(results, kind="BoostedCox", patients=BOOSTED_ONLY_SIZE, device="cpu")
    reference = _find(results, kind="BoostedCox", patients=ESTIMATOR_SIZES[-1], device="cpu")
    if fixed is None or reference is None or fixed.get("rounds") != FIXED_ROUNDS:
        return None
    best = reference["best_iteration"]
    rounds_equivalent = 0.8 * (best + 1 + 50) + (best + 1)
    return {
        "seconds": fixed["seconds"] / FIXED_ROUNDS * rounds_equivalent,
        "rounds_equivalent": rounds_equivalent,
        "best_iteration": best,
    }


def extrapolate_pipeline(results: list[dict]) -> dict | None:
    """Whole training at 100,000 patients from the 10,000-patient run: an extrapolation.

    Every stage the pipeline reports but validation, cohort analysis and report writing fits
    models (cross-validation, validation by centre, ensembles, held-out evaluation), so it is
    scaled by the measured growth of the two families' fit times from 10,000 to 100,000
    patients (their mean ratio); the other stages are scaled linearly in the number of
    patients. Both are assumptions, stated beside the figure.
    """
    small = _find(results, kind="pipeline", patients=ESTIMATOR_SIZES[1])
    if small is None:
        return None
    ratios = []
    for kind in ("PenalizedCox", "BoostedCox"):
        low = _find(results, kind=kind, patients=ESTIMATOR_SIZES[1], device="cpu")
        high = _find(results, kind=kind, patients=ESTIMATOR_SIZES[2], device="cpu")
        if low is None or high is None:
            return None
        ratios.append(high["seconds"] / low["seconds"])
    fit_ratio = sum(ratios) / len(ratios)
    linear = PIPELINE_TARGET_SIZE / ESTIMATOR_SIZES[1]
    stages = {
        name: seconds * (linear if name in LINEAR_STAGES else fit_ratio)
        for name, seconds in small["stages"].items()
    }
    return {"seconds": sum(stages.values()), "stages": stages, "fit_ratio": fit_ratio}


def _mib(value) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _row(result: dict) -> list[str]:
    name = result["kind"] + (f" ({result['device']})" if result["device"] != "cpu" else "")
    if result.get("earlier"):
        name += f" [earlier run: {result['measured']}, `{result['commit']}`]"
    if result.get("kind") == "BoostedCox" and result.get("rounds") is not None:
        if result["patients"] == BOOSTED_ONLY_SIZE and result.get("best_iteration") is None:
            name += f", {result['rounds']} fixed rounds"
        else:
            name += f", {result['rounds']} rounds"
    if "error" in result:
        return [name, f"{result['patients']:,}", result["error"], "", "", "", "", ""]
    cpu = result.get("cpu_seconds")
    return [
        name,
        f"{result['patients']:,}",
        f"{result['seconds']:.1f}"
        + (f" (x{result['repeats']})" if result.get("repeats", 1) > 1 else ""),
        "–" if cpu is None else f"{cpu:.1f}",
        f"{result['load']:.1f}",
        _mib(result.get("setup_mib")),
        _mib(result.get("peak_main_mib")),
        _mib(result.get("peak_tree_mib")),
    ]


def pipeline_verdict(results: list[dict]) -> tuple[str, float | None, bool]:
    """(description, seconds, measured) of the whole training at 100,000 patients."""
    measured = _find(results, kind="pipeline", patients=PIPELINE_TARGET_SIZE)
    if measured is not None:
        return "measured", measured["seconds"], True
    estimate = extrapolate_pipeline(results)
    if estimate is None:
        return "not measured and not extrapolable", None, False
    return "EXTRAPOLATED", estimate["seconds"], False


def _target_text(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes = seconds / 60
    if PIPELINE_TARGET.met(minutes):
        return f"met ({minutes:.1f} min, bar {PIPELINE_TARGET.text})"
    return f"MISSED ({minutes:.1f} min, bar {PIPELINE_TARGET.text})"


def target_values(results: list[dict]) -> dict[str, float | None]:
    """The figure the training target judges: a measured run at 100,000 patients only."""
    _, seconds, measured = pipeline_verdict(results)
    return {"training_100k_min": seconds / 60 if measured and seconds is not None else None}


def _stage_lines(results: list[dict]) -> list[str]:
    runs = [
        (f"{r['patients']:,} (measured)", r["stages"])
        for r in results
        if r["kind"] == "pipeline" and "stages" in r
    ]
    estimate = extrapolate_pipeline(results)
    if (
        estimate is not None
        and _find(results, kind="pipeline", patients=PIPELINE_TARGET_SIZE) is None
    ):
        runs.append((f"{PIPELINE_TARGET_SIZE:,} (EXTRAPOLATED)", estimate["stages"]))
    if not runs:
        return []
    names = list(dict.fromkeys(name for _, stages in runs for name in stages))
    rows = [
        [label] + ["–" if n not in stages else f"{stages[n]:.1f}" for n in names]
        for label, stages in runs
    ]
    return ["", "Pipeline stages, wall seconds:", "", *markdown_table(["patients", *names], rows)]


def section_markdown(results: list[dict], args, env: dict, gpu: bool, elapsed: float) -> str:
    """The RESULTS.md "training" section."""
    description, seconds, _ = pipeline_verdict(results)
    lines = [
        f"## {SECTION_TITLES[SECTION]}",
        "",
        *environment_lines(env, command_line()),
        f"- synthetic OS cohorts (seed {args.seed}); each row is a fresh subprocess; time: "
        "seconds of the fit alone, wall and CPU of the main process (for the pipeline: of the "
        "process and its joblib workers, which a loaded machine slows much less than wall "
        "time; half of it is what 2 idle cores would need at best) (median of "
        f"{TIMING_REPEATS} fits where marked x{TIMING_REPEATS}); load: 1-minute load average "
        "when the row started (other work on this shared machine slows wall time, not CPU "
        "time); memory in MiB: after simulating the data (main process), peak of the main "
        "process (getrusage maxrss), and peak summed RSS of the process tree (psutil, every "
        f"{SAMPLE_SECONDS:g} s; includes joblib workers); estimators run with their defaults "
        "(one thread, as inside the pipeline); the pipeline is `training.pipeline.train` with "
        "the `netprog train` defaults (5 folds, 20 bootstrap members, 2 workers) in a "
        f"temporary BENTOML_HOME; training bench wall time {elapsed / 60:.1f} min",
        '- GPU present: `device="cuda"` rows included'
        if gpu
        else "- no GPU present: `--device cuda` not measured",
        "",
        *markdown_table(
            [
                "fit",
                "patients",
                "wall s",
                "CPU s",
                "load at start",
                "MiB after data",
                "peak MiB (main)",
                "peak MiB (tree)",
            ],
            [_row(r) for r in results],
        ),
    ]
    measured_1m = next(
        (
            r
            for r in results
            if r["kind"] == "BoostedCox"
            and r["patients"] == BOOSTED_ONLY_SIZE
            and r["device"] == "cpu"
            and r.get("best_iteration") is not None
            and "error" not in r
        ),
        None,
    )
    if measured_1m is not None:
        lines += [
            "",
            f"BoostedCox default fit at {BOOSTED_ONLY_SIZE:,} patients, MEASURED on the CPU "
            f"(one thread; early stopping on a 20 % split, then {measured_1m['rounds']} rounds "
            f"on all rows): {measured_1m['seconds'] / 60:.1f} min wall, "
            f"{measured_1m['cpu_seconds'] / 60:.1f} min CPU (1-minute load average "
            f"{measured_1m['load']:.1f} when it started; on a loaded machine the wall time "
            "overstates the fit's cost, the CPU time much less).",
        ]
    boosted = extrapolate_boosted(results)
    if boosted is not None:
        lines += [
            "",
            f"BoostedCox default fit at {BOOSTED_ONLY_SIZE:,} patients, EXTRAPOLATED: about "
            f"{boosted['seconds'] / 60:.1f} min (the fixed-round cost per round, times "
            f"{boosted['rounds_equivalent']:.0f} round-equivalents: early stopping at round "
            f"{boosted['best_iteration'] + 1} as at {ESTIMATOR_SIZES[-1]:,} patients, +50 "
            "patience rounds on 80 % of the rows, then the refit).",
        ]
    lines += _stage_lines(results)
    estimate = extrapolate_pipeline(results)
    lines += ["", f"Whole training at {PIPELINE_TARGET_SIZE:,} patients ({description}): "]
    if seconds is not None:
        lines[-1] += f"{seconds / 60:.1f} min."
    if description == "EXTRAPOLATED" and estimate is not None:
        lines[-1] += (
            f" Extrapolated from the 10,000-patient run: cross-validation and ensembles scaled by "
            f"the estimators' measured fit-time growth from 10,000 to 100,000 patients "
            f"(x{estimate['fit_ratio']:.1f}), validation, analysis and report stages linearly "
            "(x10); "
            "measure it with `--pipeline-sizes 1000 10000 100000`."
        )
    lines += ["", *target_lines(SECTION, target_values(results))]
    return "\n".join(lines) + "\n"


def _print(result: dict) -> None:
    row = _row(result)
    print(
        f"{row[0]:<40} {row[1]:>10} patients: {row[2]} s wall, {row[3]} s CPU (load {row[4]}); "
        f"MiB after data {row[5]}, peak main {row[6]}, peak tree {row[7]}",
        flush=True,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The training bench's command-line options (shared with ``bench.run``)."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--pipeline-sizes", type=int, nargs="*", default=list(PIPELINE_SIZES), metavar="N"
    )
    parser.add_argument(
        "--boosted-1m-fixed",
        action="store_true",
        help="at 1,000,000 rows, fit 100 fixed rounds and extrapolate the default fit from them "
        "instead of measuring it (minutes instead of some ten minutes)",
    )
    parser.add_argument(
        "--estimator-sizes", type=int, nargs="*", default=list(ESTIMATOR_SIZES), metavar="N"
    )
    parser.add_argument(
        "--no-boosted-1m", action="store_true", help="leave out the 1,000,000-patient fit"
    )
    parser.add_argument(
        "--keep-earlier",
        nargs="*",
        default=None,
        metavar="FIGURES_JSON",
        help="keep the measurements of earlier runs (their figures files; none named: "
        "bench/training.json) that this run does not repeat, each with its own date, commit "
        "and load",
    )
    parser.add_argument(
        "--measure-timeout", type=float, default=3600.0, help="seconds per measurement"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")


def run(args: argparse.Namespace) -> list[dict]:
    """Run the training bench with parsed `args`; return one result per measurement."""
    start = time.perf_counter()
    gpu = gpu_present()
    print("GPU present" if gpu else "no GPU present: --device cuda not measured", flush=True)
    results = []
    for spec in plan(args, gpu):
        results.append(measure(spec, args.measure_timeout))
        _print(results[-1])
    if args.keep_earlier is not None:
        results = with_earlier(results, earlier_measurements(args.keep_earlier))
    description, seconds, _ = pipeline_verdict(results)
    if seconds is not None:
        print(
            f"whole training at {PIPELINE_TARGET_SIZE:,} patients ({description}): "
            f"{seconds / 60:.1f} min; target: {_target_text(seconds)}"
        )
    elapsed = time.perf_counter() - start
    print(f"training bench: {elapsed / 60:.1f} min")
    if not args.no_write:
        env = environment(PACKAGES)
        figures = {
            "environment": env,
            "settings": vars(args),
            "gpu": gpu,
            "wall_minutes": elapsed / 60,
            "measurements": results,
            "boosted_1m_extrapolated": extrapolate_boosted(results),
            "pipeline_100k_extrapolated": extrapolate_pipeline(results),
            "targets": target_values(results),
        }
        path = write_section(SECTION, section_markdown(results, args, env, gpu, elapsed), figures)
        print(f"wrote the '{SECTION}' section of {path}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
