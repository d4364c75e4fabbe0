"""The training bench's table: rows kept from an earlier run, the measured 1,000,000 fit."""

from __future__ import annotations

import argparse
import json

from bench import training

ENV = {
    "date": "2026-12-07 14:00 UTC",
    "cpu": "cpu",
    "cores": "2 logical CPUs",
    "memory": "8 GiB RAM",
    "platform": "linux",
    "python": "3.11",
    "gpu": "no GPU present",
    "load": "1.00, 1.00, 1.00",
    "commit": "abc1234",
    "versions": "",
}


def _row(kind: str, patients: int, **extra) -> dict:
    return {
        "kind": kind,
        "patients": patients,
        "device": "cpu",
        "seed": 0,
        "seconds": 10.0,
        "cpu_seconds": 9.0,
        "load": 0.5,
        "measured": "2026-12-07 13:00 UTC",
        "commit": "0ld0000",
        **extra,
    }


def test_an_earlier_measurement_is_kept_only_where_this_run_did_not_repeat_it():
    boosted_1m = _row("BoostedCox", 1_000_000, rounds=812, best_iteration=811)
    earlier = [_row("PenalizedCox", 1_000, repeats=3), boosted_1m, {"kind": "x", "error": "e"}]
    now = [_row("PenalizedCox", 1_000, repeats=3, commit="new0000")]

    kept = training.with_earlier(now, earlier)

    assert [r["commit"] for r in kept] == ["new0000", "0ld0000"]
    assert kept[1]["earlier"] is True
    assert "earlier run: 2026-12-07 13:00 UTC, `0ld0000`" in training._row(kept[1])[0]


def test_the_measured_default_fit_at_a_million_patients_is_stated_with_wall_and_cpu_time():
    args = argparse.Namespace(seed=0)
    boosted_1m = _row("BoostedCox", 1_000_000, rounds=812, best_iteration=811)
    boosted_1m.update(seconds=600.0, cpu_seconds=540.0, load=3.0)

    text = training.section_markdown([boosted_1m], args, ENV, gpu=False, elapsed=700.0)

    assert (
        "BoostedCox default fit at 1,000,000 patients, MEASURED on the CPU (one thread; early "
        "stopping on a 20 % split, then 812 rounds on all rows): 10.0 min wall, 9.0 min CPU "
        "(1-minute load average 3.0 when it started" in text
    )
    assert "EXTRAPOLATED" not in text.split("Whole training")[0]


def test_without_a_gpu_the_gpu_section_says_nothing_was_measured_and_how_to_measure(monkeypatch):
    from bench import gpu

    written = {}
    monkeypatch.setattr(gpu, "environment", lambda packages: ENV)
    monkeypatch.setattr(
        gpu, "write_section", lambda name, text, figures: written.update({name: (text, figures)})
    )
    monkeypatch.setattr("training.devices.cuda_problem", lambda: "no CUDA GPU is visible")

    assert gpu.main([]) == 0
    assert written == {}  # a CPU machine leaves a GPU figure measured elsewhere alone
    assert gpu.main(["--record-absence"]) == 0

    text, figures = written["gpu"]
    assert figures["targets"] == {"gpu_speedup_1m": None}
    assert "Not measured: no CUDA GPU is visible. The script is ready" in text
    assert "not measured" in text.split("Targets")[1]


def test_earlier_measurements_are_read_from_the_figures_files_as_write_section_keeps_them(
    tmp_path,
):
    pipeline = _row("pipeline", 100_000, stages={"cross-validating": 100.0})
    boosted_1m = _row("BoostedCox", 1_000_000, rounds=999, best_iteration=998)
    files = {"a.json": [pipeline], "b.json": [boosted_1m, {**pipeline, "seconds": 1}]}
    paths = []
    for name, rows in files.items():
        (tmp_path / name).write_text(
            json.dumps({"section": "training", "figures": {"measurements": rows}})
        )
        paths.append(str(tmp_path / name))

    rows = training.earlier_measurements(paths)

    assert [(r["kind"], r["seconds"]) for r in rows] == [("pipeline", 10.0), ("BoostedCox", 10.0)]
