"""The service as deployed: `bentoml serve` in a subprocess on a loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from serving.settings import hash_token
from tests.serving.conftest import example

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "served-test-token"
CANARIES = ("77.123456", "918273", "CANARY-xyz")
STARTUP_SECONDS = 120


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def served(model_tag, tmp_path):
    """A running `bentoml serve`; yields (base URL, audit log, output file)."""
    port = free_port()
    audit_log = tmp_path / "audit" / "audit.jsonl"
    output = tmp_path / "server.log"
    env = {
        **os.environ,
        "BENTOML_DO_NOT_TRACK": "true",
        "NETPROG_MODEL_TAG": model_tag,
        "NETPROG_AUDIT_LOG": str(audit_log),
        "NETPROG_API_TOKEN_HASHES": hash_token(TOKEN),
    }
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:NetPrognosis"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--working-dir", str(ROOT)]
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, output.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the server did not become ready in time"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield base, audit_log, output
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.mark.slow
def test_bentoml_serve_answers_authenticated_requests_and_never_logs_patient_values(served):
    base, audit_log, output = served
    auth = {"authorization": f"Bearer {TOKEN}"}
    patient = example("g2_pancreas_sirt.json")["patient"]
    valid = {"patient": {**patient, "tumor_burden_percent": 77.123456}}
    invalid = {"patient": {**valid["patient"], "age_years": 918273, "primary_site": "CANARY-xyz"}}

    with httpx.Client(base_url=base, timeout=60) as client:
        answered = client.post("/v1/prognosis", json=valid, headers=auth)
        rejected = client.post("/v1/prognosis", json=invalid, headers=auth)
        unauthenticated = client.post("/v1/prognosis", json=valid)
        card = client.get("/v1/model", headers=auth)
        metrics = client.get("/metrics")
        live = client.get("/livez")

    assert answered.status_code == 200
    assert answered.json()["hpfs"]["modality"] == "SIRT"
    assert rejected.status_code == 400
    assert unauthenticated.status_code == 401
    assert card.status_code == 200
    assert metrics.status_code == 200
    assert "bentoml_service_request_total" in metrics.text
    assert live.status_code == 200
    [record] = audit_log.read_text(encoding="utf-8").splitlines()
    assert answered.json()["prediction_id"] in record
    time.sleep(1)  # let the workers flush their logs
    logged = output.read_text(errors="replace")
    assert "/v1/prognosis" in logged  # the access log is there ...
    for canary in CANARIES:  # ... and no patient value is
        assert canary not in logged
        assert canary not in record
