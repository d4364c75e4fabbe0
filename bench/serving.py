"""Benchmark of the HTTP service as deployed: `bentoml serve` on loopback, against a floor.

Starts `bentoml serve serving.service:NetPrognosis` (bearer auth on, audit log with fsync on,
as in production) and, one after the other so that they do not share the CPUs,
`bentoml serve bench.trivial_service:TrivialFloor`, a BentoML service that only echoes a small
validated body: the floor of what any BentoML endpoint costs on this machine. Measures

- single-client latency of `POST /v1/prognosis` (p50/p95/p99 of >= 500 requests after warm-up),
- throughput at 1, 4, 8 and 16 concurrent clients (httpx, async, keep-alive; each level bounded
  by a request count and a duration), with the number of errors,
- batch throughput of `POST /v1/prognosis/batch` (patients per second, batches of 100 and 1,000),

prints them and writes the "serving" section of ``bench/RESULTS.md`` and its figures to
``bench/serving.json``. The model is fitted on
the synthetic default cohort (2,000 patients, 20 bootstrap members) in a temporary
`BENTOML_HOME`, unless `--model-tag` names one in the current store.

Run from the repository root::

    .venv/bin/python -m bench.serving [--requests 500] [--duration 10] [--workers 2]

Two workers by default: one BentoML worker answers one prediction at a time, and the
reference machine has two cores (`NETPROG_WORKERS` sets it for the service).

Targets: ``bench.common.TARGETS`` (``serving_*``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench.common import (
    SECTION_TITLES,
    command_line,
    environment,
    environment_lines,
    markdown_table,
    target_lines,
    write_section,
)
from tests.served import served

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "data" / "examples"
SECTION = "serving"
CONCURRENCY = (1, 4, 8, 16)
BATCH_SIZES = (100, 1000)
PACKAGES = ("bentoml", "uvicorn", "starlette", "pydantic", "httpx", "numpy", "scikit-survival")
STARTUP_SECONDS = 180
COMPUTE_CORES = 2
"""The reference machine's cores: the compute-bound limit is this over one prognosis's time."""


def _patients(n: int, seed: int = 0) -> list[dict]:
    """Varied valid patients: the example patients with ages and burdens spread out."""
    base = json.loads((EXAMPLES / "batch.json").read_text(encoding="utf-8"))["patients"]
    rng = np.random.default_rng(seed)
    patients = []
    for i in range(n):
        patient = dict(base[i % len(base)])
        patient["age_years"] = int(rng.integers(30, 86))
        patient["tumor_burden_percent"] = round(float(rng.uniform(1, 95)), 1)
        patients.append(patient)
    return patients


def _fit_default_model(n_patients: int, n_bootstrap: int) -> str:
    from store import registry
    from training.fit import fit_bundle
    from training.synthetic import simulate_cohort

    cohort = simulate_cohort(n_patients, seed=0)
    return registry.save_bundle(fit_bundle(cohort, seed=0, n_bootstrap=n_bootstrap, n_jobs=-1))


def _in_process_ms(tag: str, bodies: list[dict], calls: int, warmup: int) -> float:
    """Median milliseconds of `Predictor.prognosis` on the served model, in this process,
    built as the service builds it (with the procedures' published harms)."""
    from model.predictor import Predictor
    from model.schema import Patient
    from serving.harms import load_procedure_harms
    from serving.loading import load_verified

    _, bundle = load_verified(tag)
    predictor = Predictor(bundle, procedure_harms=load_procedure_harms())
    patients = [Patient(**body["patient"]) for body in bodies]
    times = []
    for i in range(warmup + calls):
        start = time.perf_counter()
        predictor.prognosis(patients[i % len(patients)])
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _latency(base: str, route: str, bodies: list[dict], headers: dict, n: int, warmup: int):
    """Sequential requests on one keep-alive connection: latencies in ms and error count."""
    times, errors = [], 0
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for i in range(warmup + n):
            body = bodies[i % len(bodies)]
            start = time.perf_counter()
            response = client.post(route, json=body)
            elapsed = (time.perf_counter() - start) * 1000
            if response.status_code != 200:
                errors += 1
            elif i >= warmup:
                times.append(elapsed)
    return np.array(times), errors


async def _load(base, route, bodies, headers, clients: int, max_requests: int, duration: float):
    """`clients` concurrent loops until `max_requests` or `duration`: (completed, errors, s)."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    counter = {"sent": 0, "ok": 0, "errors": 0}
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=60, limits=limits
    ) as client:
        for body in bodies[: clients * 2]:  # warm every connection
            await client.post(route, json=body)
        start = time.perf_counter()
        deadline = start + duration

        async def worker() -> None:
            while counter["sent"] < max_requests and time.perf_counter() < deadline:
                body = bodies[counter["sent"] % len(bodies)]
                counter["sent"] += 1
                try:
                    response = await client.post(route, json=body)
                except httpx.HTTPError:
                    counter["errors"] += 1
                    continue
                counter["ok" if response.status_code == 200 else "errors"] += 1

        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return counter["ok"], counter["errors"], elapsed


def _percentiles(times: np.ndarray) -> tuple[float, float, float]:
    p50, p95, p99 = np.percentile(times, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def _measure(base, route, bodies, headers, args) -> dict:
    times, errors = _latency(base, route, bodies, headers, args.requests, args.warmup)
    if not len(times):
        raise RuntimeError(f"every request to {base}{route} failed")
    result = {"latency": _percentiles(times), "latency_errors": errors, "throughput": {}}
    for clients in CONCURRENCY:
        ok, failed, elapsed = asyncio.run(
            _load(base, route, bodies, headers, clients, args.max_requests, args.duration)
        )
        result["throughput"][clients] = (ok / elapsed, ok, failed)
    return result


def _batch(base: str, headers: dict, repeats: int) -> dict[int, float]:
    rates = {}
    with httpx.Client(base_url=base, headers=headers, timeout=300) as client:
        for size in BATCH_SIZES:
            body = {"patients": _patients(size, seed=size)}
            client.post("/v1/prognosis/batch", json=body)  # warm-up
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                response = client.post("/v1/prognosis/batch", json=body)
                seconds.append(time.perf_counter() - start)
                if response.status_code != 200:
                    raise RuntimeError(f"batch of {size} answered {response.status_code}")
            rates[size] = size / statistics.median(seconds)
    return rates


def target_values(real: dict, floor: dict | None = None, in_process_ms: float | None = None):
    """The figures the serving targets judge."""
    p50, _, p99 = real["latency"]
    rate, _, errors = real["throughput"][8]
    values = {
        "serving_p50_ms": p50,
        "serving_p99_ms": p99,
        "serving_rps_8": rate,
        "serving_errors_8": float(errors),
    }
    if floor is not None and in_process_ms is not None:
        values["serving_overhead_ratio"] = (p50 - in_process_ms) / floor["latency"][0]
        values["serving_rps_8_share"] = rate / (COMPUTE_CORES * 1000.0 / in_process_ms)
    return values


def _report(real: dict, floor: dict, batch: dict, args, env: dict, tag: str, in_ms: float) -> str:
    (p50, p95, p99), (f50, f95, f99) = real["latency"], floor["latency"]
    limit = COMPUTE_CORES * 1000.0 / in_ms
    model_text = (
        "from the current model store"
        if args.model_tag
        else f"fitted by this run on {args.patients} synthetic patients, seed 0, "
        f"{args.bootstrap} bootstrap members"
    )
    lines = [f"## {SECTION_TITLES[SECTION]}", ""]
    lines += environment_lines(env, command_line())
    lines += [
        f"- server: `bentoml serve` on 127.0.0.1, {args.workers} worker(s); NetPrognosis with "
        "bearer auth and the audit log (fsync on) as in production; model "
        f"`{tag}` ({model_text}); the load generator (httpx, async) runs on the same machine "
        "and shares its CPUs",
        "- floor: `bench/trivial_service.py`, a BentoML endpoint that echoes a small validated "
        "body, served the same way, measured in the same run",
        "",
        f"Single client, {args.requests} requests after {args.warmup} warm-up, milliseconds:",
        "",
    ]
    lines += markdown_table(
        ["route", "p50", "p95", "p99", "errors"],
        [
            [
                "`POST /v1/prognosis`",
                f"{p50:.1f}",
                f"{p95:.1f}",
                f"{p99:.1f}",
                real["latency_errors"],
            ],
            [
                "floor `POST /v1/ping`",
                f"{f50:.1f}",
                f"{f95:.1f}",
                f"{f99:.1f}",
                floor["latency_errors"],
            ],
            ["ratio", f"{p50 / f50:.1f}x", f"{p95 / f95:.1f}x", f"{p99 / f99:.1f}x", ""],
        ],
    )
    lines += [
        "",
        f"In-process `Predictor.prognosis` on the same model and patients, same run (median of "
        f"{args.requests} after {args.warmup} warm-up, before the servers start): "
        f"{in_ms:.2f} ms; the service's own overhead (p50 minus that) {p50 - in_ms:.2f} ms = "
        f"{(p50 - in_ms) / f50:.2f}x the floor's p50; compute-bound limit at "
        f"{COMPUTE_CORES} cores: {limit:.0f} req/s.",
    ]
    lines += [
        "",
        f"Throughput, requests/s (each level: up to {args.max_requests} requests or "
        f"{args.duration:g} s):",
        "",
    ]
    rows = []
    for clients in CONCURRENCY:
        rate, ok, failed = real["throughput"][clients]
        floor_rate, _, floor_failed = floor["throughput"][clients]
        rows.append(
            [
                clients,
                f"{rate:.0f}",
                ok,
                failed,
                f"{floor_rate:.0f}",
                floor_failed,
                f"{rate / floor_rate:.2f}",
            ]
        )
    lines += markdown_table(
        [
            "clients",
            "prognosis req/s",
            "answered",
            "errors",
            "floor req/s",
            "floor errors",
            "ratio to floor",
        ],
        rows,
    )
    lines += [
        "",
        "Batch throughput (`POST /v1/prognosis/batch`, median of "
        f"{args.batch_repeats} after a warm-up):",
        "",
    ]
    lines += markdown_table(
        ["patients per batch", "patients/s"], [[n, f"{r:.0f}"] for n, r in batch.items()]
    )
    lines += ["", *target_lines(SECTION, target_values(real, floor, in_ms))]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=3000)
    parser.add_argument("--batch-repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--bootstrap", type=int, default=20)
    parser.add_argument("--model-tag", help="serve this model of the current store instead")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="netprog-bench-serving-") as scratch:
        scratch_path = Path(scratch)
        env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true"}
        if args.model_tag:
            tag = args.model_tag
        else:
            env["BENTOML_HOME"] = os.environ["BENTOML_HOME"] = str(scratch_path / "bentoml")
            tag = _fit_default_model(args.patients, args.bootstrap)
        token = secrets.token_urlsafe(32)
        env.update(
            NETPROG_MODEL_TAG=tag,
            NETPROG_AUDIT_LOG=str(scratch_path / "audit" / "audit.jsonl"),
            NETPROG_API_TOKEN_HASHES=hashlib.sha256(token.encode()).hexdigest(),
            NETPROG_WORKERS=str(args.workers),
            BENTOML_CONFIG_OPTIONS=f"services.TrivialFloor.workers={args.workers}",
        )
        headers = {"authorization": f"Bearer {token}"}
        log_path = scratch_path / "servers.log"
        bodies = [{"patient": p} for p in _patients(64)]
        in_ms = _in_process_ms(tag, bodies, args.requests, args.warmup)
        with served(env, log_path, startup_seconds=STARTUP_SECONDS) as server:
            base = server.base
            real = _measure(base, "/v1/prognosis", bodies, headers, args)
            batch = _batch(base, headers, args.batch_repeats)
            audited = (scratch_path / "audit" / "audit.jsonl").read_bytes().count(b"\n")
        pings = [{"message": "ping", "value": float(i)} for i in range(64)]
        floor_target = "bench.trivial_service:TrivialFloor"
        with served(env, log_path, target=floor_target, startup_seconds=STARTUP_SECONDS) as server:
            floor = _measure(server.base, "/v1/ping", pings, {}, args)
    env = environment(PACKAGES)
    report = _report(real, floor, batch, args, env, tag, in_ms)
    sys.stdout.write(report + f"\n({audited} audit records written during the run)\n")
    if not args.no_write:
        figures = {
            "environment": env,
            "settings": vars(args),
            "model_tag": tag,
            "prognosis": _figures(real),
            "floor": _figures(floor),
            "batch_patients_per_s": batch,
            "audit_records": audited,
            "in_process_ms": in_ms,
            "targets": target_values(real, floor, in_ms),
        }
        write_section(SECTION, report, figures)


def _figures(measured: dict) -> dict:
    p50, p95, p99 = measured["latency"]
    return {
        "latency_ms": {"p50": p50, "p95": p95, "p99": p99},
        "latency_errors": measured["latency_errors"],
        "throughput": {
            clients: {"requests_per_s": rate, "answered": ok, "errors": failed}
            for clients, (rate, ok, failed) in measured["throughput"].items()
        },
    }


if __name__ == "__main__":
    main()
