"""Real-world records: a 10 MB record of many resource types answers in time and memory, and
the conflict rules decide (NET codes first, most recent before the planned treatment, a
look-back window for therapy), each decision named in the warnings and `set_aside`."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from serving.records import map_record
from tests.serving.record_factory import realistic_record, record_bytes, with_other_cancer
from tests.serving.test_fhir import bundle, entry_of, with_resources

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 3, 1)
ROUTE = "/v1/fhir/prognosis"
ICD10, SNOMED, LOINC = (
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://snomed.info/sct",
    "http://loinc.org",
)


def probe(model_tag: str, tmp_path: Path, *args: str) -> dict:
    env = {
        **os.environ,
        "NETPROG_MODEL_TAG": model_tag,
        "NETPROG_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "NETPROG_AUDIT_SALT": "records",
    }
    env = {
        k: v
        for k, v in env.items()
        if not k.startswith("NETPROG_")
        or k in {"NETPROG_MODEL_TAG", "NETPROG_AUDIT_LOG", "NETPROG_AUDIT_SALT"}
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.serving.record_probe", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_ten_megabyte_record_answers_within_two_seconds_in_at_most_400_mb(model_tag, tmp_path):
    record_file = tmp_path / "record.json"
    record_file.write_bytes(record_bytes(with_other_cancer(realistic_record(10_000_000))))

    found = probe(model_tag, tmp_path, str(record_file))

    assert found["bytes"] >= 10_000_000
    assert (found["warm_status"], found["status"]) == (200, 200)
    assert found["seconds"] <= 2.0, found
    # The peak of the whole serving process, libraries and model included (the bar),
    # read from VmHWM: 325 MB in a long-used checkout, more on a fresh install, where more of
    # the shared libraries' pages are resident (without pyarrow, kept out of the service, see
    # serving/without_parquet.py). The second bound says what the record costs.
    assert found["peak_rss_mb"] <= 400, found["peak_rss_mb"]
    assert found["peak_rss_mb"] - found["baseline_rss_mb"] <= 50, (
        found["baseline_rss_mb"],
        found["peak_rss_mb"],
    )
    assert found["primary_site"] == "pancreas"
    assert any("Condition/colon-adenocarcinoma" in w["message"] for w in found["warnings"])


def test_the_record_generator_makes_many_types_around_the_net_resources():
    record = realistic_record(2_000_000)
    kinds = {e["resource"]["resourceType"] for e in record["entry"]}

    assert len(record["entry"]) > 2_500
    assert {"Encounter", "Claim", "Immunization", "Observation", "Condition"} <= kinds
    assert 1_900_000 < len(json.dumps(record)) < 2_100_000


def test_another_cancer_keeps_the_net_primary_and_is_named_in_a_warning(make_client):
    record = with_other_cancer(bundle("g2_pancreas_sirt.bundle.json"))

    answer = make_client().post(ROUTE, json=record).json()

    assert answer["patient"]["primary_site"] == "pancreas"
    [warning] = [w for w in answer["warnings"] if w["code"] == "record_conflict"]
    assert "another cancer (Condition/colon-adenocarcinoma)" in warning["message"]
    assert answer["set_aside"] == [
        {
            "resource": "Condition/colon-adenocarcinoma",
            "rule": "other-cancer",
            "reason": "a cancer other than the neuroendocrine tumour: not read for the primary "
            "site",
        }
    ]
    assert answer["provenance"]["primary_site"]["id"] == "net-diagnosis"


def net_diagnosis(condition_id: str, code: dict, recorded: str) -> dict:
    return {
        "resourceType": "Condition",
        "id": condition_id,
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "confirmed",
                }
            ]
        },
        "code": code,
        "subject": {"reference": "Patient/net-g2-pancreas"},
        "recordedDate": recorded,
    }


def test_two_net_diagnoses_with_different_sites_use_the_coded_most_recent_one():
    record = bundle("g2_pancreas_sirt.bundle.json")
    record = with_resources(
        record,
        net_diagnosis(
            "older-ileal-net",
            {
                "coding": [
                    {
                        "system": ICD10,
                        "code": "C7A.012",
                        "display": "Malignant carcinoid tumor of the ileum",
                    }
                ]
            },
            "2019-04-01",
        ),
        net_diagnosis("text-only-lung-net", {"text": "Lung neuroendocrine tumour"}, "2026-01-10"),
        net_diagnosis(
            "after-treatment",
            {"coding": [{"system": ICD10, "code": "C7A.012"}]},
            "2026-06-01",
        ),
    )
    entry_of(record, "net-diagnosis")["recordedDate"] = "2025-10-20"

    mapped, ruled = map_record(record, today=TODAY)

    assert mapped.patient.primary_site == "pancreas"
    assert mapped.provenance["primary_site"]["id"] == "net-diagnosis"
    assert sorted(s["resource"] for s in ruled.set_aside) == [
        "Condition/after-treatment",
        "Condition/older-ileal-net",
        "Condition/text-only-lung-net",
    ]
    [warning] = ruled.warnings
    assert warning["message"].startswith(
        "The record holds 4 neuroendocrine tumour diagnoses: Condition/net-diagnosis was used"
    )


def ki67(observation_id: str, value: float, when: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": observation_id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "29593-1"}]},
        "subject": {"reference": "Patient/net-g2-pancreas"},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": value,
            "unit": "%",
            "system": "http://unitsofmeasure.org",
            "code": "%",
        },
    }


def test_ki67_values_from_several_dates_use_the_latest_before_the_planned_treatment():
    record = with_resources(
        bundle("g2_pancreas_sirt.bundle.json"),
        ki67("ki67-2022", 2.0, "2022-02-01"),
        ki67("ki67-2026-01", 14.0, "2026-01-15"),
        ki67("ki67-after-sirt", 30.0, "2026-04-01"),
    )

    mapped, ruled = map_record(record, today=TODAY)

    assert mapped.patient.ki67_percent == 14.0
    assert mapped.provenance["ki67_percent"]["id"] == "ki67-2026-01"
    rules = {s["resource"]: s["rule"] for s in ruled.set_aside}
    assert rules == {
        "Observation/ki67-after-sirt": "after-reference-date",
        "Observation/ki67-2022": "most-recent",
        "Observation/ki67": "most-recent",
    }
    messages = " ".join(w["message"] for w in ruled.warnings)
    assert "reference date 2026-03-02" in messages
    assert "ki67_percent: 3 values in the record; Observation/ki67-2026-01" in messages


def chemotherapy(statement_id: str, end: str) -> dict:
    return {
        "resourceType": "MedicationStatement",
        "id": statement_id,
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [
                {"system": "http://www.whocc.no/atc", "code": "L01BC06", "display": "capecitabine"}
            ]
        },
        "subject": {"reference": "Patient/net-g2-pancreas"},
        "effectivePeriod": {"start": "2014-01-01", "end": end},
    }


@pytest.mark.parametrize(("end", "given"), [("2016-06-30", False), ("2025-09-30", True)])
def test_chemotherapy_counts_only_within_the_look_back_window(end, given):
    record = with_resources(bundle("g2_pancreas_sirt.bundle.json"), chemotherapy("capox", end))

    mapped, ruled = map_record(record, today=TODAY)

    assert mapped.patient.cytotoxic_chemotherapy is given
    assert (["Statement"] if not given else []) == [
        s["resource"][10:19] for s in ruled.set_aside if s["rule"] == "look-back"
    ]


def test_locations_name_the_entry_in_the_record_as_sent_and_unread_types_are_not_validated():
    record = realistic_record(300_000)
    broken = {"resourceType": "Encounter", "id": "bad", "status": 17, "class": "no"}
    record["entry"].insert(0, {"resource": broken})
    position = next(i for i, e in enumerate(record["entry"]) if e["resource"].get("id") == "ki67")

    mapped, _ = map_record(copy.deepcopy(record), today=TODAY)

    assert mapped.provenance["ki67_percent"]["location"] == f"Bundle.entry[{position}].resource"


def test_a_cds_card_names_another_cancer_in_the_prefetch_and_keeps_the_net_primary(make_client):
    from tests.serving.test_cds_hooks import PATIENT_VIEW, example, one_card

    request = example("cds_patient_view.json")
    cancer = with_other_cancer(bundle("g2_pancreas_sirt.bundle.json"))["entry"][-1]
    request["prefetch"]["conditions"]["entry"].append({"resource": cancer["resource"]})

    card = one_card(make_client().post(PATIENT_VIEW, json=request))

    assert card["summary"].startswith("SIRT planned")
    assert "another cancer (Condition/colon-adenocarcinoma)" in card["detail"]
    assert "primary_site=pancreas" in card["links"][0]["url"]


@pytest.mark.parametrize(
    ("first", "pyarrow_loaded"),
    [("serving.service", False), ("pandas", True)],
    ids=["service-first", "pandas-first"],
)
def test_the_service_process_goes_without_pyarrow_unless_pandas_came_first(
    model_tag, tmp_path, first, pyarrow_loaded
):
    # The service reads no Parquet: pyarrow's libraries (~60 MB resident) stay out of its
    # workers. A process that loaded pandas (with pyarrow) before keeps both.
    code = (
        f"import {first}, sys\n"
        "import serving.service, pandas\n"
        "print(sys.modules.get('pyarrow') is not None, len(pandas.DataFrame({'a': ['x']})))\n"
    )
    env = {**os.environ, "NETPROG_MODEL_TAG": model_tag, "NETPROG_AUDIT_LOG": str(tmp_path / "a")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip

    assert done.stdout.split() == [str(pyarrow_loaded), "1"]
