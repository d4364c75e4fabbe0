"""Faults injected while `bentoml serve` (2 workers) answers a steady load (``make reliability``).

- a worker killed with SIGKILL: the supervisor starts another; only requests in flight at
  the kill may fail, and only without an answer (the connection closes); the new worker is
  serving within `WORKER_BACK_SECONDS`; the audit chain verifies and every 200 answer has its
  record;
- the audit log unwritable for `AUDIT_FAULT_SECONDS` (writes fail as on a full disk): every
  prediction due meanwhile answers 503, the first one due after the repair answers 200, the
  chain verifies with `netprog audit verify` and holds exactly one record per 200 answer;
- slow clients (bodies trickled over seconds) and oversized bodies (1,000,001 bytes) beside
  the load: the slow ones are answered, the oversized ones refused with 413, the load untouched.

Repeated promotion and rollback under load is in test_hot_switch.py. The load is at most half
the capacity measured just before (`RATE` requests/s otherwise), with the host's load average
recorded beside the figures; they are printed and written to
``test-artifacts/reliability/faults-under-load-*.json``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from serving.audit import AuditLog, verify
from serving.settings import Settings
from tests.reliability import report
from tests.reliability.conftest import AUTH, TOKEN
from tests.reliability.test_faults import _fill_the_disk, _restore
from tests.reliability.test_load import ARTIFACTS, varied_bodies
from tests.reliability.traffic import Sent, SteadyTraffic, by_kind, capacity, timeline

pytestmark = pytest.mark.slow

NETPROG = Path(sys.executable).with_name("netprog")
RATE = 100.0
SHARE_OF_CAPACITY = 0.5
WORKER_BACK_SECONDS = 10.0
RESPAWN_MARGIN_SECONDS = 1.0
"""The supervisor creates a killed worker's replacement within its check delay
(`NETPROG_WORKER_CHECK_SECONDS`) and this margin for a busy host."""
AUDIT_FAULT_SECONDS = 5.0
IN_FLIGHT_MARGIN = 0.1
"""A request due this soon after the kill counts as in flight: it may already be on a
connection the killed worker held, which the client learns is closed only when it reads."""
READY_LINE = "Service NetPrognosis initialized"
N_SLOW, N_OVERSIZED = 6, 20


def steady_rate(base: str, bodies: list[dict]) -> tuple[float, float]:
    measured = capacity(base, bodies)
    return min(RATE, SHARE_OF_CAPACITY * measured), measured


def write_figures(name: str, figures: dict) -> None:
    figures["load_average_1min"] = round(os.getloadavg()[0], 2)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"faults-under-load-{name}.json").write_text(json.dumps(figures, indent=2))
    print(f"\n{name}: {json.dumps({k: v for k, v in figures.items() if k != 'timeline'})}")


def worker_pids(server_pid: int) -> set[int]:
    return set(worker_started_at(server_pid))


def worker_started_at(server_pid: int) -> dict[int, float]:
    """The server's worker processes and when each was created (`time.time()` seconds).

    Workers are the supervisor's own children running `_bentoml_impl.worker`; a process a
    worker forks carries the same command line, so grandchildren are not counted."""
    children = psutil.Process(server_pid).children(recursive=False)
    started = {}
    for child in children:
        try:
            if "_bentoml_impl.worker" in " ".join(child.cmdline()):
                started[child.pid] = child.create_time()
        except psutil.NoSuchProcess:
            continue
    return started


def recorded_ids(audit_log: Path, skip: int = 0) -> list[str]:
    """The prediction ids recorded in the audit log after its first `skip` records (those of
    the capacity measurement), once the whole chain is verified."""
    audit = AuditLog.from_settings(Settings(audit_log=audit_log), create_key=False)
    report = verify(audit)
    assert report.ok, report.summary()
    return [record["prediction_id"] for record in audit.records()][skip:]


@dataclass
class Restart:
    """How a killed worker came back: seconds from the kill until the supervisor created its
    replacement (`respawned_s`) and until the replacement logged that it serves (`back_s`)."""

    respawned_s: float | None = None
    back_s: float | None = None
    cpu_s: float | None = None
    """CPU seconds the replacement had used when it served: its start-up's cost whatever
    else the host runs (wall time is this divided by the share of a core it was given)."""


def kill_a_worker(server, workers: set[int]) -> tuple[int, float, Restart]:
    """SIGKILL the lowest-numbered worker; wait up to 60 s for its replacement to serve."""
    ready_before = server.output().count(READY_LINE)
    victim = min(workers)
    killed, killed_at = time.monotonic(), time.time()
    os.kill(victim, signal.SIGKILL)
    restart, replacement = Restart(), None
    while time.monotonic() - killed < 60:
        if replacement is None:
            new = {p: t for p, t in worker_started_at(server.pid).items() if p not in workers}
            if new:
                replacement = min(new, key=new.__getitem__)
                restart.respawned_s = round(max(0.0, new[replacement] - killed_at), 2)
        if server.output().count(READY_LINE) > ready_before:
            restart.back_s = round(time.monotonic() - killed, 2)
            restart.cpu_s = cpu_seconds(replacement)
            break
        time.sleep(0.05)
    return victim, killed, restart


def cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    with contextlib.suppress(psutil.Error):
        times = psutil.Process(pid).cpu_times()
        return round(times.user + times.system, 2)
    return None


def test_a_worker_killed_under_load_fails_only_requests_in_flight_and_is_back_within_10_s(serve):
    server = serve(workers=2)
    bodies = varied_bodies(200)
    rate, measured = steady_rate(server.base, bodies)
    before = len(recorded_ids(server.audit_log))
    workers = worker_pids(server.pid)
    assert len(workers) == 2, [p.cmdline() for p in psutil.Process(server.pid).children(True)]
    load_at_kill = []
    with SteadyTraffic(server.base, rate, bodies) as traffic:
        time.sleep(3)
        load_at_kill.append(os.getloadavg()[0])
        victim, killed, restart = kill_a_worker(server, workers)
        time.sleep(5)
        load_at_kill.append(os.getloadavg()[0])
    sent = traffic.sent

    def in_flight(s: Sent) -> bool:
        return s.due <= killed + IN_FLIGHT_MARGIN and s.ended >= killed

    failed = [s for s in sent if s.status != 200]
    answered = {s.prediction_id for s in sent if s.status == 200}
    recorded = recorded_ids(server.audit_log, before)
    verified = netprog_audit_verify(server.audit_log)
    figures = {
        "capacity_measured_per_s": round(measured, 1),
        "rate_due": round(rate, 1),
        "requests": len(sent),
        "outcomes": by_kind(sent),
        "in_flight_at_kill": sum(map(in_flight, sent)),
        "failed_in_flight": sum(map(in_flight, failed)),
        "supervisor_check_s": Settings().worker_check_seconds,
        "worker_respawned_s": restart.respawned_s,
        "worker_back_s": restart.back_s,
        "replacement_cpu_s_when_serving": restart.cpu_s,
        "workers_after": len(worker_pids(server.pid)),
        "audit_records": len(recorded),
        "answers_200": len(answered),
        "netprog_audit_verify": verified.stdout.strip(),
        "load_average_at_kill": [round(x, 2) for x in load_at_kill],
        "timeline": timeline(sent, killed),
    }
    write_figures("sigkill", figures)
    report.write_block("fault-sigkill", sigkill_markdown(figures))
    assert restart.respawned_s is not None
    assert restart.respawned_s <= Settings().worker_check_seconds + RESPAWN_MARGIN_SECONDS, (
        "the supervisor noticed the dead worker late: is its check delay installed "
        "(store.bentoml_compat.install_supervisor_check_delay)?"
    )
    assert restart.back_s is not None
    assert restart.back_s < WORKER_BACK_SECONDS, (
        f"the replacement served {restart.back_s} s after the kill, having used {restart.cpu_s} "
        f"CPU seconds to start, at a load average of {[round(x, 1) for x in load_at_kill]} "
        f"on {os.cpu_count()} CPUs"
    )
    assert len(worker_pids(server.pid) - {victim}) == 2
    assert all(in_flight(s) for s in failed), by_kind(failed)
    assert all(s.status == 0 for s in failed), "a failure is a closed connection, never a 5xx"
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert answered <= set(recorded)
    assert len(recorded) == len(set(recorded))
    assert len(recorded) - len(answered) <= len(failed), "records without an answer: in flight"


def verify_summary(output: str) -> str:
    """``OK, 115 record(s), chain intact`` from `netprog audit verify`'s first line."""
    return output.splitlines()[0].split(": ", 1)[-1] if output else "(no output)"


