"""Helpers shared by the benchmarks: the RESULTS.md section writer, the machine, tables."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "RESULTS.md"
RESULTS_TITLE = "# Benchmark results\n"
_SECTION_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")

__all__ = [
    "RESULTS",
    "environment",
    "environment_lines",
    "gpu_present",
    "markdown_table",
    "package_versions",
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


def _replace_section(text: str, name: str, markdown: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    pattern = re.compile(rf"{re.escape(start)}.*?{re.escape(end)}", re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return f"{text.rstrip()}\n\n{block}\n"


def write_section(name: str, markdown: str, path: Path = RESULTS) -> Path:
    """Replace the section `name` of RESULTS.md with `markdown`, leaving every other one intact.

    A section is the text between ``<!-- name:start -->`` and ``<!-- name:end -->``; it is
    appended when absent and the file is created when missing. The file is written to a
    temporary file in the same folder and moved into place (``os.replace``), under an exclusive
    lock on the folder, so a reader never sees half a file and two benchmarks writing at once
    do not lose each other's sections.

    Parameters
    ----------
    name : str
        Section name: lower-case letters, digits, ``-`` and ``_``, e.g. ``"quality"``.
    markdown : str
        The section's content, usually starting with its ``## `` heading.
    path : Path
        The results file; ``bench/RESULTS.md`` by default.

    Returns
    -------
    path : Path
        The file written.
    """
    if not _SECTION_NAME.match(name):
        raise ValueError(
            f"`name` must be lower-case letters, digits, '-' or '_' starting with a letter, "
            f"but got {name!r}"
        )
    path = Path(path)
    with _locked(path.parent):
        text = path.read_text(encoding="utf-8") if path.exists() else RESULTS_TITLE
        updated = _replace_section(text, name, markdown)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", text=True)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(updated)
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
    return path


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
        "versions": ", ".join(f"{k} {v}" for k, v in package_versions(packages).items()),
    }


def environment_lines(env: dict[str, str], command: str) -> list[str]:
    """Markdown bullet lines describing `env` and the exact `command` that produced a section."""
    return [
        f"- date: {env['date']}; command: `{command}`",
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
