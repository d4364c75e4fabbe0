"""Load: `bentoml serve` (2 workers) at a constant arrival rate, against its own single client.

Open-loop pacing: request *i* is due at ``start + i / rate`` whether or not earlier ones have
been answered, and its latency counts from that moment, so a stalled server cannot slow the
generator down and hide its own queueing (coordinated omission). Every answer must be 200;
the achieved rate (answers over the time from the first send to the last answer) must reach
`MIN_RATE`; p99 under load must stay within `P99_FACTOR` times the single-client p99 measured
in the same test; the resident memory of the server's process tree (main + workers) must grow
by less than `MAX_RSS_GROWTH` from after warm-up to the end; and the audit log must hold
exactly one record per answered prediction, in an intact chain.

A worker holds a bounded number of requests and refuses more at once with 429, instead of
queueing every request until callers time out (tested exactly, with slow batches). And an
answered request must leave nothing behind: BentoML's timeout kept every request's state for
300 s, which grew memory and the garbage collector's pauses under load.

The short run (`SHORT_SECONDS`) is in the default test run, the long one (`LONG_SECONDS`) in
``make reliability``. The paced load is sent from a process of its own: inside the whole
default suite, the pytest process's leftovers from earlier tests (threads, servers shutting
down) slowed an in-process generator (a p99 22 times the single-client one, against 1.6 times
when run alone). On a host already busy with other work the test would measure that work, so
there it fails, saying "not measured" and why, and records ``"measured": false`` in its
figures: a skipped load test would leave the suite green with nothing measured.
The figures are printed (``pytest -s``) and written to ``test-artifacts/reliability/``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from model.schema import Patient
from serving.audit import AuditLog, verify
from serving.settings import Settings
from tests.reliability import report as reliability_doc
from tests.reliability.conftest import AUTH

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "data" / "examples"
ARTIFACTS = ROOT / "test-artifacts" / "reliability"
ROUTE, BATCH_ROUTE = "/v1/prognosis", "/v1/prognosis/batch"
BATCH_SIZE = 500
RATE = 105.0
"""Requests per second sent: a little above `MIN_RATE`, so that the rate achieved over the
whole run, tail latency included, can reach it."""
MIN_RATE = 100.0
P99_FACTOR = 3.0
MAX_RSS_GROWTH = 0.10
SHORT_SECONDS, LONG_SECONDS = 20.0, 120.0
SINGLE_WARMUP, SINGLE_REQUESTS = 50, 300
RATE_WARMUP_SECONDS = 3.0
MAX_OTHER_CPU_PERCENT, BUSY_SAMPLE_SECONDS = 25.0, 3.0
"""The load (server and generator) takes about 70 % of two cores at `RATE`; it can share the
host with other work using a quarter of its CPUs, not more."""
N_BODIES = 200


def varied_bodies(n: int, seed: int = 0) -> list[dict]:
    """Valid requests: the example patients with ages, burdens and follow-up times spread out."""
    base = json.loads((EXAMPLES / "batch.json").read_text(encoding="utf-8"))["patients"]
    base += [
        json.loads(path.read_text(encoding="utf-8"))["patient"]
        for path in sorted(EXAMPLES.glob("*.json"))
        if path.name != "batch.json"
    ]
    rng = np.random.default_rng(seed)
    bodies = []
    for i in range(n):
        patient = dict(base[i % len(base)])
        patient["age_years"] = int(rng.integers(25, 90))
        patient["tumor_burden_percent"] = round(float(rng.uniform(1, 95)), 1)
        body: dict = {"patient": patient}
        if i % 3 == 0:
            body["months_since_treatment"] = round(float(rng.uniform(1, 6)), 1)
        Patient.model_validate(patient)
        bodies.append(body)
    return bodies


@dataclass
class Answers:
    """What a phase of requests got back."""

    latencies_ms: list[float]
    statuses: list[int]
    prediction_ids: list[str]
    elapsed_s: float = 0.0
    failures: collections.Counter = field(default_factory=collections.Counter)
    """Requests without an answer (status 0), by the client's exception."""

    @property
    def errors(self) -> int:
        return sum(status != 200 for status in self.statuses)

    @property
    def rate(self) -> float:
        return len(self.statuses) / self.elapsed_s

    def percentiles(self) -> tuple[float, float, float]:
        p50, p95, p99 = np.percentile(self.latencies_ms, [50, 95, 99])
        return float(p50), float(p95), float(p99)


