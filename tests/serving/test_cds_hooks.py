"""CDS Hooks 2.0: discovery and cards follow the specification's shapes, the card agrees with the
JSON API, missing data is a card (never a 5xx), feedback is audited and no value is logged."""

from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from jsonschema import Draft202012Validator

from model.predictor import Predictor
from model.schema import Patient
from serving.audit import AuditLog, verify
from serving.cds_hooks import (
    OVERRIDE_REASONS,
    SUMMARY_MAX,
    prognosis_card,
    suggestion_uuid,
)
from serving.fhir import patient_from_bundle
from serving.settings import hash_token
from tests.serving.fhir_schema import assert_fhir
from tests.serving.test_logging import formatted

ROOT = Path(__file__).resolve().parents[2]
FHIR_EXAMPLES = ROOT / "data" / "examples" / "fhir"
SCHEMAS = Path(__file__).with_name("schemas")
PATIENT_VIEW = "/cds-services/net-embolotherapy-prognosis"
ORDER_SELECT = "/cds-services/net-embolotherapy-prognosis-order"
SUMMARY = re.compile(r"^(\w+) planned: median OS ([\d.]+) mo, HPFS ([\d.]+) mo")


def example(name: str) -> dict:
    return json.loads((FHIR_EXAMPLES / name).read_text(encoding="utf-8"))


def schema(name: str) -> Draft202012Validator:
    document = json.loads((SCHEMAS / f"cds-hooks-{name}.schema.json").read_text(encoding="utf-8"))
    return Draft202012Validator(document, format_checker=Draft202012Validator.FORMAT_CHECKER)


def assert_valid(name: str, instance: dict) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in schema(name).iter_errors(instance)]
    assert errors == []


def one_card(response) -> dict:
    assert response.status_code == 200
    body = response.json()
    assert_valid("response", body)
    [card] = body["cards"]
    return card


def test_the_discovery_document_validates_and_prefetches_what_the_mapping_reads(make_client):
    response = make_client().get("/cds-services")

    assert response.status_code == 200
    document = response.json()
    assert_valid("discovery", document)
    services = {s["id"]: s for s in document["services"]}
    assert {i: s["hook"] for i, s in services.items()} == {
        "net-embolotherapy-prognosis": "patient-view",
        "net-embolotherapy-prognosis-order": "order-select",
    }
    prefetch = services["net-embolotherapy-prognosis"]["prefetch"]
    assert set(prefetch) == {
        "patient",
        "conditions",
        "observations",
        "procedures",
        "serviceRequests",
        "medicationStatements",
        "medicationRequests",
    }
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    assert prefetch["conditions"] == "Condition?patient={{context.patientId}}"
    assert prefetch["observations"].startswith("Observation?patient={{context.patientId}}&code=")
    assert "http://loinc.org|29593-1" in prefetch["observations"]
    assert "urn:netprognosis:codes|hepatic-tumor-burden-percent" in prefetch["observations"]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("cds_patient_view.json", "request"),
        ("cds_order_select.json", "request"),
        ("cds_patient_view_missing_prefetch.json", "request"),
        ("cds_feedback.json", "feedback"),
    ],
)
def test_the_example_requests_follow_the_cds_hooks_shapes(name, kind):
    assert_valid(kind, example(name))


def test_a_patient_view_card_has_the_json_apis_medians_for_the_same_patient(make_client):
    client = make_client()
    request = example("cds_patient_view.json")
    patient = Patient(
        **json.loads((ROOT / "data/examples/g2_pancreas_sirt.json").read_text())["patient"]
    )

    card = one_card(client.post(PATIENT_VIEW, json=request))
    reference = client.post("/v1/prognosis", json={"patient": patient.model_dump()}).json()

    modality, os_months, hpfs_months = SUMMARY.match(card["summary"]).groups()
    assert modality == "SIRT"
    assert float(os_months) == pytest.approx(reference["os"]["median_months"]["value"], abs=0.05)
    assert float(hpfs_months) == pytest.approx(
        reference["hpfs"]["median_months"]["value"], abs=0.05
    )
    assert card["summary"].endswith("(synthetic-data model, not for clinical use)")
    assert len(card["summary"]) <= SUMMARY_MAX


