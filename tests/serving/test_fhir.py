"""FHIR R4 input: example Bundles map to their patients, each field with its source, and bad
Bundles are refused item by item without echoing a value."""

from __future__ import annotations

import copy
import json
import re
from datetime import date
from pathlib import Path

import pytest
import yaml

from model.schema import PATIENT_FIELDS, Patient
from serving.audit import AuditLog
from serving.fhir import (
    MAPPING_PATH,
    FhirBundleIncomplete,
    FhirMapping,
    FhirValidationError,
    default_mapping,
    mapping_table,
    patient_from_bundle,
)
from serving.settings import hash_token
from tests.serving.conftest import example

ROOT = Path(__file__).resolve().parents[2]
FHIR_EXAMPLES = ROOT / "data" / "examples" / "fhir"
ROUTE = "/v1/fhir/prognosis"
TODAY = date(2026, 3, 1)
EXPECTED = {
    "g2_pancreas_sirt.bundle.json": "g2_pancreas_sirt.json",
    "g1_gut_tace.bundle.json": "g1_gut_tace.json",
    "g3_ki67_only_lung.bundle.json": "g3_ki67_only_lung.json",
    "unknown_primary.bundle.json": "unknown_primary_follow_up.json",
}
"""Each complete example Bundle and the JSON-API example patient it describes."""


def bundle(name: str) -> dict:
    return json.loads((FHIR_EXAMPLES / name).read_text(encoding="utf-8"))


def entry_of(document: dict, resource_id: str) -> dict:
    return next(e["resource"] for e in document["entry"] if e["resource"]["id"] == resource_id)


def without(document: dict, *resource_ids: str) -> dict:
    trimmed = copy.deepcopy(document)
    trimmed["entry"] = [e for e in trimmed["entry"] if e["resource"]["id"] not in resource_ids]
    return trimmed


def with_resources(document: dict, *resources: dict) -> dict:
    extended = copy.deepcopy(document)
    extended["entry"] += [{"resource": r} for r in resources]
    return extended


def incomplete(document: dict, **kwargs) -> FhirBundleIncomplete:
    with pytest.raises(FhirBundleIncomplete) as raised:
        patient_from_bundle(document, today=TODAY, **kwargs)
    return raised.value


@pytest.mark.parametrize(("bundle_name", "patient_name"), sorted(EXPECTED.items()))
def test_every_example_bundle_maps_to_the_example_patient_it_describes(bundle_name, patient_name):
    mapped = patient_from_bundle(bundle(bundle_name), today=TODAY)

    assert mapped.patient == Patient(**example(patient_name)["patient"])
    assert set(mapped.provenance) == set(PATIENT_FIELDS)


def test_the_provenance_names_the_resource_element_and_code_of_each_field():
    provenance = patient_from_bundle(bundle("g2_pancreas_sirt.bundle.json")).provenance

    assert provenance["ki67_percent"] == {
        "source": "resource",
        "resourceType": "Observation",
        "id": "ki67",
        "location": "Bundle.entry[3].resource",
        "element": "valueQuantity",
        "match": "code",
        "system": "http://loinc.org",
        "code": "29593-1",
        "display": "Cells.Ki-67 nuclear Ag/cells in Tissue by Immune stain",
    }
    assert provenance["who_grade"]["value_code"] == "1663004"
    assert provenance["primary_site"]["element"] == "bodySite"
    assert provenance["primary_site"]["code"] == "15776009"
    assert provenance["primary_resected"]["status"] == "not-done"
    assert provenance["biologic_therapy"]["code"] == "L01EG02"
    assert provenance["planned_modality"]["id"] == "sirt-order"
    assert provenance["sex"] == {
        "source": "resource",
        "resourceType": "Patient",
        "id": "net-g2-pancreas",
        "location": "Bundle.entry[0].resource",
        "element": "gender",
    }
    assert provenance["extrahepatic_metastases"]["source"] == "default"
    assert provenance["cytotoxic_chemotherapy"]["source"] == "default"