def _record(answers: Answers, response: httpx.Response | Exception, latency_ms: float) -> None:
    if isinstance(response, Exception):
        answers.failures[type(response).__name__] += 1
    status = response.status_code if isinstance(response, httpx.Response) else 0
    answers.statuses.append(status)
    answers.latencies_ms.append(latency_ms)
    if status == 200:
        answers.prediction_ids.append(response.json()["prediction_id"])


def _write_figures(name: str, figures: dict) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(figures, indent=2), encoding="utf-8")


@contextlib.contextmanager
def collector_frozen() -> Iterator[None]:
    """Freeze this process's objects while it measures: a pytest process holds some 250,000,
    and each full garbage collection of them (0.1-0.2 s) would be timed as the service's
    latency."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def single_client(base: str, bodies: list[dict], warmup: int, n: int) -> Answers:
    """`warmup` then `n` sequential requests on one keep-alive connection; only `n` timed."""
    answers, warm = Answers([], [], []), Answers([], [], [])
    with collector_frozen(), httpx.Client(base_url=base, headers=AUTH, timeout=60) as client:
        for i in range(warmup + n):
            start = time.perf_counter()
            try:
                response = client.post(ROUTE, json=bodies[i % len(bodies)])
            except httpx.HTTPError as error:
                response = error
            _record(
                answers if i >= warmup else warm, response, 1000 * (time.perf_counter() - start)
            )
    answers.prediction_ids += warm.prediction_ids
    return answers


async def _paced(base: str, bodies: list[dict], rate: float, seconds: float) -> Answers:
    answers = Answers([], [], [])
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=60, limits=limits) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def one(i: int, due: float) -> None:
            try:
                response = await client.post(ROUTE, json=bodies[i % len(bodies)])
            except httpx.HTTPError as error:
                response = error
            _record(answers, response, 1000 * (loop.time() - due))

        tasks = []
        for i in range(round(rate * seconds)):
            due = start + i / rate
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        answers.elapsed_s = loop.time() - start
    return answers


def paced(base: str, bodies: list[dict], rate: float, seconds: float) -> Answers:
    """Requests due at a constant `rate` for `seconds` (open loop); latency from when due."""
    with collector_frozen():
        return asyncio.run(_paced(base, bodies, rate, seconds))


PACED_APART = """
import json, sys
from tests.reliability.test_load import paced, varied_bodies
base, n_bodies, rate, seconds = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:5])
answers = paced(base, varied_bodies(n_bodies), rate, seconds)
print(json.dumps({**vars(answers), "failures": dict(answers.failures)}))
"""


def paced_apart(base: str, n_bodies: int, rate: float, seconds: float) -> Answers:
    """`paced` with `varied_bodies(n_bodies)`, sent from a fresh Python process."""
    run = subprocess.run(
        [sys.executable, "-c", PACED_APART, base, str(n_bodies), str(rate), str(seconds)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    fields = json.loads(run.stdout.strip().splitlines()[-1])
    return Answers(**{**fields, "failures": collections.Counter(fields["failures"])})


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    root = psutil.Process(pid)
    total = 0
    for process in (root, *root.children(recursive=True)):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def fail_unless_the_host_is_quiet(name: str) -> None:
    """Fail, recording the load as not measured, when other processes already use more than
    `MAX_OTHER_CPU_PERCENT` of the CPUs: the test would measure their work, not the service's
    (a shared CI runner, a parallel test run). Not a skip: a skipped load test leaves the
    suite green although nothing was measured."""
    busy = psutil.cpu_percent(interval=BUSY_SAMPLE_SECONDS)
    if busy > MAX_OTHER_CPU_PERCENT:
        reason = (
            f"the host is busy: other processes used {busy:.0f} % of its "
            f"{psutil.cpu_count()} CPUs over {BUSY_SAMPLE_SECONDS:g} s before the load test, "
            f"more than the {MAX_OTHER_CPU_PERCENT:g} % it can share"
        )
        _write_figures(name, {"measured": False, "reason": reason})
        print(f"\nload: NOT MEASURED: {reason}")
        pytest.fail(f"load not measured: {reason}; run it again on a quiet host")


def run_load(serve, seconds: float) -> None:
    fail_unless_the_host_is_quiet(f"load-{seconds:g}s")
    server = serve(workers=2)
    bodies = varied_bodies(N_BODIES)
    single = single_client(server.base, bodies, SINGLE_WARMUP, SINGLE_REQUESTS)
    warm = paced(server.base, bodies, RATE, RATE_WARMUP_SECONDS)
    rss_start = tree_rss(server.pid)
    load = paced_apart(server.base, N_BODIES, RATE, seconds)
    rss_end = tree_rss(server.pid)
    growth = rss_end / rss_start - 1
    (s50, s95, s99), (l50, l95, l99) = single.percentiles(), load.percentiles()
    figures = {
        "measured": True,
        "seconds": seconds,
        "rate_due": RATE,
        "workers": 2,
        "requests": len(load.statuses),
        "errors": load.errors,
        "statuses": dict(collections.Counter(load.statuses)),
        "failures": dict(load.failures),
        "achieved_rate": round(load.rate, 1),
        "single_client_ms": {"p50": s50, "p95": s95, "p99": s99, "n": SINGLE_REQUESTS},
        "under_load_ms": {"p50": l50, "p95": l95, "p99": l99},
        "p99_ratio": round(l99 / s99, 2),
        "tree_rss_mib": {"start": rss_start / 2**20, "end": rss_end / 2**20},
        "rss_growth_percent": round(100 * growth, 2),
    }
    _write_figures(f"load-{seconds:g}s", figures)
    reliability_doc.write_figures(
        f"load-{seconds:g}s",
        {
            "rate due (open loop), workers": f"{RATE:g} req/s, 2",
            "requests": f"{len(load.statuses):,}: {reliability_doc.outcomes(figures['statuses'])}",
            "achieved": f"{load.rate:.1f} req/s",
            "single client p50 / p99": f"{s50:.1f} / {s99:.1f} ms",
            "under load p50 / p99": f"{l50:.1f} / {l99:.1f} ms",
            f"p99 under load over single-client p99 (bar {P99_FACTOR:g}x)": f"{l99 / s99:.2f}x",
            "server tree RSS after warm-up → end": (
                f"{rss_start / 2**20:.0f} → {rss_end / 2**20:.0f} MiB ({100 * growth:+.2f} %)"
            ),
        },
    )
    print(
        f"\nload: {seconds:g} s at {RATE:g} req/s due (open loop), 2 workers; "
        f"{len(load.statuses)} requests, {load.errors} errors "
        f"{dict(collections.Counter(load.statuses))} {dict(load.failures)}, achieved "
        f"{load.rate:.1f} req/s"
        f"\nlatency ms, single client ({SINGLE_REQUESTS} sequential): p50 {s50:.1f}, "
        f"p95 {s95:.1f}, p99 {s99:.1f}"
        f"\nlatency ms, under load (from when due): p50 {l50:.1f}, p95 {l95:.1f}, p99 {l99:.1f} "
        f"({l99 / s99:.2f}x single-client p99)"
        f"\nserver tree RSS: {rss_start / 2**20:.0f} MiB after warm-up, {rss_end / 2**20:.0f} "
        f"MiB at the end, growth {100 * growth:+.1f} %"
    )
    answered = single.prediction_ids + warm.prediction_ids + load.prediction_ids
    assert single.errors == warm.errors == load.errors == 0
    assert load.rate >= MIN_RATE
    assert l99 <= P99_FACTOR * s99, f"p99 {l99:.1f} ms under load, {s99:.1f} ms single-client"
    assert growth < MAX_RSS_GROWTH
    audit = AuditLog.from_settings(Settings(audit_log=server.audit_log), create_key=False)
    recorded = [record["prediction_id"] for record in audit.records()]
    assert len(recorded) == len(answered) == len(set(recorded))
    assert set(recorded) == set(answered)
    report = verify(audit)
    assert report.ok, report.summary()
    assert report.n_records == len(answered)


def test_a_busy_host_fails_the_load_test_as_not_measured_instead_of_skipping(
    monkeypatch, tmp_path, capsys
):
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval: 90.0)
    monkeypatch.setattr(sys.modules[__name__], "ARTIFACTS", tmp_path)
    try:
        fail_unless_the_host_is_quiet("load-20s")
    except pytest.skip.Exception as skipped:
        pytest.fail(f"a busy host skipped the load test instead of failing it: {skipped}")
    except pytest.fail.Exception as failed:
        message = str(failed)
    else:
        pytest.fail("a busy host let the load test run")
    assert message.startswith("load not measured: the host is busy")
    assert "load: NOT MEASURED: the host is busy: other processes used 90 %" in (
        capsys.readouterr().out
    )
    figures = json.loads((tmp_path / "load-20s.json").read_text(encoding="utf-8"))
    assert figures["measured"] is False
    assert figures["reason"].startswith("the host is busy")


def test_a_quiet_host_lets_the_load_test_run(monkeypatch, tmp_path):
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval: 5.0)
    monkeypatch.setattr(sys.modules[__name__], "ARTIFACTS", tmp_path)
    fail_unless_the_host_is_quiet("load-20s")
    assert not (tmp_path / "load-20s.json").exists()


@pytest.mark.xfail(
    strict=True,
    reason=(
        "open (issue 20): two workers on the 2-core machine do not yet hold 105 req/s "
        "(429s and a p99 far over 3x the single client's on a quiet host: docs/reliability.md, "
        "load-20s); strict, so the mark must go once it passes"
    ),
)
def test_two_workers_answer_100_requests_a_second_for_20_s_without_error_or_growth(serve):
    run_load(serve, SHORT_SECONDS)


@pytest.mark.slow
def test_two_workers_answer_100_requests_a_second_for_2_minutes_without_error_or_growth(serve):
    run_load(serve, LONG_SECONDS)


async def _concurrent_batches(base: str, n: int, size: int) -> list[tuple[int, float]]:
    body = {"patients": [b["patient"] for b in varied_bodies(size, seed=1)]}
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=300) as client:

        async def one() -> tuple[int, float]:
            start = time.perf_counter()
            response = await client.post(BATCH_ROUTE, json=body)
            return response.status_code, time.perf_counter() - start

        return await asyncio.gather(*(one() for _ in range(n)))


def test_requests_beyond_what_a_worker_holds_are_refused_at_once_with_429(serve):
    server = serve(workers=1, max_concurrency=2)

    answers = asyncio.run(_concurrent_batches(server.base, n=6, size=BATCH_SIZE))

    statuses = sorted(status for status, _ in answers)
    slowest_refusal = max(seconds for status, seconds in answers if status == 429)
    fastest_answer = min(seconds for status, seconds in answers if status == 200)
    print(
        f"\n6 concurrent batches of {BATCH_SIZE}, 1 worker holding 2: {statuses}; refused "
        f"within {slowest_refusal:.2f} s, answered after {fastest_answer:.2f} s or more"
    )
    assert statuses == [200, 200, 429, 429, 429, 429]
    assert slowest_refusal < fastest_answer
    audit = AuditLog.from_settings(Settings(audit_log=server.audit_log), create_key=False)
    assert sum(1 for _ in audit.records()) == 2 * BATCH_SIZE


LEFT_BEHIND_PROBE = """
import asyncio, gc, json, sys, warnings
warnings.simplefilter("ignore")
import httpx
import serving.service as service
service.NetPrognosis.config["metrics"] = {"enabled": False}
body, n = json.loads(sys.argv[1]), int(sys.argv[2])