def test_the_card_says_progression_or_death_and_gives_the_incidence_at_12_and_24_months(
    make_client,
):
    client = make_client()
    card = one_card(client.post(PATIENT_VIEW, json=example("cds_patient_view.json")))
    reference = client.post(
        "/v1/fhir/prognosis", json=example("g2_pancreas_sirt.bundle.json")
    ).json()

    detail = card["detail"]
    incidence = reference["hepatic_progression"]["cumulative_incidence_at"]
    assert "Median HPFS (progression or death)" in detail
    assert "HPFS ends at hepatic progression or death" in detail
    [line] = [x for x in detail.splitlines() if x.startswith("Cumulative incidence")]
    assert (
        "Cumulative incidence of hepatic progression (death as a competing event) under SIRT"
        in line
    )
    for month in ("12", "24"):
        at = {k: round(incidence[month][k] * 100) for k in ("value", "lower", "upper")}
        assert f"{month} months {at['value']} % (95 % CI {at['lower']}–{at['upper']} %" in line
    assert "36 months" not in line


def test_the_card_holds_the_comparison_caveat_disclaimer_and_a_form_link_with_the_patient(
    make_client,
):
    client = make_client()
    card = one_card(client.post(PATIENT_VIEW, json=example("cds_patient_view.json")))
    reference = client.post(
        "/v1/fhir/prognosis", json=example("g2_pancreas_sirt.bundle.json")
    ).json()

    detail = card["detail"]
    for row in ("| TACE |", "| TAE |", "| **SIRT** (planned) |"):
        assert row in detail
    assert reference["os"]["modalities"][0]["caveat"] in detail
    assert reference["disclaimer"] in detail
    assert card["source"]["url"] == "http://testserver/v1/model"
    assert reference["model"]["tag"] in card["source"]["label"]
    [link] = card["links"]
    assert link["type"] == "absolute"
    url = urlsplit(link["url"])
    assert (url.netloc, url.path) == ("testserver", "/")
    fields = dict(parse_qsl(url.query))
    assert Patient.model_validate(
        {k: {"true": True, "false": False}.get(v, v) for k, v in fields.items()}
    ) == Patient(**reference["patient"])
    *decisions, file_it = card["suggestions"]
    assert [s["uuid"] for s in decisions] == [
        suggestion_uuid(card["uuid"], m) for m in ("TACE", "TAE", "SIRT")
    ]
    assert [a["resource"]["resourceType"] for a in file_it["actions"]] == ["RiskAssessment"] * 3
    for action in file_it["actions"]:
        subject = assert_fhir(action["resource"])["subject"]
        assert subject == {"reference": "Patient/net-g2-pancreas"}
    assert card["overrideReasons"] == list(OVERRIDE_REASONS)


def test_each_prognosis_card_is_audited_with_its_uuid_as_the_prediction_id(make_client):
    client = make_client(audit_salt="cds-key")
    card = one_card(client.post(PATIENT_VIEW, json=example("cds_patient_view.json")))
    fhir = client.post("/v1/fhir/prognosis", json=example("g2_pancreas_sirt.bundle.json")).json()

    records = list(AuditLog(client.audit_log, b"cds-key").records())
    assert [(r["prediction_id"], r["route"]) for r in records] == [
        (card["uuid"], PATIENT_VIEW),
        (fhir["prediction_id"], "/v1/fhir/prognosis"),
    ]
    assert records[0]["input_hmac"] == records[1]["input_hmac"]


@pytest.fixture(scope="module")
def fixture_predictor(fixture_bundle) -> Predictor:
    return Predictor(fixture_bundle)


