"""The reliability suite's figures, written into docs/reliability.md by the tests that measure them.

A test replaces one marked block of the document (``<!-- name:start -->`` to
``<!-- name:end -->``) with what it measured, the date, the host's load average and the command
that repeats it, so the document never carries a figure typed by hand. The file is rewritten
atomically under a lock on its folder, so two tests finishing together keep both blocks.

Only a run that asks for it writes the document itself: ``make reliability`` sets
``NETPROG_RELIABILITY_DOC=write``. Any other run (``make test``, CI, a test run by hand)
writes its blocks into a copy, ``test-artifacts/reliability.md``, and leaves the checkout clean.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.common import write_atomically

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
DOC_COPY = ROOT / "test-artifacts" / "reliability.md"
WRITE_DOC = "NETPROG_RELIABILITY_DOC"
"""Set to "write" (``make reliability`` does) to write the figures into docs/reliability.md."""


def _target(path: Path) -> Path:
    """`path`, or for the document itself its copy unless this run writes the document."""
    if path != DOC or os.environ.get(WRITE_DOC) == "write":
        return path
    if not DOC_COPY.exists():
        DOC_COPY.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(DOC_COPY, DOC.read_text(encoding="utf-8"))
    return DOC_COPY


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def measured_on(load_average: float | Sequence[float] | None = None) -> str:
    """One line: when, at which commit, on how many CPUs, at which load average (1 min)."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    if load_average is None:
        load_average = os.getloadavg()[0]
    if isinstance(load_average, int | float):
        load = f"{load_average:.1f}"
    else:
        load = f"{min(load_average):.1f}-{max(load_average):.1f}"
    return (
        f"Measured {now} at commit {commit or 'unknown'} on {os.cpu_count()} CPUs, "
        f"load average (1 min) {load}."
    )


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


def write_block(name: str, markdown: str, path: Path = DOC) -> None:
    """Replace block `name` of `path` with `markdown` (the markers must already be there)."""
    path = _target(path)
    pattern = re.compile(
        rf"(<!-- {re.escape(name)}:start -->\n).*?(\n<!-- {re.escape(name)}:end -->)", re.DOTALL
    )
    with _locked(path.parent):
        text = path.read_text(encoding="utf-8")
        if not pattern.search(text):
            raise ValueError(
                f"{path} must hold the markers <!-- {name}:start --> and <!-- {name}:end -->, "
                "but does not; add them where the figures belong"
            )
        updated = pattern.sub(lambda match: match[1] + markdown.strip() + match[2], text)
        write_atomically(path, updated)


def write_figures(name: str, rows: dict[str, object], load_average=None, path: Path = DOC) -> None:
    """Block `name` as the measuring line and a two-column table of `rows` (label: value)."""
    table = markdown_table(["figure", "value"], [[label, value] for label, value in rows.items()])
    write_block(name, f"{measured_on(load_average)}\n\n{table}", path)


def outcomes(counts: dict[str, int]) -> str:
    """``{"200": 98, "RemoteProtocolError": 1}`` as ``98 × 200, 1 × RemoteProtocolError``."""
    return ", ".join(f"{n:,} × {kind}" for kind, n in counts.items()) or "none"
