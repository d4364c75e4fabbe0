"""Tests of the /v1 routes through the in-process ASGI app: answers, numbers and errors."""

from __future__ import annotations

import json
import uuid

import pytest

from model.bundle import MONTH_GRID
from model.predictor import INCIDENCE_MEASURE, SYNTHETIC_DISCLAIMER, Predictor
from model.schema import Patient
from serving.harms import load_procedure_harms
from serving.schemas import ModelCard, Prognosis, PrognosisList
from tests.serving.conftest import EXAMPLES, FIXTURE_PATIENTS, example

SINGLE_EXAMPLES = sorted(p.name for p in EXAMPLES.glob("*.json") if p.name != "batch.json")


@pytest.mark.parametrize("name", SINGLE_EXAMPLES)
def test_each_example_patient_gets_a_complete_prognosis_with_a_fresh_prediction_id(client, name):
    response = client.post("/v1/prognosis", json=example(name))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = Prognosis.model_validate(response.json())
    assert uuid.UUID(body.prediction_id).version == 4
    for endpoint in (body.hpfs, body.os):
        assert len(endpoint.curve) == len(MONTH_GRID)
        assert endpoint.curve[0].survival == 1.0
        at = [endpoint.survival_at[h].value for h in ("12", "24", "36", "60")]
        assert at == sorted(at, reverse=True)
        assert [m.modality for m in endpoint.modalities] == ["TACE", "TAE", "SIRT"]
        assert sum(m.planned for m in endpoint.modalities) == 1
    assert body.model.trained_on == "synthetic"
    assert body.disclaimer == SYNTHETIC_DISCLAIMER


def test_the_answer_is_the_predictor_output_plus_only_the_prediction_id(client, fixture_bundle):
    request = example("g2_pancreas_sirt.json")
    predictor = Predictor(fixture_bundle, procedure_harms=load_procedure_harms())
    expected = predictor.prognosis(Patient(**request["patient"]))

    answer = client.post("/v1/prognosis", json=request).json()

    assert list(answer)[0] == "prediction_id"
    assert {k: v for k, v in answer.items() if k != "prediction_id"} == json.loads(
        json.dumps(expected)
    )


def test_two_requests_for_the_same_patient_get_different_prediction_ids(client):
    first = client.post("/v1/prognosis", json=example("g1_gut_tace.json")).json()
    second = client.post("/v1/prognosis", json=example("g1_gut_tace.json")).json()

    assert first["prediction_id"] != second["prediction_id"]
    assert first["hpfs"]["median_months"] == second["hpfs"]["median_months"]


def test_ki67_only_patient_is_graded_from_ki67_and_warned_about_it(client):
    body = client.post("/v1/prognosis", json=example("g3_ki67_only_lung.json")).json()

    assert body["patient_summary"]["who_grade"] == "G3"
    assert body["patient_summary"]["grade_source"] == "ki67_percent"
    assert "grade_derived_from_ki67" in {w["code"] for w in body["warnings"]}


def test_months_since_treatment_adds_conditional_survival_starting_at_that_month(client):
    body = client.post("/v1/prognosis", json=example("unknown_primary_follow_up.json")).json()

    for endpoint in ("hpfs", "os"):
        conditional = body[endpoint]["conditional"]
        assert conditional["months_since_treatment"] == 6
        assert conditional["curve"][0] == {"month": 6, "survival": 1.0, "lower": 1.0, "upper": 1.0}


def test_months_since_treatment_where_survival_is_about_zero_is_422_with_the_reason(client):
    request = {**example("g3_ki67_only_lung.json"), "months_since_treatment": 120}

    response = client.post("/v1/prognosis", json=request)

    assert response.status_code == 422
    assert "months_since_treatment" in response.json()["error"]


def test_batch_answers_every_patient_in_order_with_distinct_prediction_ids(client):
    request = example("batch.json")

    response = client.post("/v1/prognosis/batch", json=request)

    assert response.status_code == 200
    answers = PrognosisList.model_validate(response.json()).root
    assert len(answers) == len(request["patients"]) == 4
    planned = [p.get("planned_modality") or "TACE" for p in request["patients"]]
    assert [a.patient_summary.modality for a in answers] == planned
    assert len({a.prediction_id for a in answers}) == 4


def test_batch_answer_equals_the_single_answers(client):
    request = example("batch.json")
    batch = client.post("/v1/prognosis/batch", json=request).json()
    for patient, answer in zip(request["patients"], batch, strict=True):
        single = client.post("/v1/prognosis", json={"patient": patient}).json()
        assert answer["os"]["survival_at"] == single["os"]["survival_at"]


