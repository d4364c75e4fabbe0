"""Helpers shared by the benchmarks: the targets, the RESULTS.md writer, the machine, tables."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "RESULTS.md"
RESULTS_TITLE = "# Benchmark results"
RESULTS_NOTE = (
    "Written entirely by the benchmark code in `bench/` (`make bench`, or "
    "`.venv/bin/python -m bench.<section>` for one section); do not edit it by hand. Each "
    "section's figures are also in `<section>.json` beside this file, and every bar "
    "is defined once, in `bench.common.TARGETS`."
)
SECTIONS = (
    "quality",
    "training",
    "serving",
    "prognosis",
    "coverage",
    "missing",
    "monitoring",
    "gate",
    "updating",
    "gpu",
    "versus",
)
"""The benchmarks in the order `bench.run` runs them and RESULTS.md shows their sections."""
SECTION_TITLES = {
    "quality": "Quality",
    "training": "Training cost",
    "serving": "Serving",
    "prognosis": "Prognosis (in-process)",
    "coverage": "Coverage of the 95 % intervals",
    "missing": "Missing data (multiple imputation)",
    "monitoring": "Monitoring and the promotion gate",
    "gate": "The promotion gate on a centre's own patients",
    "gpu": "Training on a GPU",
    "versus": "Latency against an earlier commit",
    "updating": "Model updating",
}
TARGETS_SECTION = "targets"


@dataclass(frozen=True)
class Target:
    """One bar a benchmark figure must meet: ``value <= bar`` (or ``>=`` when not `at_most`).

    `first` is the target first set for this measure, kept when a bar was raised after it was
    beaten; `digits` the decimals a value is shown with.
    """

    section: str
    measure: str
    bar: float
    unit: str = ""
    at_most: bool = True
    strict: bool = False
    first: str = ""
    digits: int = 1

    @property
    def text(self) -> str:
        """The bar in words, e.g. ``<= 10 ms``."""
        sign = ("<" if self.strict else "<=") if self.at_most else (">" if self.strict else ">=")
        return f"{sign} {self.bar:g}{f' {self.unit}' if self.unit else ''}"

    def met(self, value: float | None) -> bool | None:
        """Whether `value` meets the bar; None when it was not measured."""
        if value is None or not math.isfinite(value):
            return None
        if self.at_most:
            return value < self.bar if self.strict else value <= self.bar
        return value > self.bar if self.strict else value >= self.bar

    def show(self, value: float | None) -> str:
        """`value` with its unit, or "not measured"."""
        if value is None or not math.isfinite(value):
            return "not measured"
        return f"{value:.{self.digits}f}{f' {self.unit}' if self.unit else ''}"


TARGETS: dict[str, Target] = {
    "versus_in_process_ratio": Target(
        "versus",
        "one prognosis in-process, now / before (median over alternating rounds)",
        1.05,
        "x",
        digits=3,
    ),
    "versus_served_ratio": Target(
        "versus",
        "`POST /v1/prognosis`, single client, median, now / before",
        1.05,
        "x",
        digits=3,
    ),
    "quality_oracle_gap": Target(
        "quality",
        "synthetic cohort: the oracle's Harrell C minus PrimarySurvival's (OS and HPFS, the "
        "larger)",
        0.005,
        first="within 0.01",
        digits=3,
    ),
    "quality_real_gap": Target(
        "quality",
        "each real dataset: the best peer's Harrell C minus PrimarySurvival's (the largest)",
        0.005,
        digits=3,
    ),
    "quality_real_lead": Target(
        "quality",
        "real datasets' average: PrimarySurvival's Harrell C minus the best peer's",
        0.005,
        at_most=False,
        first="> 0 (best of ours per dataset)",
        digits=3,
    ),
    "training_100k_min": Target(
        "training",
        "whole training at 100,000 patients (`netprog train` defaults)",
        5.0,
        "min",
        first="<= 10 min",
    ),
    "serving_p50_ms": Target(
        "serving", "`POST /v1/prognosis`, single client, p50", 10.0, "ms", first="<= 15 ms"
    ),
    "serving_p99_ms": Target("serving", "`POST /v1/prognosis`, single client, p99", 40.0, "ms"),
    "serving_rps_8": Target(
        "serving",
        "`POST /v1/prognosis` throughput at 8 clients",
        170.0,
        "req/s",
        at_most=False,
        first=">= 150 req/s",
        digits=0,
    ),
    "serving_errors_8": Target("serving", "errors at 8 clients", 0.0, "errors", digits=0),
    "serving_overhead_ratio": Target(
        "serving",
        "the service's own overhead (single-client p50 minus the in-process prognosis median, "
        "same run) over the floor's p50",
        2.0,
        "x",
    ),
    "serving_rps_8_share": Target(
        "serving",
        "throughput at 8 clients over the compute-bound limit (2 cores / in-process median)",
        0.8,
        at_most=False,
        digits=2,
    ),
    "gpu_speedup_1m": Target(
        "gpu",
        "BoostedCox default fit at 1,000,000 patients: all-core CPU wall time over the GPU's, "
        "same machine and run",
        1.0,
        "x",
        at_most=False,
    ),
    "prognosis_single_ms": Target(
        "prognosis",
        "one full prognosis in-process, coxnet primary, median wall",
        10.0,
        "ms",
        first="<= 20 ms",
    ),
    "prognosis_batch_s": Target(
        "prognosis",
        "batch of 1,000 in-process, coxnet primary, median wall",
        1.5,
        "s",
        first="<= 2 s",
        digits=2,
    ),
    "prognosis_contributions_ms": Target(
        "prognosis",
        "one prognosis with contributions_over_time in-process, coxnet primary, median wall",
        30.0,
        "ms",
    ),
    "coverage_2000_low": Target(
        "coverage",
        "2,000-patient fits: the lowest share of patients whose 95 % interval holds the true "
        "survival, over endpoint x modality x 12/24/36 months (and 60 where adequately followed)",
        0.92,
        at_most=False,
        digits=3,
    ),
    "coverage_2000_high": Target(
        "coverage",
        "2,000-patient fits: the highest such share",
        0.98,
        digits=3,
    ),
    "coverage_500_low": Target(
        "coverage",
        "500-patient fits: the lowest such share",
        0.90,
        at_most=False,
        digits=3,
    ),
    "coverage_other_low": Target(
        "coverage",
        "2,000-patient fits: the lowest share for the medians, the cumulative incidence and "
        "the paired differences between modalities",
        0.92,
        at_most=False,
        digits=3,
    ),
    "coverage_width_ratio": Target(
        "coverage",
        "mean interval width against the oracle-structure reference's (the largest ratio)",
        1.5,
        "x",
        digits=2,
    ),
    "updating_ici_ratio": Target(
        "updating",
        "baseline hazard x 1.5, 100 local patients: median ICI at 24 months of the updated "
        "model over the unupdated model's (the larger of HPFS and OS)",
        0.5,
        "x",
        digits=3,
    ),
    "updating_c_vs_refit": Target(
        "updating",
        "baseline hazard x 1.5, 100 local patients: median Harrell C of the updated model minus "
        "that of a full refit on the local patients (the smaller of HPFS and OS)",
        0.0,
        at_most=False,
        digits=3,
    ),
    "updating_equal_kept": Target(
        "updating",
        "centre equal to the reference, 100 local patients: share of replicates keeping the "
        "model or updating the baseline only (the smaller of HPFS and OS)",
        0.9,
        at_most=False,
        digits=3,
    ),
    "updating_equal_ici_excess": Target(
        "updating",
        "centre equal to the reference: median ICI updated minus unupdated (the larger)",
        0.01,
        digits=4,
    ),
    "updating_revised_hpfs": Target(
        "updating",
        "SIRT-in-G2 effect reversed, 300 local patients: share choosing revision or refit, HPFS",
        0.7,
        at_most=False,
        digits=3,
    ),
    "updating_revised_os": Target(
        "updating",
        "SIRT-in-G2 effect reversed, 300 local patients: share choosing revision or refit, OS",
        0.7,
        at_most=False,
        digits=3,
    ),
    "updating_g2_direction_hpfs": Target(
        "updating",
        "SIRT-in-G2 reversed: updated SIRT-vs-TACE comparison for a G2 patient has the true "
        "sign, HPFS (share of replicates)",
        0.7,
        at_most=False,
        digits=3,
    ),
    "updating_g2_direction_os": Target(
        "updating",
        "SIRT-in-G2 reversed: the same for OS",
        0.7,
        at_most=False,
        digits=3,
    ),
    "updating_cli_s": Target(
        "updating", "`netprog update` on 100 patients, fresh process, wall", 60.0, "s"
    ),
    "missing_c_gap_complete": Target(
        "missing",
        "2,000-patient cohorts with 10 % and 30 % missing (MCAR and MAR): the complete-data "
        "fit's Harrell C minus the imputed fit's (OS and HPFS, the largest)",
        0.01,
        digits=3,
    ),
    "missing_c_gain_complete_case": Target(
        "missing",
        "30 % MAR, new patients with every field known: the imputed fit's Harrell C minus the "
        "complete-case fit's (the smaller)",
        0.01,
        at_most=False,
        digits=3,
    ),
    "missing_c_gain_complete_case_served": Target(
        "missing",
        "30 % MAR, new patients with the same holes, each served as the service does (mixture "
        "over the unknown fields by the fit's own imputation models): the imputed fit's Harrell "
        "C minus the complete-case fit's (the smaller)",
        0.01,
        at_most=False,
        digits=3,
    ),
    "missing_coverage_10_mar_low": Target(
        "missing",
        "10 % MAR, imputed fit: the lowest share of new patients whose served 95 % survival "
        "interval holds the truth (a cell per endpoint, modality and followed horizon)",
        0.92,
        at_most=False,
        digits=3,
    ),
    "missing_train_time_ratio": Target(
        "missing",
        "`netprog train` time on a 2,000-patient cohort with 30 % MAR against the complete one",
        3.0,
        "x",
        digits=2,
    ),
    "monitoring_drift_found": Target(
        "monitoring",
        "`netprog monitor`, hazards × 1.5 from a given date: share of replicate streams flagged "
        "within 200 followed patients after the change",
        0.80,
        at_most=False,
        digits=2,
    ),
    "monitoring_false_alarms": Target(
        "monitoring",
        "`netprog monitor`, stable stream (model calibrated in truth): share of replicates flagged",
        0.05,
        digits=2,
    ),
    "monitoring_gate_shuffled_refused": Target(
        "monitoring",
        "promotion gate: share of candidates trained on shuffled outcomes refused",
        1.0,
        at_most=False,
        digits=2,
    ),
    "monitoring_gate_equal_promoted": Target(
        "monitoring",
        "promotion gate, 300 held-out patients: share of candidates equal to production in truth "
        "promoted",
        0.90,
        at_most=False,
        digits=2,
    ),
    "monitoring_gate_independent_promoted": Target(
        "monitoring",
        "promotion gate, 300 held-out patients: share of candidates trained on an independent "
        "cohort of the same size (equal in expectation) promoted - the stricter reading of "
        "the bar above",
        0.90,
        at_most=False,
        digits=2,
    ),
    "gate_own_shuffled_refused": Target(
        "gate",
        "promotion gate on a centre's own 150 patients (optimism-corrected): share of updates "
        "on shuffled outcomes refused",
        1.0,
        at_most=False,
        digits=2,
    ),
    "gate_own_equal_promoted": Target(
        "gate",
        "promotion gate on a centre's own 150 patients (optimism-corrected): share of updates "
        "to a centre equal to the reference promoted (the held-out bar, applied here)",
        0.90,
        at_most=False,
        digits=2,
    ),
    "gate_own_baseline_promoted": Target(
        "gate",
        "promotion gate on a centre's own 150 patients (optimism-corrected): share of updates "
        "to a centre with hazards x 1.5 promoted",
        0.90,
        at_most=False,
        digits=2,
    ),
    "monitoring_5000_s": Target(
        "monitoring", "`netprog monitor` on 5,000 patients, wall", 30.0, "s"
    ),
}
"""Every benchmark bar, in one place: sections judge their figures with these, and the
"Targets" section of RESULTS.md lists them with the latest figures."""

_SECTION_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")

__all__ = [
    "RESULTS",
    "SECTIONS",
    "TARGETS",
    "Target",
    "environment",
    "environment_lines",
    "figures_path",
    "gpu_present",
    "markdown_table",
    "package_versions",
    "rebuild_results",
    "target_lines",
    "target_verdicts",
    "write_section",
]


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `folder` so concurrent section writers take turns.

    The lock is on the directory itself, not on RESULTS.md, because the file is replaced (a
    new inode) on every write, and a lock file would be one more untracked file in the tree.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: writers are not serialised, each write is still atomic
        yield
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


def figures_path(name: str, path: Path = RESULTS) -> Path:
    """Where section `name` keeps its figures: ``<name>.json`` beside `path`."""
    return Path(path).with_name(f"{name}.json")


def target_verdicts(section: str, values: Mapping[str, float | None]) -> dict[str, dict]:
    """Each of `section`'s targets with its measured value (None: not measured) and verdict.

    Raises
    ------
    ValueError
        If `values` names a target that is not one of the section's.
    """
    expected = {name for name, target in TARGETS.items() if target.section == section}
    unknown = sorted(set(values) - expected)
    if unknown:
        raise ValueError(
            f"the figures of section {section!r} may only judge its own targets "
            f"{sorted(expected)}, but got {unknown}"
        )
    verdicts = {}
    for name in sorted(expected):
        value = values.get(name)
        value = None if value is None or not math.isfinite(value) else float(value)
        verdicts[name] = {
            "measure": TARGETS[name].measure,
            "bar": TARGETS[name].text,
            "value": value,
            "met": TARGETS[name].met(value),
        }
    return verdicts


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**NOT met**", None: "not measured"}[met]


def target_lines(section: str, values: Mapping[str, float | None]) -> list[str]:
    """Markdown lines judging a section's figures against its bars in `TARGETS`."""
    verdicts = target_verdicts(section, values)
    lines = ["Targets (`bench.common.TARGETS`):", ""]
    lines += [
        f"- {TARGETS[name].measure}: {TARGETS[name].show(entry['value'])}, bar "
        f"{TARGETS[name].text}: {_verdict(entry['met'])}"
        for name, entry in verdicts.items()
    ]
    return lines