def test_the_age_is_taken_at_the_planned_embolotherapy_date_else_at_the_request_date():
    planned = patient_from_bundle(bundle("g2_pancreas_sirt.bundle.json"), today=date(2030, 1, 1))
    unplanned = bundle("unknown_primary.bundle.json")  # born 1976-10-02, nothing planned

    assert planned.patient.age_years == 64
    assert planned.reference_date == date(2026, 3, 2)
    assert planned.provenance["age_years"]["reference_date_from"]["id"] == "sirt-order"
    assert patient_from_bundle(unplanned, today=date(2026, 10, 1)).patient.age_years == 49
    assert patient_from_bundle(unplanned, today=date(2026, 10, 2)).patient.age_years == 50


def test_a_partial_birth_date_is_taken_at_the_middle_of_its_period():
    mapped = patient_from_bundle(bundle("g3_ki67_only_lung.bundle.json"))  # 1954-05, on 2026-04-01

    assert mapped.patient.age_years == 71
    assert "partial" in mapped.provenance["age_years"]["note"]


def test_free_text_matches_are_marked_as_text_in_the_provenance():
    provenance = patient_from_bundle(bundle("g3_ki67_only_lung.bundle.json")).provenance

    assert provenance["planned_modality"]["match"] == "text"
    assert provenance["ki67_percent"]["match"] == "text"
    assert "code" not in provenance["planned_modality"]


def test_the_most_recent_final_observation_is_used():
    document = bundle("g1_gut_tace.bundle.json")  # burden 9 % in 2025, 15 % in 2026

    assert patient_from_bundle(document).patient.tumor_burden_percent == 15
    older_last = without(document, "burden")
    assert patient_from_bundle(older_last).patient.tumor_burden_percent == 9


def test_a_refuted_condition_and_a_not_done_procedure_are_recorded_absence():
    g1 = patient_from_bundle(bundle("g1_gut_tace.bundle.json")).provenance
    g2 = patient_from_bundle(bundle("g2_pancreas_sirt.bundle.json")).provenance

    assert g1["extrahepatic_metastases"]["verificationStatus"] == "refuted"
    assert g1["extrahepatic_metastases"]["id"] == "bone-metastases"
    assert g2["primary_resected"]["id"] == "whipple"


def test_a_medication_is_read_from_a_contained_medication():
    document = without(bundle("g1_gut_tace.bundle.json"), "lanreotide", "lanreotide-statement")
    statement = {
        "resourceType": "MedicationStatement",
        "id": "contained-ssa",
        "status": "active",
        "contained": [
            {"resourceType": "Medication", "id": "m1", "code": {"text": "Somatuline Autogel"}}
        ],
        "medicationReference": {"reference": "#m1"},
        "subject": {"reference": "Patient/net-g1-ileum"},
    }

    assert patient_from_bundle(document).patient.somatostatin_analog is False
    mapped = patient_from_bundle(with_resources(document, statement))
    assert mapped.patient.somatostatin_analog is True
    assert mapped.provenance["somatostatin_analog"]["id"] == "contained-ssa"


def test_a_resource_about_another_patient_is_ignored():
    document = bundle("g2_pancreas_sirt.bundle.json")
    foreign = copy.deepcopy(entry_of(document, "burden"))
    foreign.update(id="other-burden", effectiveDateTime="2026-02-28")
    foreign["subject"] = {"reference": "Patient/someone-else"}
    foreign["valueQuantity"]["value"] = 90

    assert patient_from_bundle(with_resources(document, foreign)).patient.tumor_burden_percent == 40


def test_resources_of_types_the_mapping_does_not_read_are_not_validated():
    document = with_resources(
        bundle("g2_pancreas_sirt.bundle.json"),
        {"resourceType": "MedicinalProduct", "id": "r4-only", "name": [{"productName": "x"}]},
        {"resourceType": "Encounter", "id": "junk", "not-an-element": True},
    )

    assert patient_from_bundle(document).patient.planned_modality == "SIRT"


def test_each_missing_item_yields_its_own_message_naming_the_codes_that_supply_it():
    error = incomplete(bundle("incomplete_patient_only.bundle.json"))
    mapping = default_mapping()

    assert [issue.field for issue in error.issues] == [
        "age_years",
        "primary_site",
        "liver_metastases",
    ]
    assert {issue.code for issue in error.issues} == {"required"}
    by_field = {issue.field: issue for issue in error.issues}
    assert by_field["liver_metastases"].codes == mapping.conditions["liver_metastases"].codings()
    assert "SNOMED CT 94381002 (Metastatic malignant neoplasm to liver (disorder))" in (
        by_field["liver_metastases"].message
    )
    assert "Patient/net-empty has none" in by_field["age_years"].message