def test_empty_batch_is_400_saying_at_least_one_patient_is_needed(client):
    response = client.post("/v1/prognosis/batch", json={"patients": []})

    assert response.status_code == 400
    [detail] = response.json()["detail"]
    assert detail["loc"] == ["patients"]
    assert "at least 1" in detail["msg"]


def test_batch_of_1001_patients_is_400_saying_at_most_1000(client):
    patient = example("g1_gut_tace.json")["patient"]

    response = client.post("/v1/prognosis/batch", json={"patients": [patient] * 1001})

    assert response.status_code == 400
    [detail] = response.json()["detail"]
    assert detail["loc"] == ["patients"]
    assert "at most 1000" in detail["msg"]


def test_invalid_fields_get_one_message_each_saying_what_is_allowed(client):
    patient = dict(example("g2_pancreas_sirt.json")["patient"])
    patient.update(age_years=918273, primary_site="CANARY-xyz", somatostatin_analog="yes")
    patient.update(tumor_burden_percent="lots")
    patient["smoker"] = True

    response = client.post("/v1/prognosis", json={"patient": patient})

    assert response.status_code == 400
    details = {tuple(d["loc"]): d for d in response.json()["detail"]}
    assert set(details) == {
        ("patient", "age_years"),
        ("patient", "primary_site"),
        ("patient", "somatostatin_analog"),
        ("patient", "tumor_burden_percent"),
        ("patient", "smoker"),
    }
    assert details[("patient", "age_years")]["msg"] == "Input should be less than or equal to 100"
    assert "'pancreas', 'gut', 'lung' or 'other'" in details[("patient", "primary_site")]["msg"]
    assert "valid number" in details[("patient", "tumor_burden_percent")]["msg"]
    assert all("input" not in d and "ctx" not in d for d in details.values())
    assert "918273" not in response.text
    assert "CANARY" not in response.text


def test_a_patient_with_unknown_fields_is_answered_naming_them(client):
    patient = dict(example("g1_gut_tace.json")["patient"])
    del patient["who_grade"], patient["ki67_percent"]
    patient["tumor_burden_percent"] = None

    response = client.post("/v1/prognosis", json={"patient": patient})

    assert response.status_code == 200
    answer = response.json()
    assert answer["patient_summary"]["imputed_fields"] == ["who_grade", "tumor_burden_percent"]
    [warning] = [w for w in answer["warnings"] if w["code"] == "imputed_fields"]
    assert warning["fields"] == ["who_grade", "tumor_burden_percent"]
    for entry in answer["os"]["survival_at"].values():
        assert entry["lower"] <= entry["value"] <= entry["upper"]


def test_a_negative_follow_up_time_is_400_at_months_since_treatment(client):
    response = client.post(
        "/v1/prognosis", json={**example("g1_gut_tace.json"), "months_since_treatment": -1}
    )

    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["months_since_treatment"]


BAD_BODIES = {
    "empty": b"",
    "not json": b"{patient: nope",
    "invalid utf-8": b'{"patient": "\xff\xfe"}',
    "null": b"null",
    "array": b"[1, 2]",
    "string": b'"patient"',
    "nan literal": b'{"patient": {"age_years": NaN}}',
    "huge number": b'{"patient": {"age_years": 1e400, "tumor_burden_percent": 1e400}}',
    "deep nesting": b'{"patient": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "patient list": b'{"patient": []}',
    "patients object": b'{"patients": {"a": 1}}',
}


@pytest.mark.parametrize("route", ["/v1/prognosis", "/v1/prognosis/batch"])
@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_malformed_bodies_get_a_4xx_never_a_5xx(client, route, name):
    response = client.post(
        route, content=BAD_BODIES[name], headers={"content-type": "application/json"}
    )

    assert 400 <= response.status_code < 500
    assert "error" in response.json()


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data; boundary=x", "application/vnd.bentoml+pickle", "text/plain"],
)
def test_bodies_that_are_not_json_are_415(client, content_type):
    response = client.post(
        "/v1/prognosis", content=b"--x--", headers={"content-type": content_type}
    )

    assert response.status_code == 415
    assert response.json() == {"error": "Content-Type must be application/json"}


