"""Run as a child process: serve the model in-process, send one generated record to the FHIR
route, and print the answer's time and the process's memory (JSON on stdout).

Usage: ``python -m tests.serving.record_probe RECORD_FILE``; the model is the one
`NETPROG_MODEL_TAG` names in `BENTOML_HOME`. The test makes the record, so that making it does
not count in this process's memory.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB.

    Not `getrusage(RUSAGE_SELF).ru_maxrss`: Linux carries that figure across `execve` from the
    process that was replaced, so a child started from a large pytest session reported the
    session's peak (1.3 GB in the full run) rather than its own. VmHWM belongs to the address
    space, which `execve` makes afresh.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: this probe needs Linux")


def main() -> None:
    from serving.service import NetPrognosis
    from tests.serving.conftest import ServiceClient
    from tests.serving.record_factory import EXAMPLES

    small = (EXAMPLES / "g2_pancreas_sirt.bundle.json").read_bytes()
    with ServiceClient(NetPrognosis.to_asgi()) as client:
        warm = client.post(
            "/v1/fhir/prognosis", content=small, headers={"content-type": "application/json"}
        )
        with open(sys.argv[1], "rb") as handle:
            body = handle.read()
        baseline = _rss_mb()
        started = time.perf_counter()
        response = client.post(
            "/v1/fhir/prognosis", content=body, headers={"content-type": "application/json"}
        )
        seconds = time.perf_counter() - started
    answer = response.json()
    print(
        json.dumps(
            {
                "bytes": len(body),
                "warm_status": warm.status_code,
                "status": response.status_code,
                "seconds": seconds,
                "baseline_rss_mb": baseline,
                "peak_rss_mb": _rss_mb(),
                "primary_site": answer.get("patient", {}).get("primary_site"),
                "warnings": answer.get("warnings", []),
                "set_aside": answer.get("set_aside", []),
            }
        )
    )


if __name__ == "__main__":
    main()
