"""Every refusal on the FHIR route is an OperationOutcome valid against the R4 JSON Schema, and
patient records up to 10 MiB are accepted where other routes keep their 1 MB limit."""

from __future__ import annotations

import pytest

from serving.fhir_refusals import body_limit, refusal_outcome
from serving.settings import hash_token
from tests.serving.fhir_schema import assert_fhir
from tests.serving.test_fhir import bundle, without

ROUTE = "/v1/fhir/prognosis"
TOKEN = "fhir-refusal-token"
JSON = {"content-type": "application/json"}
RECORD_LIMIT = 10 * 1024 * 1024


async def in_chunks(body: bytes, size: int):
    for start in range(0, len(body), size):
        yield body[start : start + size]


def outcome_of(response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = assert_fhir(response.json())
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/fhir/prognosis", RECORD_LIMIT),
        ("/cds-services/net-embolotherapy-prognosis", RECORD_LIMIT),
        ("/v1/prognosis", 1_000_000),
        ("/v1/prognosis/batch", 1_000_000),
        ("/cds-services", 1_000_000),
    ],
)
def test_record_routes_take_ten_mebibytes_and_the_others_one_megabyte(path, expected):
    assert body_limit(path, max_body_bytes=1_000_000, max_record_body_bytes=RECORD_LIMIT) == (
        expected
    )


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 415, 422, 429, 500, 503, 504])
def test_each_refusal_outcome_is_valid_fhir(status):
    outcome = assert_fhir(refusal_outcome(status, "what must hold"))

    assert outcome["issue"][0]["diagnostics"] == "what must hold"


def test_an_eleven_megabyte_record_is_413_as_an_operation_outcome_and_not_audited(make_client):
    client = make_client()
    body = b'{"resourceType": "Bundle", "type": "collection", "entry": []' + b" " * 11_000_000
    body += b"}"

    declared = client.post(ROUTE, content=body, headers=JSON)
    chunked = client.post(ROUTE, content=in_chunks(body, 1_000_000), headers=JSON)

    for response in (declared, chunked):
        [issue] = outcome_of(response, 413)["issue"]
        assert issue["code"] == "too-costly"
        assert f"at most {RECORD_LIMIT} bytes" in issue["diagnostics"]
    assert not client.audit_log.exists() or client.audit_log.read_text() == ""


def test_the_json_api_keeps_its_one_megabyte_limit_and_json_errors(make_client):
    client = make_client()
    body = b"[" + b" " * 1_000_000 + b"]"

    response = client.post("/v1/prognosis", content=body, headers=JSON)

    assert response.status_code == 413
    assert "at most 1000000 bytes" in response.json()["error"]


def test_a_wrong_media_type_is_415_as_an_operation_outcome(make_client):
    response = make_client().post(
        ROUTE, content=b"<Bundle/>", headers={"content-type": "application/fhir+xml"}
    )

    assert outcome_of(response, 415)["issue"][0]["code"] == "not-supported"


def test_missing_and_wrong_tokens_are_401_and_403_outcomes_with_their_challenge(make_client):
    client = make_client(api_token_hashes=hash_token(TOKEN))
    record = bundle("g2_pancreas_sirt.bundle.json")

    missing = client.post(ROUTE, json=record)
    wrong = client.post(ROUTE, json=record, headers={"Authorization": "Bearer not-it"})
    accepted = client.post(ROUTE, json=record, headers={"Authorization": f"Bearer {TOKEN}"})

    assert outcome_of(missing, 401)["issue"][0]["code"] == "login"
    assert missing.headers["www-authenticate"] == 'Bearer realm="netprog"'
    assert outcome_of(wrong, 403)["issue"][0]["code"] == "forbidden"
    assert accepted.status_code == 200


def test_invalid_and_incomplete_records_are_valid_operation_outcomes(make_client):
    client = make_client()
    invalid = client.post(ROUTE, content=b"{not json", headers=JSON)
    not_a_bundle = client.post(ROUTE, json={"resourceType": "Patient"})
    # Without the NET diagnosis there is no primary site, which is never imputed (an absent
    # burden would be: issue 22).
    incomplete = client.post(
        ROUTE, json=without(bundle("g2_pancreas_sirt.bundle.json"), "net-diagnosis")
    )
    deep = client.post(ROUTE, content=b"[" * 100 + b"]" * 100, headers=JSON)

    outcome_of(invalid, 400)
    outcome_of(not_a_bundle, 400)
    outcome_of(deep, 400)
    assert len(outcome_of(incomplete, 422)["issue"]) >= 1