def test_model_card_names_the_model_its_synthetic_training_data_and_the_disclaimer(
    client, model_tag
):
    response = client.get("/v1/model")

    assert response.status_code == 200
    card = ModelCard.model_validate(response.json())
    assert card.tag == model_tag
    assert card.version == model_tag.split(":")[1]
    assert card.schema_version == "1"
    assert card.training_data.label == "synthetic"
    assert card.training_data.n_patients == FIXTURE_PATIENTS
    assert card.models["primary"] == {"hpfs": "coxnet", "os": "coxnet"}
    assert card.disclaimer == SYNTHETIC_DISCLAIMER
    assert "tumour board" in card.intended_use


def test_the_model_card_defines_hpfs_as_progression_or_death_beside_the_cumulative_incidence(
    client,
):
    card = ModelCard.model_validate(client.get("/v1/model").json())

    assert "hepatic progression or death, whichever comes first" in card.intended_use
    assert INCIDENCE_MEASURE in card.intended_use
    assert any(INCIDENCE_MEASURE in limitation for limitation in card.limitations)
    assert any("delta-method intervals of a Cox model" in x for x in card.limitations)


def test_the_answer_counts_training_patients_at_risk_and_the_incidence_of_progression(client):
    body = Prognosis.model_validate(
        client.post("/v1/prognosis", json=example("g2_pancreas_sirt.json")).json()
    )

    assert body.hpfs.event == "hepatic progression or death"
    assert body.os.event == "death"
    for endpoint in (body.hpfs, body.os):
        assert endpoint.interval_method == "delta method (Cox model, log-log scale)"
        at_risk = endpoint.numbers_at_risk
        assert [n.month for n in at_risk] == list(range(0, 121, 12))
        assert at_risk[0].at_risk == FIXTURE_PATIENTS
        counts = [n.at_risk for n in at_risk]
        assert counts == sorted(counts, reverse=True)
    incidence = body.hepatic_progression
    assert incidence.measure == INCIDENCE_MEASURE
    assert incidence.modality == "SIRT"
    assert incidence.curve[0].incidence == 0.0
    values = [incidence.cumulative_incidence_at[h].value for h in ("12", "24", "36", "60")]
    assert values == sorted(values)
    for h in ("12", "24", "36", "60"):
        at = incidence.cumulative_incidence_at[h]
        assert at.lower <= at.value <= at.upper
        # Death competes: progression by a month is at most the HPFS events by then.
        assert at.value <= 1 - body.hpfs.survival_at[h].value + 1e-3
    [planned] = [m for m in incidence.modalities if m.modality == "SIRT"]
    assert planned.cumulative_incidence_at == incidence.cumulative_incidence_at


@pytest.mark.parametrize("route", ["/livez", "/readyz", "/healthz"])
def test_health_and_readiness_routes_answer_200(client, route):
    assert client.get(route).status_code == 200


def test_cors_is_off_by_default(client):
    response = client.request(
        "OPTIONS",
        "/v1/prognosis",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )

    assert "access-control-allow-origin" not in response.headers


def varied_patients() -> list[dict]:
    """Every grade x burden category x primary site, modalities and ages cycling."""
    modalities = ["TACE", "TAE", "SIRT", None]
    patients = []
    for number, (grade, burden, site) in enumerate(
        (g, b, s)
        for g in ("G1", "G2", "G3")
        for b in (5.0, 30.0, 60.0, 90.0)
        for s in ("pancreas", "gut", "lung", "other")
    ):
        patient = {
            "age_years": 18 + (number * 7) % 83,
            "who_grade": grade,
            "tumor_burden_percent": burden,
            "primary_site": site,
            "prior_hepatic_treatment": number % 2 == 0,
            "extrahepatic_metastases": number % 3 == 0,
            "somatostatin_analog": number % 4 != 0,
            "biologic_therapy": number % 5 == 0,
            "cytotoxic_chemotherapy": grade == "G3",
        }
        if modalities[number % 4] is not None:
            patient["planned_modality"] = modalities[number % 4]
        patients.append(patient)
    return patients


def test_a_batch_across_every_grade_burden_site_and_modality_answers_valid_json(client):
    patients = varied_patients()

    response = client.post("/v1/prognosis/batch", json={"patients": patients})

    assert response.status_code == 200
    answers = PrognosisList.model_validate(response.json()).root
    assert len(answers) == 48
    assert {a.patient_summary.burden_category for a in answers} == {"<25", "25-50", "50-75", ">75"}
    assert any(a.os.median_months.value is None for a in answers)  # medians not reached, too