def _plain(value: Any) -> Any:
    """`value` as plain JSON types; NaN and infinity become None (not measured)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _sections_of(text: str) -> dict[str, str]:
    pattern = re.compile(r"<!-- ([a-z][a-z0-9_-]*):start -->\n(.*?)\n<!-- \1:end -->", re.DOTALL)
    return {match.group(1): match.group(2) for match in pattern.finditer(text)}


def _placeholder(name: str) -> str:
    return (
        f"## {SECTION_TITLES[name]}\n\nNot measured yet: run "
        f"`.venv/bin/python -m bench.{name}` (or `make bench`)."
    )


def _latest(name: str, path: Path) -> tuple[dict[str, float | None], str] | None:
    """A section's target values and when they were measured, from its figures file.

    Reads what :func:`write_section` writes, and also a file whose ``"figures"`` map target
    names to values (a bench writing its own file).
    """
    try:
        record = json.loads(figures_path(name, path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if "targets" in record:
        values = {k: v["value"] for k, v in record["targets"].items()}
    else:
        values = {k: v for k, v in record.get("figures", {}).items() if k in TARGETS}
    if "measured_at" in record:
        when = f"{record['measured_at']} (`{record['commit']}`)"
    else:
        written = figures_path(name, path).stat().st_mtime
        when = f"{dt.datetime.fromtimestamp(written, dt.UTC):%Y-%m-%d %H:%M UTC} (file time)"
    return values, when


def _targets_markdown(sections: Mapping[str, str], path: Path) -> str:
    lines = [
        "## Targets",
        "",
        "Every bar is defined once, in `bench.common.TARGETS`; the latest figures come from "
        "the sections' `<section>.json`. This table is rebuilt whenever a section is "
        f"written (last at commit `{_commit()}`); a section measured at an older commit may "
        "not describe the current code.",
        "",
    ]
    stale = [name for name in SECTIONS if name in sections and _latest(name, path) is None]
    if stale:
        lines[-1:-1] = [
            f"The {', '.join(stale)} section(s) have no figures file: an earlier version of "
            "their benchmark wrote them, and the targets they quote are that version's. The "
            "bars in this table are the current ones; re-run those benchmarks to judge them.",
            "",
        ]
    rows = []
    for section in SECTIONS:
        latest = _latest(section, path)
        for name, target in TARGETS.items():
            if target.section != section:
                continue
            if latest is None:
                missing = (
                    "no figures file: section written before figures were kept in JSON"
                    if section in sections
                    else "not measured yet"
                )
                rows.append([section, target.measure, target.text, target.first, missing, "–", ""])
                continue
            values, when = latest
            value = values.get(name)
            rows.append(
                [
                    section,
                    target.measure,
                    target.text,
                    target.first,
                    target.show(value),
                    _verdict(target.met(value)),
                    when,
                ]
            )
    lines += markdown_table(
        ["section", "measure", "bar", "first target", "latest", "verdict", "measured (commit)"],
        rows,
    )
    return "\n".join(lines)


def _compose(sections: Mapping[str, str], path: Path) -> str:
    """The whole file: title, note, the targets table, then every section in `SECTIONS` order."""
    blocks = [RESULTS_TITLE, RESULTS_NOTE]
    for name, body in [
        (TARGETS_SECTION, _targets_markdown(sections, path)),
        *((name, sections.get(name) or _placeholder(name)) for name in SECTIONS),
    ]:
        blocks.append(f"<!-- {name}:start -->\n{body.strip()}\n<!-- {name}:end -->")
    return "\n\n".join(blocks) + "\n"


def write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", text=True)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _rebuild(path: Path, name: str | None = None, markdown: str | None = None) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    sections = {
        k: v
        for k, v in _sections_of(text).items()
        if k in SECTIONS and v.strip() != _placeholder(k)
    }
    if name is not None and markdown is not None:
        sections[name] = markdown
    write_atomically(path, _compose(sections, path))


def rebuild_results(path: Path = RESULTS) -> Path:
    """Rewrite RESULTS.md from its sections and the figures files, adding missing sections.

    Sections keep their text; the targets table is recomputed from `TARGETS` and each
    section's ``<section>.json``; a section never measured gets a placeholder, and a
    block that is no benchmark's section is dropped.
    """
    path = Path(path)
    with _locked(path.parent):
        _rebuild(path)
    return path


def write_section(
    name: str, markdown: str, figures: Mapping[str, Any] | None = None, path: Path = RESULTS
) -> Path:
    """Replace section `name` of RESULTS.md with `markdown` and write its figures beside it.

    A section is the text between ``<!-- name:start -->`` and ``<!-- name:end -->``. The file
    is rebuilt around it (:func:`rebuild_results`): the other sections are left as they are,
    and the targets table is recomputed. `figures` go to ``<name>.json`` (see
    :func:`figures_path`) with the date, the commit and the verdict on each of the section's
    targets; without them the section's own figures file, if any, is left as it is. A section
    without a ``## `` heading gets its title from :data:`SECTION_TITLES`. Both files are
    written to temporary files in the same folder and moved into place (``os.replace``), under
    an exclusive lock on the folder, so a reader never sees half a file and two benchmarks
    writing at once do not lose each other's sections.

    Parameters
    ----------
    name : str
        One of :data:`SECTIONS`, e.g. ``"quality"``.
    markdown : str
        The section's content, usually starting with its ``## `` heading.
    figures : mapping, optional
        The section's figures (JSON-ready, numpy scalars and arrays allowed), with
        ``"targets"``: ``{target name: value or None}`` for the section's targets in
        :data:`TARGETS` (a missing one is "not measured").
    path : Path
        The results file; ``bench/RESULTS.md`` by default.

    Returns
    -------
    path : Path
        The Markdown file written.
    """
    if not _SECTION_NAME.match(name) or name not in SECTIONS:
        raise ValueError(f"`name` must be one of {SECTIONS}, but got {name!r}")
    path = Path(path)
    if not markdown.lstrip().startswith("## "):
        markdown = f"## {SECTION_TITLES[name]}\n\n{markdown.strip()}"
    text = None
    if figures is not None:
        figures = dict(figures)
        record = {
            "section": name,
            "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": _commit(),
            "command": command_line(),
            "targets": target_verdicts(name, figures.pop("targets", {})),
            "figures": figures,
        }
        text = json.dumps(_plain(record), indent=2, allow_nan=False) + "\n"
    with _locked(path.parent):
        if text is not None:
            write_atomically(figures_path(name, path), text)
        _rebuild(path, name, markdown)
    return path


def _commit() -> str:
    """The checked-out commit, ``-dirty`` when the tree has uncommitted changes."""
    import subprocess

    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return described.stdout.strip() or "unknown"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> float:
    try:
        import psutil

        return psutil.virtual_memory().total / 2**30
    except ImportError:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def gpu_present() -> bool:
    """Whether an NVIDIA GPU is visible (``nvidia-smi`` on the PATH and listing a device)."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return False
    import subprocess

    try:
        listing = subprocess.run(
            [executable, "-L"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return listing.returncode == 0 and "GPU" in listing.stdout


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed version of each distribution, "not installed" where absent."""
    versions = {}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def environment(packages: Sequence[str] = ()) -> dict[str, str]:
    """The machine and software a benchmark ran on, as printable strings."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:
        physical = None
    cores = f"{os.cpu_count()} logical CPUs" + (f" ({physical} physical)" if physical else "")
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": cores,
        "memory": f"{_memory_gib():.1f} GiB RAM",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": "GPU present" if gpu_present() else "no GPU present",
        "load": f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}",
        "commit": _commit(),
        "versions": ", ".join(f"{k} {v}" for k, v in package_versions(packages).items()),
    }


def environment_lines(env: dict[str, str], command: str) -> list[str]:
    """Markdown bullet lines describing `env` and the exact `command` that produced a section."""
    return [
        f"- date: {env['date']}; commit `{env['commit']}`; command: `{command}`",
        f"- machine: {env['cpu']}, {env['cores']}, {env['memory']}, {env['gpu']}; "
        f"{env['platform']}; load average at the end {env['load']}",
        f"- Python {env['python']}; {env['versions']}",
    ]


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A GitHub-flavoured Markdown table as lines (cells already formatted as strings)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def command_line() -> str:
    """The command that started this process, as a user would type it from the repo root."""
    arguments = " ".join(sys.argv[1:])
    module = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "run"
    return f".venv/bin/python -m bench.{module} {arguments}".rstrip()