def test_a_bundle_without_burden_or_grade_maps_them_as_unknown_to_be_imputed():
    mapped = patient_from_bundle(bundle("incomplete_no_burden_no_grade.bundle.json"), today=TODAY)

    assert mapped.patient.unknown_fields[:2] == ("who_grade", "tumor_burden_percent")
    for name in ("who_grade", "tumor_burden_percent"):
        assert mapped.provenance[name]["source"] == "absent"
        assert "imputed" in mapped.provenance[name]["note"]


def test_absent_booleans_are_assumed_none_by_default_and_imputed_when_the_mapping_says_so():
    document = yaml.safe_load(MAPPING_PATH.read_text(encoding="utf-8"))
    assumed = patient_from_bundle(bundle("g1_gut_tace.bundle.json"), today=TODAY)
    imputing = patient_from_bundle(
        bundle("g1_gut_tace.bundle.json"),
        today=TODAY,
        mapping=FhirMapping({**document, "absent_booleans": "impute"}),
    )

    assert assumed.patient.cytotoxic_chemotherapy is False
    assert assumed.provenance["cytotoxic_chemotherapy"]["source"] == "default"
    assert imputing.patient.cytotoxic_chemotherapy is None
    assert "cytotoxic_chemotherapy" in imputing.patient.unknown_fields
    assert "imputed" in imputing.provenance["cytotoxic_chemotherapy"]["note"]


def test_conflicting_planned_modalities_are_one_conflict_naming_both_orders():
    document = bundle("g2_pancreas_sirt.bundle.json")
    tace = {
        "resourceType": "Procedure",
        "id": "tace-plan",
        "status": "preparation",
        "code": {"text": "TACE"},
        "subject": {"reference": "Patient/net-g2-pancreas"},
    }

    error = incomplete(with_resources(document, tace))

    assert [(i.code, i.field) for i in error.issues] == [("conflict", "planned_modality")]
    assert "ServiceRequest/sirt-order" in error.issues[0].message
    assert "Procedure/tace-plan" in error.issues[0].message


def test_a_value_outside_the_model_range_names_field_and_resource_but_not_the_value():
    document = bundle("g2_pancreas_sirt.bundle.json")
    entry_of(document, "ki67")["valueQuantity"]["value"] = 123.456

    error = incomplete(document)

    assert [(i.code, i.field) for i in error.issues] == [("value", "ki67_percent")]
    assert error.issues[0].message.startswith("ki67_percent (from Observation/ki67)")
    assert "123.456" not in str(error)


def test_a_quantity_in_another_unit_is_refused():
    document = bundle("g2_pancreas_sirt.bundle.json")
    entry_of(document, "burden")["valueQuantity"].update(unit="mL", code="mL")

    error = incomplete(document)

    assert [(i.code, i.field) for i in error.issues] == [("value", "tumor_burden_percent")]


def test_fhir_validation_failures_name_the_resource_and_element_without_their_values():
    with pytest.raises(FhirValidationError) as raised:
        patient_from_bundle(bundle("invalid_resources.bundle.json"))
    issues = raised.value.issues

    assert [(i.code, i.expression) for i in issues] == [
        ("invalid", "Bundle.entry[0].resource.birthDate"),
        ("invalid", "Bundle.entry[1].resource.valueQuantity.value"),
        ("invalid", "Bundle.entry[2].resource.severityScore"),
        ("code-invalid", "Bundle.entry[3].resource.status"),
    ]
    assert issues[0].message.startswith("Patient/net-invalid (Bundle.entry[0].resource): ")
    assert issues[1].message.startswith("Observation/ki67 (Bundle.entry[1].resource): ")
    for value in ("1961-13-40", "eight", "planned"):
        assert value not in str(raised.value)


def test_a_body_that_is_not_a_bundle_is_a_structure_issue():
    with pytest.raises(FhirValidationError) as raised:
        patient_from_bundle({"resourceType": "Patient", "id": "p"})

    assert [i.code for i in raised.value.issues] == ["structure"]


