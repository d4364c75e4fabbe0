"""The service as deployed: `bentoml serve` in a subprocess on a loopback port."""

from __future__ import annotations

import time

import httpx
import pytest

from serving.settings import hash_token
from tests.served import served as run_served
from tests.serving.conftest import example

TOKEN = "served-test-token"
CANARIES = ("77.123456", "918273", "CANARY-xyz")


@pytest.fixture
def served(model_tag, tmp_path):
    """A running `bentoml serve`; yields (base URL, audit log, output file)."""
    audit_log = tmp_path / "audit" / "audit.jsonl"
    output = tmp_path / "server.log"
    env = {
        "NETPROG_MODEL_TAG": model_tag,
        "NETPROG_AUDIT_LOG": str(audit_log),
        "NETPROG_API_TOKEN_HASHES": hash_token(TOKEN),
    }
    with run_served(env, output) as server:
        yield server.base, audit_log, output


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
