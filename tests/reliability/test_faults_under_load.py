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

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from serving.audit import AuditLog, verify
from serving.settings import Settings
from tests.reliability.conftest import AUTH, TOKEN
from tests.reliability.test_faults import _fill_the_disk, _restore
from tests.reliability.test_load import ARTIFACTS, varied_bodies
from tests.reliability.traffic import Sent, SteadyTraffic, by_kind, capacity, timeline

pytestmark = pytest.mark.slow

NETPROG = Path(sys.executable).with_name("netprog")
RATE = 100.0
SHARE_OF_CAPACITY = 0.5
WORKER_BACK_SECONDS = 10.0
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
    children = psutil.Process(server_pid).children(recursive=True)
    pids = set()
    for child in children:
        try:
            if "_bentoml_impl.worker" in " ".join(child.cmdline()):
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return pids


def recorded_ids(audit_log: Path, skip: int = 0) -> list[str]:
    """The prediction ids recorded in the audit log after its first `skip` records (those of
    the capacity measurement), once the whole chain is verified."""
    audit = AuditLog.from_settings(Settings(audit_log=audit_log), create_key=False)
    report = verify(audit)
    assert report.ok, report.summary()
    return [record["prediction_id"] for record in audit.records()][skip:]


def test_a_worker_killed_under_load_fails_only_requests_in_flight_and_is_back_within_10_s(serve):
    server = serve(workers=2)
    bodies = varied_bodies(200)
    rate, measured = steady_rate(server.base, bodies)
    before = len(recorded_ids(server.audit_log))
    workers = worker_pids(server.pid)
    assert len(workers) == 2, [p.cmdline() for p in psutil.Process(server.pid).children(True)]
    with SteadyTraffic(server.base, rate, bodies) as traffic:
        time.sleep(3)
        ready_before = server.output().count(READY_LINE)
        victim = min(workers)
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        back = None
        while time.monotonic() - killed < 60:
            if server.output().count(READY_LINE) > ready_before:
                back = time.monotonic() - killed
                break
            time.sleep(0.05)
        time.sleep(5)
    sent = traffic.sent

    def in_flight(s: Sent) -> bool:
        return s.due <= killed + IN_FLIGHT_MARGIN and s.ended >= killed

    failed = [s for s in sent if s.status != 200]
    answered = {s.prediction_id for s in sent if s.status == 200}
    recorded = recorded_ids(server.audit_log, before)
    write_figures(
        "sigkill",
        {
            "capacity_measured_per_s": round(measured, 1),
            "rate_due": round(rate, 1),
            "requests": len(sent),
            "outcomes": by_kind(sent),
            "in_flight_at_kill": sum(map(in_flight, sent)),
            "failed_in_flight": sum(map(in_flight, failed)),
            "worker_back_s": None if back is None else round(back, 2),
            "workers_after": len(worker_pids(server.pid)),
            "audit_records": len(recorded),
            "answers_200": len(answered),
            "timeline": timeline(sent, killed),
        },
    )
    assert back is not None
    assert back < WORKER_BACK_SECONDS
    assert len(worker_pids(server.pid) - {victim}) == 2
    assert all(in_flight(s) for s in failed), by_kind(failed)
    assert all(s.status == 0 for s in failed), "a failure is a closed connection, never a 5xx"
    assert answered <= set(recorded)
    assert len(recorded) == len(set(recorded))
    assert len(recorded) - len(answered) <= len(failed), "records without an answer: in flight"


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
    write_figures(
        "audit-unwritable",
        {
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
        },
    )
    assert set(by_kind(sent)) == {"200", "503"}
    assert during
    assert by_kind(during) == {"503": len(during)}
    assert by_kind(after) == {"200": len(after)}
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert sorted(recorded) == sorted(answered)


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
    assert by_kind(sent) == {"200": len(sent)}
    assert slow_statuses == [200] * N_SLOW
    assert big_statuses == [413] * N_OVERSIZED
