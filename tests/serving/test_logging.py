"""Patient values never reach a log record or the audit log, valid request or not."""

from __future__ import annotations

import logging
import sys

import pytest

from serving.security import RedactingFilter
from tests.serving.conftest import example

CANARIES = ("77.123456", "918273", "CANARY-xyz", "CANARY-key")


def canary_requests() -> list[tuple[str, dict | bytes]]:
    patient = dict(example("g2_pancreas_sirt.json")["patient"])
    valid = {"patient": {**patient, "tumor_burden_percent": 77.123456}}
    invalid = {
        "patient": {
            **patient,
            "tumor_burden_percent": 77.123456,
            "age_years": 918273,
            "primary_site": "CANARY-xyz",
            "CANARY-key": "CANARY-xyz",
        }
    }
    not_json = b'{"patient": {"age_years": 918273, "primary_site": "CANARY-xyz",'
    return [
        ("/v1/prognosis", valid),
        ("/v1/prognosis", invalid),
        ("/v1/prognosis", not_json),
        ("/v1/prognosis/batch", {"patients": [valid["patient"], invalid["patient"]]}),
        ("/v1/prognosis/batch", {"patients": [valid["patient"]]}),
        ("/v1/prognosis", {**valid, "months_since_treatment": 918273}),
    ]


def formatted(record: logging.LogRecord) -> str:
    return logging.Formatter("%(name)s %(levelname)s %(message)s").format(record)


def test_canary_values_appear_in_no_log_record_and_no_audit_record(make_client, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client()

    statuses = []
    for route, body in canary_requests():
        if isinstance(body, bytes):
            response = client.post(
                route, content=body, headers={"content-type": "application/json"}
            )
        else:
            response = client.post(route, json=body)
        statuses.append(response.status_code)

    assert statuses == [200, 400, 400, 400, 200, 400]
    assert len(caplog.records) > 10
    logged = "\n".join(formatted(record) for record in caplog.records)
    audited = client.audit_log.read_text(encoding="utf-8")
    assert len(audited.splitlines()) == 2
    for canary in CANARIES:
        assert canary not in logged
        assert canary not in audited


def test_rejected_input_is_logged_once_as_info_with_the_kinds_of_error(make_client, caplog):
    client = make_client()
    caplog.set_level(logging.DEBUG)
    patient = {**example("g1_gut_tace.json")["patient"], "age_years": 918273}

    client.post("/v1/prognosis", json={"patient": patient})

    [record] = [r for r in caplog.records if "rejected invalid input" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert record.getMessage().endswith(
        "1 validation error(s) of kind less_than_equal (values are not logged)"
    )


def test_other_exceptions_keep_their_traceback_but_lose_their_message():
    value = "-".join(("CANARY", "xyz"))  # built at run time: traceback source lines show code
    try:
        raise KeyError(f"{value} was here")
    except KeyError:
        record = logging.getLogger("test").makeRecord(
            "test", logging.ERROR, __file__, 1, "Exception on %s", ("/v1/x",), sys.exc_info()
        )

    assert RedactingFilter().filter(record)

    text = formatted(record)
    assert "CANARY" not in text
    assert "Traceback (most recent call last)" in text
    assert "builtins.KeyError: <message redacted" in text
    assert "test_other_exceptions_keep_their_traceback" in text


@pytest.mark.parametrize(
    "name", ["bentoml._internal.server.http_app", "bentoml.serve", "uvicorn.error"]
)
def test_the_loggers_that_report_request_exceptions_carry_the_redacting_filter(
    service_module, name
):
    assert any(isinstance(f, RedactingFilter) for f in logging.getLogger(name).filters)
