"""The OpenAPI document (/docs.json) describes every route with examples that are true."""

from __future__ import annotations

import pytest

from serving.schemas import (
    BatchRequest,
    ErrorResponse,
    ModelCard,
    Prognosis,
    PrognosisList,
    PrognosisRequest,
)
from tests.serving.conftest import example

ROUTES = {
    ("/v1/prognosis", "post"): (PrognosisRequest, Prognosis),
    ("/v1/prognosis/batch", "post"): (BatchRequest, PrognosisList),
    ("/v1/model", "get"): (None, ModelCard),
}


@pytest.fixture(scope="module")
def document(client) -> dict:
    response = client.get("/docs.json")
    assert response.status_code == 200
    return response.json()


def resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def media_example(document: dict, media: dict):
    if "example" in media:
        return media["example"]
    return resolve(document, media["schema"])["example"]


@pytest.mark.parametrize(("path", "method"), sorted(ROUTES))
def test_every_route_has_a_request_and_response_example_that_validates(document, path, method):
    request_model, response_model = ROUTES[path, method]
    operation = document["paths"][path][method]

    if request_model is not None:
        request_example = media_example(
            document, operation["requestBody"]["content"]["application/json"]
        )
        request_model.model_validate(request_example)
    response_example = media_example(
        document, operation["responses"]["200"]["content"]["application/json"]
    )
    response_model.model_validate(response_example)


@pytest.mark.parametrize(("path", "method"), sorted(ROUTES))
def test_every_route_documents_its_errors_with_examples_and_the_bearer_scheme(
    document, path, method
):
    operation = document["paths"][path][method]
    expected = (
        {"400", "401", "403", "413", "415", "422", "503"} if method == "post" else {"401", "403"}
    )

    assert expected <= set(operation["responses"])
    for code in expected:
        media = operation["responses"][code]["content"]["application/json"]
        ErrorResponse.model_validate(media["example"])
    assert {"bearerAuth": []} in operation["security"]
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_the_documented_request_example_is_an_example_patient_file(document):
    operation = document["paths"]["/v1/prognosis"]["post"]
    documented = media_example(document, operation["requestBody"]["content"]["application/json"])

    assert documented == example("g2_pancreas_sirt.json")


def test_the_batch_limits_are_in_the_schema(document):
    schema = document["paths"]["/v1/prognosis/batch"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]

    patients = schema["properties"]["patients"]
    assert (patients["minItems"], patients["maxItems"]) == (1, 1000)


def test_patient_fields_carry_their_ranges_and_descriptions(document):
    patient = document["components"]["schemas"]["Patient"]

    assert patient["properties"]["age_years"]["minimum"] == 18
    assert patient["properties"]["age_years"]["maximum"] == 100
    assert patient["additionalProperties"] is False
    assert "Ki-67" in patient["properties"]["ki67_percent"]["description"]


def test_the_document_names_the_api_version_and_the_synthetic_data_warning(document):
    assert document["info"]["version"] == "v1"
    assert "not for clinical use" in document["info"]["description"]


def test_the_example_response_holds_every_field_a_real_response_holds(client, document):
    real = client.post("/v1/prognosis", json=example("g2_pancreas_sirt.json")).json()
    operation = document["paths"]["/v1/prognosis"]["post"]
    documented = media_example(
        document, operation["responses"]["200"]["content"]["application/json"]
    )

    assert set(documented) == set(real)
    assert set(documented["hpfs"]) == set(real["hpfs"])
    assert set(documented["hpfs"]["modalities"][0]) == set(real["hpfs"]["modalities"][0])


def test_every_route_the_concurrency_bound_covers_documents_429_and_every_audited_route_503(
    document,
):
    from serving.openapi import NOT_BOUNDED_ROUTES

    audited = {
        "/v1/prognosis",
        "/v1/prognosis/batch",
        "/v1/fhir/prognosis",
        "/cds-services/{service_id}",
        "/cds-services/{service_id}/feedback",
    }
    documented = 0
    for path, item in document["paths"].items():
        for operation in item.values():
            responses = operation["responses"]
            assert ("429" in responses) is (path not in NOT_BOUNDED_ROUTES), path
            assert ("503" in responses) is (path in audited), path
            documented += "429" in responses
            if "429" in responses:
                example = responses["429"]["content"]["application/json"]["example"]
                assert example == {"error": "Too many requests"}
    assert documented == 7
