"""A 10-minute soak of `bentoml serve` (2 workers) at a steady rate (``make reliability``).

`SOAK_RATE` requests/s, or `SHARE_OF_CAPACITY` of the capacity measured just before (8
closed-loop clients for 10 s, which also warms the workers) where that is lower, of 1,000
varied patients, open loop (tests/reliability/traffic.py). Asserted: every request answered
200 (no unexpected error, 429 included), no worker restarted, the resident memory of every
worker within `MAX_RSS_CHANGE` of its value after warm-up, and one audit record per answer in
a verified chain. Reported per minute: p50, p99, requests and errors, each worker's RSS and
the host's load average. Figures: ``test-artifacts/reliability/soak.json``.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import psutil
import pytest

from tests.reliability import report
from tests.reliability.test_faults_under_load import recorded_ids, worker_pids
from tests.reliability.test_load import ARTIFACTS, varied_bodies
from tests.reliability.traffic import SteadyTraffic, by_kind, capacity

SOAK_SECONDS = 600.0
WARMUP_SECONDS = 60.0
"""Traffic at the soak's rate before the memory baseline: a worker's RSS settles only once it
has answered the whole variety of requests (a quiet-host soak saw one worker grow 7 % in its
first minute, then stay within 0.1 MiB for nine)."""
SOAK_RATE = 150.0
SHARE_OF_CAPACITY = 0.8
MAX_RSS_CHANGE = 0.05
N_PATIENTS = 1000


def rss_mib(pids: set[int]) -> dict[int, float]:
    return {pid: round(psutil.Process(pid).memory_info().rss / 2**20, 1) for pid in sorted(pids)}


def per_minute(sent, started: float) -> list[dict]:
    minutes: dict[int, list] = {}
    for s in sent:
        minutes.setdefault(int((s.due - started) // 60), []).append(s)
    table = []
    for minute in sorted(minutes):
        latencies = [s.latency_ms for s in minutes[minute]]
        p50, p99 = np.percentile(latencies, [50, 99])
        errors = sum(s.status != 200 for s in minutes[minute])
        table.append(
            {
                "minute": minute + 1,
                "requests": len(latencies),
                "errors": errors,
                "p50_ms": round(float(p50), 1),
                "p99_ms": round(float(p99), 1),
            }
        )
    return table


def load_at(samples: list[dict], minute: int) -> str:
    """The load average sampled at the end of `minute` (1-based), if one was."""
    return f"{samples[minute - 1]['load_average_1min']:.1f}" if minute <= len(samples) else "–"


def soak_markdown(figures: dict) -> str:
    """The soak's figures as the document shows them: per minute, then memory and outcomes."""
    minutes = figures["per_minute"]
    loads = [sample["load_average_1min"] for sample in figures["samples"]] or None
    table = report.markdown_table(
        ["minute", *(str(m["minute"]) for m in minutes)],
        [
            ["requests", *(f"{m['requests']:,}" for m in minutes)],
            ["errors", *(str(m["errors"]) for m in minutes)],
            ["p50 ms", *(f"{m['p50_ms']:,.0f}" for m in minutes)],
            ["p99 ms", *(f"{m['p99_ms']:,.0f}" for m in minutes)],
            ["load average", *(load_at(figures["samples"], m["minute"]) for m in minutes)],
        ],
    )
    rss = figures["worker_rss_mib"]
    memory = "; ".join(
        f"{rss['start'][pid]} → {rss['end'][pid]} MiB ({change:+.1f} %)"
        for pid, change in figures["worker_rss_change_percent"].items()
    )
    return "\n\n".join(
        [
            report.measured_on(loads),
            f"{figures['seconds']:g} s at {figures['rate_due']} req/s due "
            f"({figures['achieved_rate']} achieved; capacity measured just before: "
            f"{figures['capacity_measured_per_s']}/s): {figures['requests']:,} requests, "
            f"{report.outcomes(figures['outcomes'])}.",
            table,
            f"Worker RSS after a {WARMUP_SECONDS:g} s warm-up at the same rate → end (limit "
            f"±{100 * MAX_RSS_CHANGE:g} %): {memory}.",
        ]
    )


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + WARMUP_SECONDS + 600)
def test_a_ten_minute_soak_answers_every_request_with_flat_worker_memory(serve):
    server = serve(workers=2)
    bodies = varied_bodies(N_PATIENTS, seed=7)
    measured = capacity(server.base, bodies, seconds=10.0)
    rate = min(SOAK_RATE, SHARE_OF_CAPACITY * measured)
    with SteadyTraffic(server.base, rate, bodies) as warm_up:
        time.sleep(WARMUP_SECONDS)
    assert by_kind(warm_up.sent) == {"200": len(warm_up.sent)}
    before = len(recorded_ids(server.audit_log))
    workers = worker_pids(server.pid)
    rss_start = rss_mib(workers)
    samples = []
    with SteadyTraffic(server.base, rate, bodies) as traffic:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < SOAK_SECONDS:
            time.sleep(min(60.0, SOAK_SECONDS - elapsed))
            samples.append(
                {
                    "at_s": round(time.monotonic() - started),
                    "worker_rss_mib": rss_mib(workers),
                    "load_average_1min": round(os.getloadavg()[0], 2),
                }
            )
    rss_end = rss_mib(workers)
    sent = traffic.sent
    minutes = per_minute(sent, traffic.started)
    answered = [s.prediction_id for s in sent if s.status == 200]
    changes = {pid: rss_end[pid] / rss_start[pid] - 1 for pid in workers}
    figures = {
        "seconds": SOAK_SECONDS,
        "capacity_measured_per_s": round(measured, 1),
        "rate_due": round(rate, 1),
        "achieved_rate": round(len(sent) / (traffic.stopped - traffic.started), 1),
        "requests": len(sent),
        "outcomes": by_kind(sent),
        "per_minute": minutes,
        "worker_rss_mib": {"start": rss_start, "end": rss_end},
        "worker_rss_change_percent": {pid: round(100 * c, 2) for pid, c in changes.items()},
        "samples": samples,
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "soak.json").write_text(json.dumps(figures, indent=2))
    print(f"\nsoak: {json.dumps(figures)}")
    report.write_block("soak", soak_markdown(figures))
    assert by_kind(sent) == {"200": len(sent)}
    assert worker_pids(server.pid) == workers, "no worker restarted"
    assert all(abs(change) <= MAX_RSS_CHANGE for change in changes.values()), changes
    assert sorted(recorded_ids(server.audit_log, before)) == sorted(answered)
