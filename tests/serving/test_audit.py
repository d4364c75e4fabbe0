"""Tests of the audit log: one chained record per prediction, tamper evidence, failing closed."""

from __future__ import annotations

import errno
import json
import multiprocessing
import shutil
import stat
from concurrent.futures import ProcessPoolExecutor

import pytest

from model.schema import Patient
from serving import audit as audit_module
from serving.audit import GENESIS_HASH, AuditEntry, AuditLog, verify
from serving.exceptions import AuditWriteError
from serving.settings import Settings, hash_token
from tests.serving.audit_worker import append_many
from tests.serving.conftest import example

KEY = b"k" * 32


def entry(number: int) -> AuditEntry:
    return AuditEntry(
        prediction_id=f"id-{number}",
        route="/v1/prognosis",
        model_tag="netprog-bundle:test",
        caller="anonymous",
        input_hmac="0" * 64,
    )


@pytest.fixture
def log(tmp_path) -> AuditLog:
    written = AuditLog(tmp_path / "audit.jsonl", KEY, fsync=False)
    written.append([entry(i) for i in range(5)])
    return written


def lines_of(log: AuditLog) -> list[str]:
    return log.path.read_text(encoding="utf-8").splitlines(keepends=True)


def test_each_prediction_writes_one_record_with_its_id_model_caller_and_keyed_input_digest(
    make_client, model_tag
):
    client = make_client(audit_salt="test-audit-key")
    request = example("g2_pancreas_sirt.json")

    single = client.post("/v1/prognosis", json=request).json()
    batch = client.post("/v1/prognosis/batch", json=example("batch.json")).json()

    log = AuditLog(client.audit_log, b"test-audit-key")
    records = list(log.records())
    assert [r["prediction_id"] for r in records] == [
        single["prediction_id"],
        *[b["prediction_id"] for b in batch],
    ]
    assert [r["route"] for r in records] == ["/v1/prognosis"] + ["/v1/prognosis/batch"] * 4
    assert {r["model_tag"] for r in records} == {model_tag}
    assert {r["caller"] for r in records} == {"anonymous"}
    assert [r["seq"] for r in records] == [0, 1, 2, 3, 4]
    assert records[0]["prev_hash"] == GENESIS_HASH
    validated = Patient(**request["patient"]).model_dump(mode="json")
    payload = {"patient": validated, "months_since_treatment": None}
    assert records[0]["input_hmac"] == log.input_digest(payload)
    assert records[2]["input_hmac"] == records[0]["input_hmac"]  # the same patient in the batch
    assert records[1]["input_hmac"] != records[0]["input_hmac"]
    assert verify(log).ok


def test_the_caller_is_recorded_as_the_token_hash_prefix(make_client):
    client = make_client(api_token_hashes=hash_token("token-a"), audit_salt="k")

    client.post(
        "/v1/prognosis",
        json=example("g1_gut_tace.json"),
        headers={"authorization": "Bearer token-a"},
    )

    [record] = AuditLog(client.audit_log, b"k").records()
    assert record["caller"] == hash_token("token-a")[:12]


def test_records_hold_only_the_documented_fields(make_client):
    client = make_client()
    client.post("/v1/prognosis", json=example("g1_gut_tace.json"))

    [line] = client.audit_log.read_text(encoding="utf-8").splitlines()

    assert set(json.loads(line)) == {
        "v",
        "seq",
        "time",
        "prediction_id",
        "route",
        "model_tag",
        "caller",
        "input_hmac",
        "prev_hash",
        "record_hash",
    }


def test_an_intact_log_verifies_and_its_head_counts_every_record(log):
    report = verify(log)

    assert report.ok, report.summary()
    assert report.n_records == 5
    assert log.read_head()["count"] == 5
    assert log.read_head()["last_hash"] == list(log.records())[-1]["record_hash"]


def test_an_edited_record_is_detected_at_its_line(log):
    lines = lines_of(log)
    lines[2] = lines[2].replace("netprog-bundle:test", "netprog-bundle:other")
    log.path.write_text("".join(lines), encoding="utf-8")

    report = verify(log)

    assert not report.ok
    assert report.problems == ["line 3 (seq 2): record was edited (hash mismatch)"]


def test_an_edit_with_a_recomputed_plain_hash_is_still_detected_without_the_key(log):
    import hashlib

    records = [json.loads(line) for line in lines_of(log)]
    records[1]["caller"] = "someone-else"
    body = {k: v for k, v in records[1].items() if k != "record_hash"}
    records[1]["record_hash"] = hashlib.sha256(audit_module.canonical_json(body)).hexdigest()
    log.path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    assert "line 2 (seq 1): record was edited (hash mismatch)" in verify(log).problems