def load_cell(figures: dict) -> str:
    return f"{figures['rate_due']} req/s (capacity {figures['capacity_measured_per_s']})"


def sigkill_markdown(figures: dict) -> str:
    others = {k: v for k, v in figures["outcomes"].items() if k != "200"}
    return "\n\n".join(
        [
            report.measured_on(figures["load_average_at_kill"]),
            report.markdown_table(
                [
                    "load",
                    "requests",
                    "outcomes",
                    "failed (in flight)",
                    "supervisor check",
                    "replacement created",
                    "replacement serving",
                    "its start-up",
                    "audit records / 200 answers",
                    "`netprog audit verify`",
                ],
                [
                    [
                        load_cell(figures),
                        figures["requests"],
                        f"{figures['outcomes'].get('200', 0)} × 200"
                        + "".join(f", {n} × {kind}" for kind, n in others.items()),
                        f"{sum(others.values())} ({figures['failed_in_flight']} of "
                        f"{figures['in_flight_at_kill']} in flight)",
                        f"every {figures['supervisor_check_s']:g} s",
                        f"{figures['worker_respawned_s']} s after the kill",
                        f"{figures['worker_back_s']} s after the kill (bar: 10 s)",
                        f"{figures['replacement_cpu_s_when_serving']} CPU s",
                        f"{figures['audit_records']} / {figures['answers_200']}",
                        verify_summary(figures["netprog_audit_verify"]),
                    ]
                ],
            ),
        ]
    )


