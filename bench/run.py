"""Run the benchmarks one after another and report how long each took (``make bench``).

Each benchmark runs as ``python -m bench.<name>`` in its own subprocess, so that one's
threads, caches and memory high-water marks do not leak into the next, and writes its own
section of ``bench/RESULTS.md`` and its figures to ``bench/<name>.json``; the run ends by
rebuilding RESULTS.md (:func:`bench.common.rebuild_results`), so that every section, measured
or not, and the targets table are there. The benchmarks run in the order of
:data:`bench.common.SECTIONS`. A benchmark whose module is missing (``coverage`` is written
separately) is skipped, saying so, in a full run, and is an error when named with ``--only``.
``versus`` (this checkout against an earlier commit) runs only on its own, with ``--ref``, and
``gate`` (the promotion gate's bootstrap route, some 40 minutes) only on its own.

Run from the repository root::

    .venv/bin/python -m bench.run [--only quality training] [--skip serving] [--no-write]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time

from bench.common import REPO_ROOT, SECTIONS, rebuild_results

ON_REQUEST = ("versus", "gate")
"""Sections run only when asked, with their own arguments (`bench.versus` needs `--ref`;
`bench.gate` takes some 40 minutes on 2 cores, 600 gate decisions of 200 refits each)."""
BENCHES = tuple(name for name in SECTIONS if name not in ON_REQUEST)
BUDGET_SECONDS = 30 * 60


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
    missing = [n for n in chosen if not _present(n)]
    if args.only and missing:
        parser.error(
            f"asked for {', '.join(missing)}, but bench/{missing[0]}.py is not present; run the "
            "others, or add the module"
        )

    durations: dict[str, str] = {}
    failed = []
    start = time.perf_counter()
    for name in chosen:
        if name in missing:
            durations[name] = f"skipped: no bench/{name}.py"
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
    if not args.no_write:
        print(f"\nrebuilt {rebuild_results()}")

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
