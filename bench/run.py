"""Run the benchmarks one after another and report how long each took (``make bench``).

Each benchmark runs as ``python -m bench.<name>`` in its own subprocess, so that one's
threads, caches and memory high-water marks do not leak into the next, and writes its own
section of ``bench/RESULTS.md``. ``serving`` and ``prognosis`` run only when their modules
exist. The whole run is meant to finish within 30 minutes on a 2-core machine.

Run from the repository root::

    .venv/bin/python -m bench.run [--only quality training] [--skip serving] [--no-write]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

BENCHES = ("quality", "training", "serving", "prognosis")
BUDGET_SECONDS = 30 * 60
REPO_ROOT = Path(__file__).resolve().parents[1]


def _present(name: str) -> bool:
    return importlib.util.find_spec(f"bench.{name}") is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=BENCHES, metavar="NAME", default=None)
    parser.add_argument("--skip", nargs="+", choices=BENCHES, metavar="NAME", default=[])
    parser.add_argument(
        "--no-write", action="store_true", help="ask every benchmark not to update RESULTS.md"
    )
    args = parser.parse_args(argv)
    chosen = [n for n in (args.only or BENCHES) if n not in args.skip]

    durations: dict[str, str] = {}
    failed = []
    start = time.perf_counter()
    for name in chosen:
        if not _present(name):
            durations[name] = "skipped: no bench/" + name + ".py"
            print(f"== {name}: skipped (module bench.{name} not present)", flush=True)
            continue
        print(f"== {name}", flush=True)
        began = time.perf_counter()
        command = [sys.executable, "-m", f"bench.{name}"] + (
            ["--no-write"] if args.no_write else []
        )
        returncode = subprocess.run(command, cwd=REPO_ROOT, check=False).returncode
        seconds = time.perf_counter() - began
        durations[name] = f"{seconds / 60:.1f} min" + ("" if returncode == 0 else " (FAILED)")
        if returncode != 0:
            failed.append(name)
    total = time.perf_counter() - start

    print("\n== benchmark wall times")
    for name, text in durations.items():
        print(f"{name:>10}: {text}")
    print(f"{'total':>10}: {total / 60:.1f} min (budget {BUDGET_SECONDS / 60:.0f} min)")
    if total > BUDGET_SECONDS:
        print(f"over budget by {(total - BUDGET_SECONDS) / 60:.1f} min")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