@pytest.mark.parametrize(
    ("warning_codes", "missing", "indicator"),
    [
        ((), (), "info"),
        (("beyond_follow_up", "grade_derived_from_ki67"), (), "info"),
        (("modality_extrapolated",), (), "warning"),
        (("models_disagree",), (), "warning"),
        ((), ("medicationStatements",), "warning"),
    ],
)
def test_the_indicator_is_warning_for_extrapolation_disagreement_or_missing_prefetch(
    fixture_predictor, warning_codes, missing, indicator
):
    mapped = patient_from_bundle(example("g2_pancreas_sirt.bundle.json"))
    prognosis = {"prediction_id": "0b7e7d7c-1c2d-4e5f-8a9b-0c1d2e3f4a5b"}
    prognosis |= fixture_predictor.prognosis(mapped.patient)
    prognosis["warnings"] = [{"code": c, "message": f"{c} happened"} for c in warning_codes]

    card = prognosis_card(prognosis, mapped, base_url="https://ehr", missing_prefetch=missing)

    assert card["indicator"] == indicator
    assert_valid("response", {"cards": [card]})
    for code in warning_codes:
        assert f"- {code} happened" in card["detail"]


def test_an_order_select_card_is_about_the_selected_draft_order(make_client):
    card = one_card(make_client().post(ORDER_SELECT, json=example("cds_order_select.json")))

    assert card["summary"].startswith("TACE planned: ")
    assert "| **TACE** (planned) |" in card["detail"]


def test_an_order_select_for_an_order_that_is_not_an_embolization_has_no_card(make_client):
    request = example("cds_order_select.json")
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft["code"] = {"coding": [{"system": "http://loinc.org", "code": "24627-2"}], "text": "CT"}
    del request["prefetch"]["observations"]  # a missing-data card would be noise here too

    response = make_client().post(ORDER_SELECT, json=request)

    assert response.status_code == 200
    assert response.json() == {"cards": []}


def test_missing_needed_prefetch_without_a_fhir_server_is_a_412_and_no_prediction(make_client):
    client = make_client()

    response = client.post(PATIENT_VIEW, json=example("cds_patient_view_missing_prefetch.json"))

    assert response.status_code == 412
    [issue] = assert_fhir(response.json())["issue"]
    assert issue["code"] == "incomplete"
    assert issue["diagnostics"].startswith("the prefetch lacks conditions, observations, which")
    assert client.audit_log.read_text(encoding="utf-8") == ""


@pytest.mark.parametrize("prefetch", [None, {}])
def test_a_request_without_any_prefetch_is_a_412(make_client, prefetch):
    request = example("cds_patient_view.json")
    request["prefetch"] = prefetch

    response = make_client().post(PATIENT_VIEW, json=request)

    assert response.status_code == 412
    assert (
        "lacks patient, conditions, observations"
        in assert_fhir(response.json())["issue"][0]["diagnostics"]
    )


def test_missing_optional_prefetch_still_gives_a_prognosis_that_says_what_was_assumed(
    make_client,
):
    request = example("cds_patient_view.json")
    request["prefetch"]["medicationRequests"] = None

    card = one_card(make_client().post(PATIENT_VIEW, json=request))

    assert card["indicator"] == "warning"
    assert "not sent by the EHR (prefetch): medicationRequests" in card["detail"]
    assert "- biologic therapy: no MedicationStatement or MedicationRequest" in card["detail"]


def test_invalid_fhir_in_the_prefetch_is_a_400_naming_the_resource_and_element(make_client):
    request = example("cds_patient_view.json")
    observation = request["prefetch"]["observations"]["entry"][0]["resource"]
    observation["valueQuantity"]["value"] = "CANARY-value"

    response = make_client().post(PATIENT_VIEW, json=request)

    assert response.status_code == 400
    [issue] = response.json()["issue"]
    assert issue["expression"] == ["prefetch.observations.entry[0].resource.valueQuantity.value"]
    assert issue["diagnostics"].startswith("Observation/ki67 (prefetch.observations.entry[0]")
    assert "CANARY-value" not in response.text