async def main():
    app = service.NetPrognosis.to_asgi()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(n):
                assert (await client.post("/v1/prognosis", json=body)).status_code == 200
            gc.collect()
            objects = gc.get_objects()
            timers = [o for o in objects if isinstance(o, asyncio.TimerHandle)]
            print(json.dumps({
                "timers": sum(not timer.cancelled() for timer in timers),
                "spans": sum(type(o).__name__ == "_Span" for o in objects),
            }))

asyncio.run(main())
"""
"""Serves `n` requests in-process (every middleware of `bentoml serve`), then counts the
event loop's pending timers and the trace spans still alive."""


def test_an_answered_request_leaves_no_timer_or_trace_span_behind(reliability_model_tag, tmp_path):
    n = 200
    env = {
        **os.environ,
        "NETPROG_MODEL_TAG": reliability_model_tag,
        "NETPROG_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "NETPROG_AUDIT_FSYNC": "false",
        "BENTOML_DO_NOT_TRACK": "true",
    }
    body = json.dumps(varied_bodies(1)[0])
    probe = subprocess.run(
        [sys.executable, "-c", LEFT_BEHIND_PROBE, body, str(n)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    left = json.loads(probe.stdout.strip().splitlines()[-1])
    print(f"\nafter {n} requests: {left['timers']} timers pending, {left['spans']} spans alive")
    assert left["timers"] < 5
    assert left["spans"] < 5