def netprog_audit_verify(audit_log: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NETPROG_AUDIT_LOG": str(audit_log)}
    return subprocess.run(
        [str(NETPROG), "audit", "verify"], env=env, capture_output=True, text=True, timeout=120
    )


def test_an_audit_log_unwritable_under_load_answers_503_then_resumes_with_the_chain_intact(serve):
    server = serve(workers=2)
    bodies = varied_bodies(200)
    rate, measured = steady_rate(server.base, bodies)
    before = len(recorded_ids(server.audit_log))
    with SteadyTraffic(server.base, rate, bodies) as traffic:
        time.sleep(3)
        broken = time.monotonic()
        _fill_the_disk(server.audit_log)
        time.sleep(AUDIT_FAULT_SECONDS)
        _restore(server.audit_log)
        repaired = time.monotonic()
        time.sleep(5)
    sent = traffic.sent
    during = [s for s in sent if broken + 0.2 <= s.due and s.ended <= repaired]
    after = [s for s in sent if s.due >= repaired]
    first_200 = min(s.due for s in after if s.status == 200)
    last_503 = max((s.due for s in sent if s.status == 503), default=broken)
    answered = [s.prediction_id for s in sent if s.status == 200]
    recorded = recorded_ids(server.audit_log, before)
    verified = netprog_audit_verify(server.audit_log)
    figures = {
        "capacity_measured_per_s": round(measured, 1),
        "rate_due": round(rate, 1),
        "fault_seconds": round(repaired - broken, 2),
        "requests": len(sent),
        "outcomes": by_kind(sent),
        "outcomes_during_fault": by_kind(during),
        "time_to_recover_s": round(first_200 - repaired, 3),
        "last_503_due_after_repair_s": round(last_503 - repaired, 3),
        "audit_records": len(recorded),
        "answers_200": len(answered),
        "netprog_audit_verify": verified.stdout.strip(),
        "timeline": timeline(sent, broken),
    }
    write_figures("audit-unwritable", figures)
    report.write_block("fault-audit-unwritable", audit_markdown(figures))
    assert set(by_kind(sent)) == {"200", "503"}
    assert during
    assert by_kind(during) == {"503": len(during)}
    assert by_kind(after) == {"200": len(after)}
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert sorted(recorded) == sorted(answered)


def audit_markdown(figures: dict) -> str:
    during = figures["outcomes_during_fault"]
    return "\n\n".join(
        [
            report.measured_on(figures["load_average_1min"]),
            report.markdown_table(
                [
                    "load",
                    "requests",
                    "due during the fault",
                    "first 200 after the repair",
                    "audit records / 200 answers",
                    "`netprog audit verify`",
                ],
                [
                    [
                        load_cell(figures),
                        f"{figures['requests']}: "
                        + ", ".join(f"{n} × {kind}" for kind, n in figures["outcomes"].items()),
                        ", ".join(f"{n} × {kind}" for kind, n in during.items())
                        + f" in {figures['fault_seconds']} s",
                        f"{figures['time_to_recover_s']} s after it",
                        f"{figures['audit_records']} / {figures['answers_200']}",
                        verify_summary(figures["netprog_audit_verify"]),
                    ]
                ],
            ),
        ]
    )


def slow_client(base: str, body: bytes, pause: float, pieces: int) -> int:
    """POST `body` in `pieces` separated by `pause` seconds; the status answered."""
    where = urlsplit(base)
    with socket.create_connection((where.hostname, where.port), timeout=60) as connection:
        head = (
            f"POST /v1/prognosis HTTP/1.1\r\nHost: {where.netloc}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        connection.sendall(head)
        size = -(-len(body) // pieces)
        for start in range(0, len(body), size):
            time.sleep(pause)
            connection.sendall(body[start : start + size])
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def oversized(base: str) -> int:
    body = b"{" + b" " * 999_999 + b"}"
    return httpx.post(f"{base}/v1/prognosis", content=body, headers=AUTH, timeout=60).status_code


def test_slow_clients_and_oversized_bodies_beside_the_load_leave_it_untouched(serve):
    server = serve(workers=2)
    bodies = varied_bodies(200)
    rate, measured = steady_rate(server.base, bodies)
    body = json.dumps(bodies[0]).encode()
    with (
        SteadyTraffic(server.base, rate, bodies) as traffic,
        concurrent.futures.ThreadPoolExecutor(N_SLOW + 2) as pool,
    ):
        time.sleep(2)
        slow = [pool.submit(slow_client, server.base, body, 0.5, 10) for _ in range(N_SLOW)]
        big = [pool.submit(oversized, server.base) for _ in range(N_OVERSIZED)]
        slow_statuses = [future.result() for future in slow]
        big_statuses = [future.result() for future in big]
        time.sleep(2)
    sent = traffic.sent
    write_figures(
        "slow-and-oversized",
        {
            "capacity_measured_per_s": round(measured, 1),
            "rate_due": round(rate, 1),
            "requests": len(sent),
            "outcomes": by_kind(sent),
            "slow_clients": {"n": N_SLOW, "seconds_each": 5.0, "statuses": slow_statuses},
            "oversized": {"n": N_OVERSIZED, "bytes": 1_000_001, "statuses": big_statuses},
        },
    )
    report.write_figures(
        "fault-slow-and-oversized",
        {
            "load beside them": f"{rate:.1f} req/s (capacity {measured:.1f})",
            "load requests": report.outcomes(by_kind(sent)),
            f"{N_SLOW} slow clients (10 pieces over 5 s each)": report.outcomes(
                dict(collections.Counter(map(str, slow_statuses)))
            ),
            f"{N_OVERSIZED} bodies of 1,000,001 bytes": report.outcomes(
                dict(collections.Counter(map(str, big_statuses)))
            ),
        },
    )
    assert by_kind(sent) == {"200": len(sent)}
    assert slow_statuses == [200] * N_SLOW
    assert big_statuses == [413] * N_OVERSIZED
