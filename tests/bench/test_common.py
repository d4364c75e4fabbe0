"""Tests of the benchmark results writer: RESULTS.md and its figures are the code's alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from bench import common, run
from bench.common import RESULTS, SECTIONS, TARGETS, figures_path, rebuild_results, write_section

BENCH_MODULES = sorted(Path(common.__file__).parent.glob("*.py"))
PROGNOSIS_FIGURES = {
    "by_primary": {"coxnet": {"single_ms": np.float64(4.0)}},
    "targets": {"prognosis_single_ms": np.float64(4.0), "prognosis_batch_s": 2.0},
}


def _blocks(text: str) -> list[str]:
    return re.findall(r"<!-- ([a-z][a-z0-9_-]*):start -->", text)


def test_a_section_writes_its_figures_beside_results_with_a_verdict_per_target(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_section("prognosis", "## Prognosis (in-process)\n\nmeasured", PROGNOSIS_FIGURES, path)

    record = json.loads(figures_path("prognosis", path).read_text(encoding="utf-8"))
    assert figures_path("prognosis", path) == tmp_path / "prognosis.json"
    assert record["figures"] == {"by_primary": {"coxnet": {"single_ms": 4.0}}}
    assert record["targets"]["prognosis_single_ms"]["met"] is True
    assert record["targets"]["prognosis_batch_s"] == {
        "measure": TARGETS["prognosis_batch_s"].measure,
        "bar": "<= 1.5 s",
        "value": 2.0,
        "met": False,
    }
    text = path.read_text(encoding="utf-8")
    assert _blocks(text) == ["targets", *SECTIONS]
    assert "| 4.0 ms | met |" in text
    assert "| 2.00 s | **NOT met** |" in text
    assert "Not measured yet: run `.venv/bin/python -m bench.coverage`" in text


def test_text_written_by_hand_outside_the_sections_does_not_survive_a_rewrite(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_section("serving", "## Serving\n\nfigures", {"targets": {}}, path)
    edited = path.read_text(encoding="utf-8") + (
        "\nBars raised manually: p50 <= 9 ms.\n\n"
        "<!-- bars:start -->\nhand table\n<!-- bars:end -->\n"
    )
    path.write_text(edited, encoding="utf-8")

    write_section("prognosis", "## Prognosis (in-process)\n\nmeasured", PROGNOSIS_FIGURES, path)

    text = path.read_text(encoding="utf-8")
    assert "raised manually" not in text
    assert "hand table" not in text
    assert "## Serving\n\nfigures" in text
    assert _blocks(text) == ["targets", *SECTIONS]


def test_a_section_without_a_heading_gets_its_title_and_keeps_the_figures_it_wrote(tmp_path):
    path = tmp_path / "RESULTS.md"
    own = {"figures": {"coverage_2000_low": 0.91}, "cells": []}
    figures_path("coverage", path).write_text(json.dumps(own), encoding="utf-8")

    write_section("coverage", "Command: `x`", path=path)

    text = path.read_text(encoding="utf-8")
    assert "## Coverage of the 95 % intervals\n\nCommand: `x`" in text
    assert "| 0.910 | **NOT met** |" in text
    assert json.loads(figures_path("coverage", path).read_text(encoding="utf-8")) == own


def test_a_figure_for_another_sections_target_is_refused(tmp_path):
    with pytest.raises(ValueError, match="may only judge its own targets"):
        write_section("serving", "## Serving", {"targets": {"prognosis_batch_s": 1.0}}, tmp_path)


def test_every_target_belongs_to_a_section_the_run_knows():
    assert {target.section for target in TARGETS.values()} == set(SECTIONS)
    assert set(run.BENCHES) | set(run.ON_REQUEST) == set(SECTIONS)
    assert run.BENCHES == tuple(name for name in SECTIONS if name not in run.ON_REQUEST)


@pytest.mark.parametrize("module", BENCH_MODULES, ids=lambda path: path.name)
def test_no_benchmark_defines_a_bar_of_its_own(module):
    if module.name == "common.py":
        return
    source = module.read_text(encoding="utf-8")
    numbers = re.findall(r"^(\w*TARGET\w*)\s*=\s*[\d(]", source, flags=re.MULTILINE)
    assert [name for name in numbers if "SIZE" not in name] == []
    assert "Targets: p50" not in source


def test_the_committed_results_file_has_nothing_outside_the_code_written_sections():
    text = RESULTS.read_text(encoding="utf-8")
    outside = re.sub(r"<!-- ([a-z0-9_-]+):start -->.*?<!-- \1:end -->", "", text, flags=re.DOTALL)
    assert outside.split() == f"{common.RESULTS_TITLE}\n{common.RESULTS_NOTE}".split()
    assert _blocks(text) == ["targets", *SECTIONS]


def test_a_missing_benchmark_is_skipped_in_a_full_run_and_refused_when_asked_for(
    monkeypatch, capsys
):
    started = []
    monkeypatch.setattr(run, "_present", lambda name: name != "coverage")
    monkeypatch.setattr(
        run.subprocess,
        "run",
        lambda command, **_: started.append(command[2]) or type("Done", (), {"returncode": 0}),
    )

    assert run.main(["--no-write"]) == 0
    assert started == [f"bench.{name}" for name in run.BENCHES if name != "coverage"]
    assert "bench.versus" not in started  # needs --ref: run on request only
    assert "== coverage: skipped (module bench.coverage not present)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        run.main(["--only", "coverage", "--no-write"])
    assert refused.value.code == 2
    assert "bench/coverage.py is not present" in capsys.readouterr().err


def test_rebuilding_keeps_every_section_and_recomputes_the_targets(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_section("prognosis", "## Prognosis (in-process)\n\nmeasured", PROGNOSIS_FIGURES, path)
    before = path.read_text(encoding="utf-8")

    rebuild_results(path)

    assert path.read_text(encoding="utf-8") == before