@pytest.mark.parametrize(
    ("route", "change", "status"),
    [
        (PATIENT_VIEW, {"hook": "order-select"}, 400),
        (PATIENT_VIEW, {"context": {"userId": "Practitioner/x"}}, 400),
        (PATIENT_VIEW, {"hookInstance": None}, 400),
        ("/cds-services/no-such-service", {}, 404),
        (ORDER_SELECT, {"hook": "order-select"}, 400),
    ],
)
def test_a_request_that_is_not_for_the_service_is_refused(make_client, route, change, status):
    request = {**example("cds_patient_view.json"), **change}

    assert make_client().post(route, json=request).status_code == status


def test_a_prefetched_patient_other_than_the_contexts_is_refused(make_client):
    request = example("cds_patient_view.json")
    request["context"]["patientId"] = "someone-else"

    response = make_client().post(PATIENT_VIEW, json=request)

    assert response.status_code == 400
    assert "prefetch.patient" in response.json()["issue"][0]["diagnostics"]


def feedback_for(card: dict, comment: str = "a comment") -> dict:
    return {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": suggestion_uuid(card["uuid"], "TAE")}],
                "outcomeTimestamp": "2026-03-02T09:15:00Z",
            },
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {
                    "reason": dict(OVERRIDE_REASONS[0]),
                    "userComment": comment,
                },
                "outcomeTimestamp": "2026-03-02T09:16:00Z",
            },
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": {"system": "urn:ehr", "code": "their-own"}},
                "outcomeTimestamp": "2026-03-02T09:17:00Z",
            },
        ]
    }


