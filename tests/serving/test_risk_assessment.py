"""FHIR-native answers: RiskAssessment Bundles that validate against HL7's R4 JSON Schema and
carry exactly the JSON answer's probabilities, and the CDS card's suggestion to file them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from serving.risk_assessment import (
    PREDICTION_MONTHS,
    basis_references,
    prognosis_bundle,
    risk_assessment_suggestion,
    subject_reference,
    wants_fhir,
)
from tests.serving.fhir_schema import assert_fhir, fhir_errors
from tests.serving.test_fhir import EXPECTED, bundle

ROOT = Path(__file__).resolve().parents[2]
ROUTE = "/v1/fhir/prognosis"
FHIR_ACCEPT = {"Accept": "application/fhir+json"}
EXAMPLE_ANSWER = json.loads((ROOT / "serving/examples/prognosis_response.json").read_text())
PROVENANCE = {
    "age_years": {"source": "derived", "resourceType": "Patient", "id": "p1"},
    "primary_site": {"source": "resource", "resourceType": "Condition", "id": "net"},
    "ki67_percent": {"source": "resource", "resourceType": "Observation", "id": "ki67"},
    "sex": {"source": "resource", "resourceType": "Patient", "id": "p1"},
    "extrahepatic_metastases": {"source": "default", "note": "none coded"},
}
OUTCOMES = {
    "hpfs": "alive-without-hepatic-progression",
    "os": "alive",
    "hepatic_progression": "hepatic-progression",
}


def probabilities_by_outcome(document: dict) -> dict[str, dict[str, float]]:
    found = {}
    for entry in document["entry"]:
        for prediction in entry["resource"]["prediction"]:
            month = str(prediction["whenRange"]["high"]["value"])
            code = prediction["outcome"]["coding"][0]["code"]
            found.setdefault(code, {})[month] = prediction["probabilityDecimal"]
    return found


def expected_probabilities(answer: dict) -> dict[str, dict[str, float]]:
    keys = {
        "hpfs": "survival_at",
        "os": "survival_at",
        "hepatic_progression": "cumulative_incidence_at",
    }
    return {
        OUTCOMES[measure]: {m: answer[measure][key][m]["value"] for m in PREDICTION_MONTHS}
        for measure, key in keys.items()
        if answer.get(measure)
    }


@pytest.mark.parametrize(
    ("accept", "format_param", "expected"),
    [
        (None, None, False),
        ("application/json", None, False),
        ("application/fhir+json", None, True),
        ("application/fhir+json;q=0.9, application/json;q=0.5", None, True),
        ("application/json, application/fhir+json", None, False),
        ("*/*", None, False),
        (None, "fhir", True),
        ("application/json", "FHIR", True),
        ("application/fhir+json", "json", False),
    ],
)
def test_a_fhir_answer_is_chosen_by_accept_or_format(accept, format_param, expected):
    assert wants_fhir(accept, format_param) is expected


def test_the_bundle_of_an_example_answer_validates_and_holds_its_probabilities():
    now = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)

    document = assert_fhir(prognosis_bundle(EXAMPLE_ANSWER, PROVENANCE, now=now))

    assert [e["resource"]["resourceType"] for e in document["entry"]] == ["RiskAssessment"] * 3
    assert probabilities_by_outcome(document) == expected_probabilities(EXAMPLE_ANSWER)
    for entry in document["entry"]:
        resource = assert_fhir(entry["resource"])
        assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
        assert resource["subject"] == {"reference": "Patient/p1"}
        assert resource["condition"] == {"reference": "Condition/net"}
        assert resource["occurrenceDateTime"] == "2026-03-01T09:30:00+00:00"
        assert resource["basis"] == [
            {"reference": "Patient/p1"},
            {"reference": "Condition/net"},
            {"reference": "Observation/ki67"},
        ]
        assert resource["identifier"][0]["value"] == EXAMPLE_ANSWER["prediction_id"]
        notes = [note["text"] for note in resource["note"]]
        assert EXAMPLE_ANSWER["model"]["tag"] in notes[0]
        assert notes[1] == "Training data: synthetic."
        assert notes[2] == EXAMPLE_ANSWER["disclaimer"]
        assert notes[3] == EXAMPLE_ANSWER["os"]["modalities"][0]["caveat"]
        assert [p["whenRange"]["low"]["value"] for p in resource["prediction"]] == [0] * 4
        assert [p["whenRange"]["high"]["code"] for p in resource["prediction"]] == ["mo"] * 4


def test_extrapolated_probabilities_say_so_and_give_their_interval():
    document = prognosis_bundle(EXAMPLE_ANSWER, PROVENANCE)
    hpfs = document["entry"][0]["resource"]["prediction"]

    assert "95 % interval 0.1847 to 0.4746." in hpfs[0]["rationale"]
    assert "Extrapolated" not in hpfs[0]["rationale"]
    assert "Extrapolated beyond the follow-up" in hpfs[2]["rationale"]


def test_an_answer_without_the_incidence_has_two_assessments():
    answer = {k: v for k, v in EXAMPLE_ANSWER.items() if k != "hepatic_progression"}

    document = assert_fhir(prognosis_bundle(answer, PROVENANCE))

    assert len(document["entry"]) == 2


def test_without_a_patient_id_the_subject_is_a_display_and_still_valid():
    provenance = {"ki67_percent": PROVENANCE["ki67_percent"]}

    subject = subject_reference(provenance)
    document = assert_fhir(prognosis_bundle(EXAMPLE_ANSWER, provenance))

    assert set(subject) == {"display"}
    assert document["entry"][0]["resource"]["basis"] == [{"reference": "Observation/ki67"}]
    assert basis_references({}) == []
    assert "basis" not in prognosis_bundle(EXAMPLE_ANSWER, {})["entry"][0]["resource"]


def test_the_schema_check_catches_a_misspelt_element():
    document = prognosis_bundle(EXAMPLE_ANSWER, PROVENANCE)
    resource = dict(document["entry"][0]["resource"], stauts="final")

    assert fhir_errors(resource)
    assert fhir_errors({**document, "type": "pile"})
    assert fhir_errors({**resource, "stauts": None, "prediction": [{"probabilityDecimal": "high"}]})


@pytest.mark.parametrize("bundle_name", sorted(EXPECTED))
def test_every_example_patient_gets_a_valid_bundle_with_the_json_answers_probabilities(
    make_client, bundle_name
):
    client = make_client()
    record = bundle(bundle_name)
    answer = client.post(ROUTE, json=record).json()

    response = client.post(ROUTE, json=record, headers=FHIR_ACCEPT)
    by_format = client.post(f"{ROUTE}?_format=fhir", json=record)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    document = assert_fhir(response.json())
    assert by_format.status_code == 200
    assert_fhir(by_format.json())
    assert probabilities_by_outcome(document) == expected_probabilities(answer)
    patient = next(
        e["resource"] for e in record["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    references = {
        e["resource"]["resourceType"] + "/" + e["resource"]["id"] for e in record["entry"]
    }
    for entry in document["entry"]:
        resource = entry["resource"]
        assert resource["subject"] == {"reference": f"Patient/{patient['id']}"}
        assert {b["reference"] for b in resource["basis"]} <= references
        assert resource["note"][0]["text"].startswith(f"Model version {answer['model']['tag']}")


def test_the_json_answer_stays_the_default(make_client):
    response = make_client().post(ROUTE, json=bundle("g2_pancreas_sirt.bundle.json"))

    assert response.headers["content-type"].startswith("application/json")
    assert "prediction_id" in response.json()


def test_the_cds_suggestion_creates_the_valid_risk_assessments_of_the_context_patient():
    suggestion = risk_assessment_suggestion(
        EXAMPLE_ANSWER, PROVENANCE, patient_id="ctx-7", card_uuid=EXAMPLE_ANSWER["prediction_id"]
    )

    assert [a["type"] for a in suggestion["actions"]] == ["create"] * 3
    for action in suggestion["actions"]:
        assert assert_fhir(action["resource"])["subject"] == {"reference": "Patient/ctx-7"}