def test_an_inserted_record_is_detected(log):
    lines = lines_of(log)
    lines.insert(3, lines[2])
    log.path.write_text("".join(lines), encoding="utf-8")

    report = verify(log)

    assert not report.ok
    assert any(p.startswith("line 4: seq 2 where 3 was expected") for p in report.problems)


def test_a_deleted_middle_record_is_detected(log):
    lines = lines_of(log)
    del lines[1]
    log.path.write_text("".join(lines), encoding="utf-8")

    report = verify(log)

    assert any("line 2: seq 2 where 1 was expected" in p for p in report.problems)
    assert any("prev_hash does not match" in p for p in report.problems)


def test_a_deleted_last_record_is_detected_through_the_head(log):
    lines = lines_of(log)
    log.path.write_text("".join(lines[:-1]), encoding="utf-8")

    report = verify(log)

    assert report.problems == [
        "the head counts 5 record(s) but the log holds 4: 1 record(s) were deleted from the end"
    ]


def test_an_emptied_log_is_detected_through_the_head(log):
    log.path.write_text("", encoding="utf-8")

    assert not verify(log).ok


def test_a_head_one_record_behind_is_a_note_not_a_problem(log):
    records = list(log.records())
    head = {"count": 4, "last_hash": records[3]["record_hash"], "updated": "2026-01-01T00:00:00"}
    log.head_path.write_text(json.dumps(head), encoding="utf-8")

    report = verify(log)

    assert report.ok
    assert any("after the head's count" in note for note in report.notes)


def test_the_head_never_moves_back_when_an_earlier_append_finishes_last(log):
    last = list(log.records())[-1]["record_hash"]

    log._advance_head(3, "0" * 64)

    assert log.read_head()["count"] == 5
    assert log.read_head()["last_hash"] == last


def test_appends_continue_the_chain_across_log_objects(log):
    AuditLog(log.path, KEY, fsync=False).append([entry(5)])

    assert verify(log).n_records == 6
    assert verify(log).ok


def test_a_partial_last_line_refuses_further_appends(log):
    with open(log.path, "a", encoding="utf-8") as handle:
        handle.write('{"seq": 5, "trunc')

    with pytest.raises(audit_module.AuditIntegrityError, match="incomplete record"):
        log.append([entry(6)])


def test_concurrent_processes_extend_one_unbroken_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
        futures = [pool.submit(append_many, str(path), KEY, worker, 40) for worker in range(4)]
        for future in futures:
            future.result()

    report = verify(AuditLog(path, KEY))
    assert report.ok, report.summary()
    assert report.n_records == 160


def test_the_generated_key_is_kept_with_owner_only_permissions_and_reused(tmp_path):
    settings = Settings(audit_log=tmp_path / "a" / "audit.jsonl")

    first = AuditLog.from_settings(settings)
    second = AuditLog.from_settings(settings)

    salt_file = tmp_path / "a" / "audit.salt"
    assert stat.S_IMODE(salt_file.stat().st_mode) == 0o600
    assert first.key == second.key
    assert len(first.key) == 64


def test_verifying_without_the_key_file_says_which_key_is_missing(tmp_path):
    settings = Settings(audit_log=tmp_path / "audit.jsonl")

    with pytest.raises(AuditWriteError, match="audit.salt does not exist"):
        AuditLog.from_settings(settings, create_key=False)


def test_an_unwritable_audit_log_fails_the_prediction_closed_with_503(make_client):
    client = make_client()
    folder = client.audit_log.parent
    shutil.rmtree(folder)
    folder.write_text("not a folder", encoding="utf-8")

    response = client.post("/v1/prognosis", json=example("g1_gut_tace.json"))

    assert response.status_code == 503
    body = response.json()
    assert set(body) == {"error"}
    assert "could not be written" in body["error"]
    assert "no prediction is returned without an audit record" in body["error"]
    assert str(folder) not in body["error"]  # the server's paths stay in its log


def test_a_full_disk_fails_a_batch_closed_with_503_and_records_nothing(make_client, monkeypatch):
    client = make_client()

    def disk_full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audit_module.os, "fsync", disk_full)
    response = client.post("/v1/prognosis/batch", json=example("batch.json"))

    assert response.status_code == 503
    assert "No space left on device" in response.json()["error"]
    monkeypatch.undo()


def test_the_service_refuses_to_start_when_the_audit_log_cannot_be_created(
    service_module, settings_env, tmp_path
):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder", encoding="utf-8")
    settings_env(audit_log=blocker / "audit.jsonl")

    with pytest.raises(AuditWriteError, match="could not be"):
        service_module.NetPrognosis()
