"""`bentoml serve` as deployed: a child process on a free loopback port, stopped afterwards.

Shared by the served tests (tests/serving/test_served.py, tests/reliability/) and the serving
benchmark (bench/serving.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 120
SERVICE = "serving.service:NetPrognosis"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Served:
    """A running server: its base URL, its process id, the file holding its output and the
    audit log it was given (if the caller says)."""

    base: str
    pid: int
    log_path: Path
    audit_log: Path | None = None

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def served(
    env: dict[str, str],
    log_path: Path,
    *,
    target: str = SERVICE,
    startup_seconds: float = STARTUP_SECONDS,
    root: Path = ROOT,
) -> Iterator[Served]:
    """Run `bentoml serve target` from `root` with `env` added to this process's environment.

    Waits for ``/readyz`` to answer 200; raises RuntimeError, with the end of the server's
    output, if the process exits or is not ready within `startup_seconds`. The whole process
    group is stopped on exit (SIGTERM, then SIGKILL after 30 s).
    """
    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--working-dir", str(root)]
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", **env}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Served(f"http://127.0.0.1:{port}", process.pid, log_path)
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{target} exited while starting:\n{server.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{target} was not ready after {startup_seconds} s:\n{server.output()[-3000:]}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{server.base}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it if still running after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