def test_feedback_is_audited_with_the_outcome_the_chosen_modality_and_the_coded_reason(
    make_client,
):
    client = make_client(audit_salt="feedback-key")
    card = one_card(client.post(PATIENT_VIEW, json=example("cds_patient_view.json")))
    feedback = feedback_for(card, comment="chose TAE after the board")
    assert_valid("feedback", feedback)

    response = client.post(PATIENT_VIEW + "/feedback", json=feedback)

    assert response.status_code == 200
    log = AuditLog(client.audit_log, b"feedback-key")
    prediction, *records = list(log.records())
    assert "kind" not in prediction
    assert [(r["kind"], r["prediction_id"], r["route"]) for r in records] == [
        ("feedback", card["uuid"], PATIENT_VIEW + "/feedback")
    ] * 3
    assert [r["feedback"] for r in records] == [
        {
            "service": "net-embolotherapy-prognosis",
            "outcome": "accepted",
            "chosen_modality": "TAE",
            "override_reason": None,
        },
        {
            "service": "net-embolotherapy-prognosis",
            "outcome": "overridden",
            "chosen_modality": None,
            "override_reason": {"system": "urn:netprognosis:codes", "code": "no-embolotherapy"},
        },
        {
            "service": "net-embolotherapy-prognosis",
            "outcome": "overridden",
            "chosen_modality": None,
            "override_reason": {"system": "other", "code": "other"},
        },
    ]
    assert records[1]["input_hmac"] == log.input_digest(feedback["feedback"][1])
    assert "chose TAE after the board" not in client.audit_log.read_text(encoding="utf-8")
    assert verify(log).ok


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"feedback": []},
        {"feedback": [{"card": "not-a-uuid", "outcome": "accepted"}]},
        {"feedback": [{"card": "0b7e7d7c-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "outcome": "maybe"}]},
        {
            "feedback": [
                {
                    "card": "0b7e7d7c-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
                    "outcome": "accepted",
                    "outcomeTimestamp": "2026-03-02T09:15:00Z",
                }
            ]
        },
    ],
)
def test_feedback_that_is_not_cds_hooks_feedback_is_400_and_not_audited(make_client, body):
    client = make_client()

    assert client.post(PATIENT_VIEW + "/feedback", json=body).status_code == 400
    assert client.audit_log.read_text(encoding="utf-8") == ""


def test_the_cds_routes_need_a_bearer_token_when_tokens_are_configured(make_client):
    client = make_client(api_token_hashes=hash_token("ehr-token"), audit_salt="auth-key")
    request = example("cds_patient_view.json")
    right = {"authorization": "Bearer ehr-token"}

    assert client.get("/cds-services").status_code == 401
    assert client.get("/cds-services").headers["www-authenticate"].startswith("Bearer")
    assert client.get("/cds-services", headers={"authorization": "Bearer x"}).status_code == 403
    assert client.post(PATIENT_VIEW, json=request).status_code == 401
    assert client.post(PATIENT_VIEW + "/feedback", json={}).status_code == 401
    assert client.get("/cds-services", headers=right).status_code == 200
    card = one_card(client.post(PATIENT_VIEW, json=request, headers=right))
    [record] = AuditLog(client.audit_log, b"auth-key").records()
    assert record["prediction_id"] == card["uuid"]
    assert record["caller"] == hash_token("ehr-token")[:12]


CANARIES = ("77.123456", "CANARY-text", "CANARY-bad", "CANARY-key", "CANARY-comment", "1911-11-11")


def canary_requests(card_uuid: str) -> list[tuple[str, dict]]:
    valid_bundle = example("g2_pancreas_sirt.bundle.json")
    burden = next(e["resource"] for e in valid_bundle["entry"] if e["resource"]["id"] == "burden")
    burden["valueQuantity"]["value"] = 77.123456
    burden["code"]["text"] = "CANARY-text"
    patient = valid_bundle["entry"][0]["resource"]
    patient["name"] = [{"family": "CANARY-text"}]
    invalid_bundle = copy.deepcopy(valid_bundle)
    invalid_bundle["entry"][0]["resource"]["birthDate"] = "CANARY-bad"
    invalid_bundle["entry"][1]["resource"]["CANARY-key"] = "CANARY-bad"
    too_old = copy.deepcopy(valid_bundle)
    too_old["entry"][0]["resource"]["birthDate"] = "1911-11-11"
    view = example("cds_patient_view.json")
    view_burden = next(
        e["resource"]
        for e in view["prefetch"]["observations"]["entry"]
        if e["resource"]["id"] == "burden"
    )
    view_burden["valueQuantity"]["value"] = 77.123456
    invalid_view = copy.deepcopy(view)
    invalid_view["prefetch"]["patient"]["birthDate"] = "CANARY-bad"
    feedback = {
        "feedback": [
            {
                "card": card_uuid,
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {"system": "urn:ehr", "code": "CANARY-key"},
                    "userComment": "CANARY-comment",
                },
                "outcomeTimestamp": "2026-03-02T09:16:00Z",
            }
        ]
    }
    return [
        ("/v1/fhir/prognosis", valid_bundle),
        ("/v1/fhir/prognosis", invalid_bundle),
        ("/v1/fhir/prognosis", too_old),
        (PATIENT_VIEW, view),
        (PATIENT_VIEW, invalid_view),
        (PATIENT_VIEW + "/feedback", feedback),
    ]


def test_canary_values_in_fhir_and_cds_requests_appear_in_no_log_and_no_audit_record(
    make_client, caplog
):
    caplog.set_level(logging.DEBUG)
    client = make_client()
    card_uuid = "0b7e7d7c-1c2d-4e5f-8a9b-0c1d2e3f4a5b"

    statuses = [
        client.post(route, json=body).status_code for route, body in canary_requests(card_uuid)
    ]

    assert statuses == [200, 400, 422, 200, 400, 200]
    logged = "\n".join(formatted(record) for record in caplog.records)
    assert "FHIR bundle refused (400)" in logged
    audited = client.audit_log.read_text(encoding="utf-8")
    assert len(audited.splitlines()) == 3
    for canary in CANARIES:
        assert canary not in logged
        assert canary not in audited