def test_the_fhir_route_answers_the_prognosis_with_patient_and_provenance(make_client):
    client = make_client(audit_salt="fhir-test-key")
    document = bundle("g2_pancreas_sirt.bundle.json")

    answer = client.post(ROUTE, json=document, headers={"content-type": "application/fhir+json"})
    reference = client.post("/v1/prognosis", json=example("g2_pancreas_sirt.json")).json()

    assert answer.status_code == 200
    body = answer.json()
    assert body["patient"] == Patient(**example("g2_pancreas_sirt.json")["patient"]).model_dump(
        mode="json"
    )
    assert body["provenance"]["planned_modality"]["id"] == "sirt-order"
    for endpoint in ("hpfs", "os"):
        assert body[endpoint]["median_months"] == reference[endpoint]["median_months"]
        assert body[endpoint]["modalities"] == reference[endpoint]["modalities"]
    records = list(AuditLog(client.audit_log, b"fhir-test-key").records())
    assert [(r["prediction_id"], r["route"]) for r in records] == [
        (body["prediction_id"], ROUTE),
        (reference["prediction_id"], "/v1/prognosis"),
    ]
    assert records[0]["input_hmac"] == records[1]["input_hmac"]


def test_the_fhir_route_answers_an_operation_outcome_per_problem(make_client):
    client = make_client()

    invalid = client.post(ROUTE, json=bundle("invalid_resources.bundle.json"))
    missing = client.post(ROUTE, json=bundle("incomplete_patient_only.bundle.json"))
    not_json = client.post(ROUTE, content=b'{"resourceType": "Bundle", ', headers={})

    assert invalid.status_code == 400
    assert invalid.headers["content-type"].startswith("application/fhir+json")
    assert invalid.json()["resourceType"] == "OperationOutcome"
    assert [i["expression"] for i in invalid.json()["issue"]][0] == [
        "Bundle.entry[0].resource.birthDate"
    ]
    assert missing.status_code == 422
    issues = missing.json()["issue"]
    assert [i["details"]["text"] for i in issues] == [
        "age_years",
        "primary_site",
        "liver_metastases",
    ]
    assert not_json.status_code == 400
    assert not_json.json()["issue"][0]["code"] == "structure"
    assert client.audit_log.read_text(encoding="utf-8") == ""


def test_the_fhir_route_refuses_other_media_types(make_client):
    client = make_client()

    response = client.post(ROUTE, content=b"<Bundle/>", headers={"content-type": "application/xml"})

    assert response.status_code == 415


def test_the_fhir_route_needs_a_bearer_token_when_tokens_are_configured(make_client):
    client = make_client(api_token_hashes=hash_token("fhir-token"))
    document = bundle("g1_gut_tace.bundle.json")

    assert client.post(ROUTE, json=document).status_code == 401
    wrong = {"authorization": "Bearer nope"}
    assert client.post(ROUTE, json=document, headers=wrong).status_code == 403
    right = {"authorization": "Bearer fhir-token"}
    assert client.post(ROUTE, json=document, headers=right).status_code == 200


def test_the_mapping_table_in_the_docs_is_the_one_of_the_yaml():
    text = (ROOT / "docs" / "ehr-integration.md").read_text(encoding="utf-8")
    match = re.search(
        r"<!-- mapping-table:start -->\n(.*?)\n<!-- mapping-table:end -->", text, re.DOTALL
    )

    assert match is not None
    assert match.group(1) == mapping_table(), (
        "docs/ehr-integration.md is out of date; regenerate its table with "
        '`python -c "from serving.fhir import mapping_table; print(mapping_table())"`'
    )


def test_every_code_of_the_table_has_a_known_system_and_a_display():
    document = yaml.safe_load(MAPPING_PATH.read_text(encoding="utf-8"))
    rows = default_mapping().rows()

    assert len(rows) > 100
    assert {row["system"] for row in rows} <= set(document["systems"].values())
    assert all(row["display"] and row["code"] for row in rows)
    assert len({(r["supplies"], r["system"], r["code"]) for r in rows}) == len(rows)
