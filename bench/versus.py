"""Latency of this checkout against an earlier commit, measured in one run.

For a change that must not slow the product (the house plan's "within 5 % of before"), one
run measures both versions side by side, alternating between them so that a busy machine
slows both alike:

- **in-process**: one long-lived Python process per version (its own code, its own model
  fitted on the synthetic default, 2,000 patients, seed 0, no bootstrap members) answers
  ``Predictor.prognosis`` for the same varied patients; each round times `--calls` calls;
- **served**: per round and version, `bentoml serve` started from that version's tree (its
  own model store, auth and audit log on, as in production), single-client latency of
  `POST /v1/prognosis` over `--requests` requests after a warm-up.

The figure per version is the median over rounds of each round's median; the verdict is the
ratio now / before. Writes the "versus" section of ``bench/RESULTS.md`` and
``bench/versus.json``.

Run from the repository root::

    .venv/bin/python -m bench.versus --ref <commit> [--now <commit>] [--rounds 3]

`--now` measures another commit instead of this checkout (both then run from temporary
worktrees), e.g. a merge before later work landed on top of it.

Targets: ``bench.common.TARGETS`` (``versus_*``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import (
    environment,
    environment_lines,
    markdown_table,
    target_lines,
    write_section,
)
from bench.serving import _latency, _patients
from tests.served import ROOT, served

SECTION = "versus"

# Runs inside each version's tree: fit the default model, then time prognoses on request.
WORKER = """
import json, statistics, sys, time, warnings
warnings.filterwarnings("ignore")
from model.predictor import Predictor
from model.schema import Patient
from training.fit import fit_bundle
from training.synthetic import simulate_cohort
predictor = Predictor(fit_bundle(simulate_cohort(2000, seed=0), seed=0, n_bootstrap=0))
patients = [Patient(**p) for p in json.loads(sys.argv[1])]
for p in patients[:20]:
    predictor.prognosis(p)
print("ready", flush=True)
for line in sys.stdin:
    times = []
    for i in range(int(line)):
        start = time.perf_counter()
        predictor.prognosis(patients[i % len(patients)])
        times.append((time.perf_counter() - start) * 1000)
    print(statistics.median(times), flush=True)
"""

FIT_MODEL = """
import warnings
warnings.filterwarnings("ignore")
from bench.serving import _fit_default_model
print(_fit_default_model(2000, 0))
"""


def _run_env(tree: Path, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(tree),
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
    }


def _in_process(trees: dict[str, Path], homes: dict[str, Path], patients, args) -> dict:
    workers = {
        name: subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(patients)],
            cwd=tree,
            env=_run_env(tree, homes[name]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name, tree in trees.items()
    }
    try:
        for name, worker in workers.items():
            if worker.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the {name} version's prognosis worker did not start")
        rounds: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, worker in workers.items():
                worker.stdin.write(f"{args.calls}\n")
                worker.stdin.flush()
                rounds[name].append(float(worker.stdout.readline()))
        return rounds
    finally:
        for worker in workers.values():
            worker.kill()


def _served(trees: dict[str, Path], homes: dict[str, Path], scratch: Path, args) -> dict:
    token = secrets.token_urlsafe(32)
    headers = {"authorization": f"Bearer {token}"}
    bodies = [{"patient": p} for p in _patients(64)]
    tags = {
        name: subprocess.run(
            [sys.executable, "-c", FIT_MODEL],
            cwd=tree,
            env=_run_env(tree, homes[name]),
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[-1]
        for name, tree in trees.items()
    }
    rounds: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            env = {
                **_run_env(tree, homes[name]),
                "NETPROG_MODEL_TAG": tags[name],
                "NETPROG_AUDIT_LOG": str(scratch / name / "audit.jsonl"),
                "NETPROG_API_TOKEN_HASHES": hashlib.sha256(token.encode()).hexdigest(),
                "NETPROG_WORKERS": "1",
            }
            with served(env, scratch / f"{name}.log", root=tree) as server:
                times, errors = _latency(
                    server.base, "/v1/prognosis", bodies, headers, args.requests, args.warmup
                )
            if errors:
                raise RuntimeError(f"{errors} requests to the {name} version failed")
            rounds[name].append(float(statistics.median(times)))
    return rounds


def _report(ref: str, head: str, measured: dict, args, env: dict) -> tuple[str, dict]:
    now_arg = f" --now {args.now}" if args.now else ""
    rows, ratios = [], {}
    for kind, rounds in measured.items():
        before, now = (statistics.median(rounds[name]) for name in ("before", "now"))
        ratios[kind] = now / before
        rows.append([kind, f"{before:.2f}", f"{now:.2f}", f"{now / before:.3f}"])
    values = {
        "versus_in_process_ratio": ratios["in-process"],
        "versus_served_ratio": ratios["served"],
    }
    lines = [
        "## Latency against an earlier commit",
        "",
        *environment_lines(env, f".venv/bin/python -m bench.versus --ref {ref}{now_arg}"),
        f"- before: `{ref}`; now: `{head}`; {args.rounds} rounds, alternating versions; "
        f"in-process: {args.calls} prognoses per round; served: {args.requests} sequential "
        "requests per round after a warm-up, one worker",
        "",
    ]
    lines += markdown_table(["path", "before, median ms", "now, median ms", "now / before"], rows)
    lines += ["", *target_lines(SECTION, values)]
    figures = {"ref": ref, "head": head, "rounds": measured, "settings": vars(args)}
    return "\n".join(lines) + "\n", {**figures, "targets": values}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="the earlier commit")
    parser.add_argument("--now", help="the later commit (default: this checkout)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run(
        [*git, "rev-parse", "--short", args.now or "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="netprog-bench-versus-") as scratch:
        scratch_path = Path(scratch)
        trees = {
            "before": scratch_path / "before",
            "now": scratch_path / "now" if args.now else ROOT,
        }
        refs = {"before": args.ref, "now": args.now}
        added = [name for name in trees if refs[name]]
        for name in added:
            subprocess.run(
                [*git, "worktree", "add", "--detach", str(trees[name]), refs[name]], check=True
            )
        try:
            homes = {name: scratch_path / name / "bentoml" for name in trees}
            patients = _patients(64)
            measured = {
                "in-process": _in_process(trees, homes, patients, args),
                "served": _served(trees, homes, scratch_path, args),
            }
        finally:
            for name in added:
                subprocess.run(
                    [*git, "worktree", "remove", "--force", str(trees[name])], check=False
                )
    markdown, figures = _report(args.ref, head, measured, args, environment(()))
    print(markdown)
    if not args.no_write:
        write_section(SECTION, markdown, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
