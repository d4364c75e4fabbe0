"""Patient values sent through every input path, in valid and invalid requests, reach the
service but never its output (every logger at DEBUG), the audit log or a file it writes.

One `bentoml serve --verbose` (as deployed, bearer auth, audit log) takes every request:
the JSON API (one patient, batch), the clinician form driven in Chromium, FHIR R4, CDS Hooks
patient-view and order-select and their feedback, and requests refused by the guard. Each
carries canaries: values generated for this run (seeded), so that none is in any source file
and each can only have come from the request. The answers show that every canary of a valid
request was received (audit digests, echoed patient fields), and each invalid request was
refused at the layer meant to refuse it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from model.schema import Patient
from serving.audit import AuditLog
from serving.security import install_log_redaction
from serving.settings import Settings
from tests.reliability.conftest import AUTH, TOKEN
from tests.served import Served
from tests.serving.web_conftest import CHROMIUM, chromium, page_opener

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "data" / "examples"
SEED = 4417
EXAMPLE_PATIENT_ID = "net-g2-pancreas"
PATIENT_VIEW = "/cds-services/net-embolotherapy-prognosis"
ORDER_SELECT = "/cds-services/net-embolotherapy-prognosis-order"
FEEDBACK = PATIENT_VIEW + "/feedback"
JSON_TYPE = {"content-type": "application/json"}
ACCESS_LINE = '%s - "%s %s HTTP/%s" %d'
"""uvicorn's access log line (uvicorn/protocols/http/h11_impl.py)."""
STOPPED_IN_THE_BROWSER = {
    "form_age_fraction",
    "form_local_burden",
    "form_local_ki67",
    "form_refused_burden",
}
"""Canaries typed into the form that never leave the browser: the form refuses the age, and
the test swaps the refused request's burden for `form_burden_over` on its way out."""
SKIPPED_FOLDERS = frozenset({".git", ".venv", "__pycache__", ".ruff_cache", ".mypy_cache"})


class Canaries:
    """Values unique to this run: numbers with enough decimals, words, ids and dates."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.values: dict[str, str] = {}

    def number(self, name: str, low: float, high: float, decimals: int = 4) -> float:
        while True:
            text = f"{self.rng.uniform(low, high):.{decimals}f}"
            if not text.endswith("0") and text not in self.values.values():
                break
        self.values[name] = text
        return float(text)

    def word(self, name: str, prefix: str = "Cnry") -> str:
        text = f"{prefix}{name.title().replace('_', '')}{self.rng.randrange(16**8):08x}"
        self.values[name] = text
        return text

    def digits(self, name: str, count: int = 11) -> str:
        text = str(self.rng.randrange(10 ** (count - 1), 10**count))
        self.values[name] = text
        return text

    def date(self, name: str) -> str:
        text = f"{self.rng.randrange(1941, 1960)}-{self.rng.randrange(1, 13):02d}-"
        text += f"{self.rng.randrange(1, 29):02d}"
        self.values[name] = text
        return text

    def uuid(self, name: str) -> str:
        text = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self.values[name] = text
        return text

    def forget(self, name: str) -> None:
        """Drop a canary that a request overwrote before it was sent."""
        del self.values[name]

    def within(self, text: str) -> set[str]:
        """The names of the canaries that `text` holds, in any letter case."""
        text = text.lower()
        return {name for name, value in self.values.items() if value.lower() in text}


@dataclass
class Sent:
    """One request: the input path it took, whether it was valid, and what came back."""

    path: str
    label: str
    valid: bool
    canaries: set[str]
    status: int
    answer: httpx.Response | None = None


@dataclass
class Exchange:
    """Everything the module sent, and the server it sent it to."""

    server: Served
    canaries: Canaries
    sent: list[Sent] = field(default_factory=list)
    form: dict = field(default_factory=dict)
    started: float = 0.0
    server_tmp: Path | None = None
    metrics: str = ""

    def audit(self) -> AuditLog:
        return AuditLog.from_settings(Settings(audit_log=self.server.audit_log), create_key=False)

    def records(self) -> list[dict]:
        return list(self.audit().records())


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def repointed(document: dict, patient_id: str) -> dict:
    """`document` about the patient `patient_id` (ids, references and full URLs)."""
    return json.loads(json.dumps(document).replace(EXAMPLE_PATIENT_ID, patient_id))


def resources(document: dict) -> Iterator[dict]:
    """Every resource of a Bundle or of a CDS Hooks request's prefetch."""
    bundles = [document] if document.get("resourceType") == "Bundle" else []
    for value in document.get("prefetch", {}).values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            bundles.append(value)
        elif isinstance(value, dict):
            yield value
    for bundle in bundles:
        yield from (entry["resource"] for entry in bundle.get("entry", []))


def resource(document: dict, resource_id: str) -> dict:
    return next(r for r in resources(document) if r.get("id") == resource_id)


def identify(patient: dict, canaries: Canaries, prefix: str) -> None:
    """Give a FHIR Patient a record number, a name, a birth date, a phone and an address."""
    patient["identifier"] = [{"system": "urn:oid:1.2.3", "value": canaries.digits(f"{prefix}_mrn")}]
    patient["name"] = [
        {
            "family": canaries.word(f"{prefix}_family"),
            "given": [canaries.word(f"{prefix}_given")],
        }
    ]
    patient["birthDate"] = canaries.date(f"{prefix}_birth_date")
    patient["telecom"] = [{"system": "phone", "value": canaries.digits(f"{prefix}_phone", 10)}]
    patient["address"] = [{"line": [canaries.word(f"{prefix}_street")], "city": "Leeds"}]


# --- the requests ------------------------------------------------------------------------------


class Sender:
    """Sends requests to the served service and records each one."""

    def __init__(self, exchange: Exchange, client: httpx.Client) -> None:
        self.exchange = exchange
        self.client = client

    def __call__(
        self,
        path: str,
        label: str,
        route: str,
        body: dict | bytes,
        *,
        valid: bool,
        expect: int,
        headers: dict | None = None,
    ) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent_headers = {**JSON_TYPE, **(AUTH if headers is None else headers)}
        response = self.client.post(route, content=content, headers=sent_headers)
        text = content.decode("utf-8", errors="replace") + json.dumps(sent_headers)
        canaries = self.exchange.canaries.within(text)
        assert canaries, f"{label}: the request carries no canary"
        assert response.status_code == expect, (label, response.status_code, response.text[:400])
        self.exchange.sent.append(
            Sent(path, label, valid, canaries, response.status_code, response)
        )
        return response


def json_api(send: Sender, canaries: Canaries) -> None:
    patient = example("g2_pancreas_sirt.json")["patient"]
    valid = {
        **patient,
        "ki67_percent": canaries.number("ki67", 3.5, 19.5, decimals=5),
        "tumor_burden_percent": canaries.number("burden", 20, 60),
    }
    follow_up = canaries.number("months_since_treatment", 2, 10)
    path = "JSON API, one patient"
    send(path, "valid", "/v1/prognosis", {"patient": valid}, valid=True, expect=200)
    send(
        path,
        "valid, seen at follow-up",
        "/v1/prognosis",
        {"patient": valid, "months_since_treatment": follow_up},
        valid=True,
        expect=200,
    )
    invalid = {
        "age with a fraction": {"age_years": canaries.number("age_fraction", 40, 80, 3)},
        "burden over 100": {"tumor_burden_percent": canaries.number("burden_over", 101, 199)},
        "unknown primary site": {"primary_site": canaries.word("primary_site", "cnry")},
        "sex given as a number": {"sex": canaries.number("sex_number", 1, 9, 5)},
        "boolean given as text": {"somatostatin_analog": canaries.word("boolean_text", "cnry")},
        "unknown field": {canaries.word("field_name"): canaries.word("field_value")},
    }
    for label, change in invalid.items():
        send(
            path, label, "/v1/prognosis", {"patient": {**valid, **change}}, valid=False, expect=400
        )
    months = canaries.number("months_over", 121, 999)
    send(
        path,
        "follow-up over 120 months",
        "/v1/prognosis",
        {"patient": valid, "months_since_treatment": months},
        valid=False,
        expect=400,
    )
    malformed = f'{{"patient": {{"age_years": {canaries.word("malformed", "cnry")}'
    send(path, "malformed JSON", "/v1/prognosis", malformed.encode(), valid=False, expect=400)
    beyond = canaries.number("months_beyond_curve", 119.5, 119.99)
    send(
        path,
        "follow-up beyond the survival curve (422)",
        "/v1/prognosis",
        {"patient": valid, "months_since_treatment": beyond},
        valid=False,
        expect=422,
    )

    path = "JSON API, batch"
    first = {**patient, "tumor_burden_percent": canaries.number("batch_burden_1", 20, 60)}
    second = {**patient, "ki67_percent": canaries.number("batch_ki67_2", 3.5, 19.5, 5)}
    send(
        path, "valid", "/v1/prognosis/batch", {"patients": [first, second]}, valid=True, expect=200
    )
    spoiled = {**patient, "tumor_burden_percent": canaries.number("batch_burden_valid", 20, 60)}
    wrong = {**patient, "primary_site": canaries.word("batch_site", "cnry")}
    send(
        path,
        "one invalid patient",
        "/v1/prognosis/batch",
        {"patients": [spoiled, wrong]},
        valid=False,
        expect=400,
    )
    send(
        path,
        "patients not a list",
        "/v1/prognosis/batch",
        {"patients": canaries.word("batch_text", "cnry")},
        valid=False,
        expect=400,
    )


def fhir_bundle(canaries: Canaries, prefix: str) -> dict:
    bundle = repointed(
        example("fhir/g2_pancreas_sirt.bundle.json"), canaries.word(f"{prefix}_patient_id")
    )
    identify(resource(bundle, canaries.values[f"{prefix}_patient_id"]), canaries, prefix)
    resource(bundle, "burden")["valueQuantity"]["value"] = canaries.number(
        f"{prefix}_burden", 20, 60
    )
    resource(bundle, "ki67")["valueQuantity"]["value"] = canaries.number(
        f"{prefix}_ki67", 3.5, 19.5, 5
    )
    return bundle


def fhir(send: Sender, canaries: Canaries) -> None:
    path, route = "FHIR R4", "/v1/fhir/prognosis"
    send(path, "valid", route, fhir_bundle(canaries, "fhir"), valid=True, expect=200)

    def spoilt(prefix: str, resource_id: str | None, change) -> dict:
        bundle = fhir_bundle(canaries, prefix)
        change(resource(bundle, resource_id or canaries.values[f"{prefix}_patient_id"]))
        return bundle

    cases = {
        "gender outside its value set": spoilt(
            "fhir_gender", None, lambda r: r.update(gender=canaries.word("gender_code", "cnry"))
        ),
        "birth date not a date": spoilt(
            "fhir_date", None, lambda r: r.update(birthDate=canaries.word("bad_date", "cnry"))
        ),
        "value that is not a number": spoilt(
            "fhir_value",
            "burden",
            lambda r: r["valueQuantity"].update(value=canaries.word("value_text", "cnry")),
        ),
        "contained resource of an unknown type": spoilt(
            "fhir_type",
            "ki67",
            lambda r: r.update(contained=[{"resourceType": canaries.word("resource_type")}]),
        ),
    }
    for label, bundle in cases.items():
        send(path, label, route, bundle, valid=False, expect=400)
    over = fhir_bundle(canaries, "fhir_over")
    resource(over, "burden")["valueQuantity"]["value"] = canaries.number(
        "fhir_burden_over", 101, 199
    )
    for overwritten in ("fhir_date_birth_date", "fhir_value_burden", "fhir_over_burden"):
        canaries.forget(overwritten)
    send(path, "burden over 100 (422)", route, over, valid=False, expect=422)
    not_bundle = {"resourceType": canaries.word("not_bundle"), "id": "x"}
    send(path, "not a Bundle", route, not_bundle, valid=False, expect=400)
    malformed = f'{{"resourceType": "Bundle", "id": "{canaries.word("fhir_malformed")}"'
    send(path, "malformed JSON", route, malformed.encode(), valid=False, expect=400)


def cds_request(canaries: Canaries, prefix: str, name: str) -> dict:
    patient_id = canaries.word(f"{prefix}_patient_id")
    request = repointed(example(f"fhir/{name}"), patient_id)
    request["hookInstance"] = canaries.uuid(f"{prefix}_hook_instance")
    request["fhirServer"] = f"https://{canaries.word(f'{prefix}_fhir_server', 'cnry')}.org/fhir"
    request["context"]["userId"] = f"Practitioner/{canaries.word(f'{prefix}_user_id')}"
    request["fhirAuthorization"] = {
        "access_token": canaries.word(f"{prefix}_access_token"),
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": canaries.word(f"{prefix}_client_subject"),
    }
    identify(request["prefetch"]["patient"], canaries, prefix)
    resource(request, "burden")["valueQuantity"]["value"] = canaries.number(
        f"{prefix}_burden", 20, 60
    )
    return request


def cds_hooks(send: Sender, canaries: Canaries) -> dict:
    """Both services, valid and not, and the form link of a card; the valid patient-view
    call's card."""
    path = "CDS Hooks patient-view"
    answer = send(
        path,
        "valid",
        PATIENT_VIEW,
        cds_request(canaries, "cds", "cds_patient_view.json"),
        valid=True,
        expect=200,
    )
    card = answer.json()["cards"][0]
    missing = cds_request(canaries, "cds_missing", "cds_patient_view.json")
    missing["prefetch"]["observations"] = None
    canaries.forget("cds_missing_burden")
    send(
        path,
        "missing prefetch, nothing to fetch it with: a 412, no prognosis",
        PATIENT_VIEW,
        missing,
        valid=True,
        expect=412,
    )

    def spoilt(prefix: str, change) -> dict:
        request = cds_request(canaries, prefix, "cds_patient_view.json")
        change(request)
        return request

    cases = {
        "another hook": spoilt("cds_hook", lambda r: r.update(hook=canaries.word("hook_name"))),
        "patient id with a space": spoilt(
            "cds_id",
            lambda r: r["context"].update(patientId=f"{canaries.word('bad_patient_id')} x"),
        ),
        "prefetched value not a number": spoilt(
            "cds_value",
            lambda r: resource(r, "ki67")["valueQuantity"].update(
                value=canaries.word("prefetch_value_text", "cnry")
            ),
        ),
        "prefetched patient not the context's": spoilt(
            "cds_other",
            lambda r: r["prefetch"]["patient"].update(id=canaries.word("other_patient_id")),
        ),
    }
    for label, request in cases.items():
        send(path, label, PATIENT_VIEW, request, valid=False, expect=400)
    malformed = (
        f'{{"hook": "patient-view", "context": {{"patientId": "{canaries.word("cds_malformed")}"'
    )
    send(path, "malformed JSON", PATIENT_VIEW, malformed.encode(), valid=False, expect=400)

    link = card["links"][0]["url"]
    response = send.client.get(link)
    assert response.status_code == 200
    send.exchange.sent.append(
        Sent("form link of a CDS card", "GET", True, send.exchange.canaries.within(link), 200)
    )

    path = "CDS Hooks order-select"
    order = cds_request(canaries, "order", "cds_order_select.json")
    order_id = canaries.word("order_id")
    order["context"]["selections"] = [f"ServiceRequest/{order_id}"]
    order["context"]["draftOrders"]["entry"][0]["resource"]["id"] = order_id
    send(path, "valid", ORDER_SELECT, order, valid=True, expect=200)
    unselected = cds_request(canaries, "order_bad", "cds_order_select.json")
    unselected["context"]["selections"] = canaries.word("selections_text")
    send(path, "selections not a list", ORDER_SELECT, unselected, valid=False, expect=400)
    return card


def feedback(send: Sender, canaries: Canaries, card: dict) -> None:
    path = "CDS Hooks feedback"
    entries = [
        {
            "card": card["uuid"],
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": canaries.uuid("suggestion_id")}],
            "outcomeTimestamp": "2026-03-02T09:15:00Z",
            canaries.word("feedback_field_name"): canaries.word("feedback_field_value"),
        },
        {
            "card": card["uuid"],
            "outcome": "overridden",
            "overrideReason": {
                "reason": {
                    "system": f"urn:{canaries.word('reason_system')}",
                    "code": canaries.word("reason_code"),
                    "display": canaries.word("reason_display"),
                },
                "userComment": f"{canaries.word('comment')} chose TAE after the board",
            },
            "outcomeTimestamp": "2026-03-02T09:16:00Z",
        },
    ]
    send(path, "valid", FEEDBACK, {"feedback": entries}, valid=True, expect=200)
    cases = {
        "card not a uuid": {**entries[0], "card": canaries.word("card_text")},
        "unknown outcome": {
            **entries[1],
            "outcome": canaries.word("outcome_text"),
            "overrideReason": {"userComment": canaries.word("comment_refused")},
        },
        "suggestions not a list": {**entries[0], "acceptedSuggestions": canaries.word("sugg")},
    }
    for label, entry in cases.items():
        send(path, label, FEEDBACK, {"feedback": [entry]}, valid=False, expect=400)
    malformed = f'{{"feedback": [{{"card": "{canaries.word("feedback_malformed")}"'
    send(path, "malformed JSON", FEEDBACK, malformed.encode(), valid=False, expect=400)


def refused_by_the_guard(send: Sender, canaries: Canaries) -> None:
    """Requests with patient values that never pass the guard: their bodies are not read."""
    path = "refused by the guard"
    patient = example("g2_pancreas_sirt.json")["patient"]
    body = {
        "patient": {**patient, "tumor_burden_percent": canaries.number("unauth_burden", 20, 60)}
    }
    send(path, "no token", "/v1/prognosis", body, valid=False, expect=401, headers={})
    wrong = {"authorization": f"Bearer {canaries.word('wrong_token')}"}
    send(path, "unknown token", "/v1/prognosis", body, valid=False, expect=403, headers=wrong)
    spaced = {"authorization": f"Bearer {canaries.word('spaced_token')} x"}
    send(
        path, "malformed token", "/v1/fhir/prognosis", body, valid=False, expect=401, headers=spaced
    )
    cds = cds_request(canaries, "unauth_cds", "cds_patient_view.json")
    send(path, "CDS call without a token", PATIENT_VIEW, cds, valid=False, expect=401, headers={})
    text = f"{{{canaries.word('too_large')}"
    send(
        path,
        "body over the size limit (413)",
        "/v1/prognosis",
        (text + " " * 1_000_000 + "}").encode(),
        valid=False,
        expect=413,
    )


# --- the clinician form, in Chromium ---------------------------------------------------------


def fill(page, canaries: Canaries, prefix: str, age: str = "64") -> None:
    page.fill("#field-age_years", age)
    page.select_option("#field-sex", "female")
    page.select_option("#field-who_grade", "G2")
    page.fill("#field-ki67_percent", canaries.values[f"{prefix}_ki67"])
    page.fill("#field-tumor_burden_percent", canaries.values[f"{prefix}_burden"])
    page.select_option("#field-primary_site", "pancreas")
    page.select_option("#field-somatostatin_analog", "true")
    page.select_option("#field-planned_modality", "TACE")


def submit(page) -> None:
    page.focus("#field-tumor_burden_percent")
    page.keyboard.press("Enter")


def wait_for_results(page) -> None:
    page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('Prognosis ready')",
        timeout=30_000,
    )


def clinician_form(exchange: Exchange, card: dict) -> None:
    """The form as a clinician uses it, with canary values, and the CDS card's form link."""
    canaries = exchange.canaries
    for prefix in ("form", "form_refused", "form_local"):
        canaries.number(f"{prefix}_ki67", 3.5, 19.5, decimals=5)
        canaries.number(f"{prefix}_burden", 20, 60)
    over = canaries.number("form_burden_over", 101, 199)
    age_fraction = f"{canaries.number('form_age_fraction', 40, 80, 3)}"
    wrong_token = canaries.word("form_wrong_token")
    target = SimpleNamespace(base_url=exchange.server.base)
    with chromium() as browser, page_opener(browser) as open_page:
        web = open_page(target)
        page = web.page
        page.locator("#token-dialog").wait_for(state="visible")
        page.fill("#token-input", wrong_token)
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => document.getElementById('token-reason').textContent.includes('did not accept')"
        )
        page.fill("#token-input", TOKEN)
        page.keyboard.press("Enter")
        page.locator("#token-dialog").wait_for(state="hidden")

        fill(page, canaries, "form")
        submit(page)
        wait_for_results(page)
        [answered] = web.api_requests("/v1/prognosis")

        fill(page, canaries, "form_local", age=age_fraction)
        submit(page)
        page.locator("[data-field='age_years'] .error").wait_for(state="visible")
        stopped = len(web.api_requests("/v1/prognosis"))

        def out_of_range(route) -> None:
            body = json.loads(route.request.post_data)
            body["patient"]["tumor_burden_percent"] = over
            route.continue_(post_data=json.dumps(body))

        page.route("**/v1/prognosis", out_of_range)
        fill(page, canaries, "form_refused")
        submit(page)
        page.locator("[data-field='tumor_burden_percent'] .error").wait_for(state="visible")
        refused = web.api_requests("/v1/prognosis")[-1]
        page.unroute("**/v1/prognosis")

        exchange.form = form = {
            "answered": answered,
            "answered_status": answered.response().status,
            "answered_answer": answered.response().json(),
            "stopped_requests": stopped,
            "refused_status": refused.response().status,
            "refused_answer": refused.response().json(),
        }
        link = card["links"][0]["url"]
        page.goto(link)
        page.wait_for_function(
            "text => document.getElementById('status').textContent.includes(text)",
            arg="filled in from the link",
        )
        filled = page.input_value("#field-tumor_burden_percent")
        address = page.url
        submit(page)
        wait_for_results(page)
        linked = web.api_requests("/v1/prognosis")[-1]
        form |= {
            "filled_burden": filled,
            "address_after_filling": address,
            "linked": linked,
            "linked_status": linked.response().status,
            "linked_answer": linked.response().json(),
        }
        web.console_errors[:] = [
            e
            for e in web.console_errors
            if not any(f"status of {s} " in e for s in (400, 401, 403))
        ]
        form |= {
            "link": link,
            "blocked": list(web.blocked),
            "console_errors": list(web.console_errors),
            "hosts": {urlsplit(r.url).hostname for r in web.requests},
        }
    path = "clinician form (Chromium)"
    exchange.sent += [
        Sent(path, "token dialog, wrong token", False, {"form_wrong_token"}, 403),
        Sent(path, "valid", True, canaries.within(answered.post_data), form["answered_status"]),
        Sent(
            path,
            "burden over 100, refused by the service",
            False,
            canaries.within(refused.post_data) | {"form_burden_over"},
            form["refused_status"],
        ),
        Sent(
            path,
            "filled in from a CDS card's link",
            True,
            canaries.within(linked.post_data),
            form["linked_status"],
        ),
    ]


# --- fixture -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exchange(serve_module, tmp_path_factory) -> Exchange:
    """Every request of the module, sent to one `bentoml serve --verbose`."""
    server_tmp = tmp_path_factory.mktemp("server-tmp")
    started = time.time()
    server = serve_module(verbose=True, env={"TMPDIR": str(server_tmp)})
    result = Exchange(server, Canaries(SEED), started=started, server_tmp=server_tmp)
    with httpx.Client(base_url=server.base, timeout=120) as client:
        send = Sender(result, client)
        json_api(send, result.canaries)
        fhir(send, result.canaries)
        card = cds_hooks(send, result.canaries)
        feedback(send, result.canaries, card)
        refused_by_the_guard(send, result.canaries)
        if CHROMIUM.is_file():
            clinician_form(result, card)
        result.metrics = client.get("/metrics").text
    time.sleep(1)  # let the worker flush its last log lines
    return result


# --- tests -------------------------------------------------------------------------------------


def test_each_valid_prediction_is_audited_with_the_digest_of_its_canary_values(exchange):
    audit = exchange.audit()
    records = {r["prediction_id"]: r for r in exchange.records() if r.get("kind") is None}
    checked = Counter()

    def digest(patient: dict, months: float | None = None) -> str:
        payload = {
            "patient": Patient.model_validate(patient).model_dump(mode="json"),
            "months_since_treatment": months,
        }
        return audit.input_digest(payload)

    for sent in exchange.sent:
        if not sent.valid or sent.answer is None or sent.path.startswith("CDS Hooks feedback"):
            continue
        request = json.loads(sent.answer.request.content)
        answer = sent.answer.json()
        if sent.path == "JSON API, one patient":
            expected = [
                (
                    answer["prediction_id"],
                    digest(request["patient"], request.get("months_since_treatment")),
                )
            ]
        elif sent.path == "JSON API, batch":
            expected = [
                (one["prediction_id"], digest(patient))
                for one, patient in zip(answer, request["patients"], strict=True)
            ]
        elif sent.path == "FHIR R4":
            burden = exchange.canaries.values["fhir_burden"]
            assert answer["patient"]["tumor_burden_percent"] == float(burden)
            expected = [(answer["prediction_id"], digest(answer["patient"]))]
        else:
            if sent.answer.status_code == 412:
                assert answer["resourceType"] == "OperationOutcome"
                continue
            if not answer["cards"][0].get("links"):
                assert answer["cards"][0]["summary"].startswith("No prognosis")
                continue
            [card] = answer["cards"]
            fields = dict(parse_qsl(urlsplit(card["links"][0]["url"]).query))
            patient = Patient.model_validate_strings(fields).model_dump(mode="json")
            prefix = "cds" if sent.path.endswith("patient-view") else "order"
            burden = exchange.canaries.values[f"{prefix}_burden"]
            assert patient["tumor_burden_percent"] == float(burden)
            expected = [(card["uuid"], digest(patient))]
        for prediction_id, input_hmac in expected:
            assert records[prediction_id]["input_hmac"] == input_hmac, (sent.path, sent.label)
            checked[sent.path] += 1

    assert checked == {
        "JSON API, one patient": 2,
        "JSON API, batch": 2,
        "FHIR R4": 1,
        "CDS Hooks patient-view": 1,
        "CDS Hooks order-select": 1,
    }


def test_valid_feedback_is_audited_with_the_digest_of_the_entries_that_carry_canaries(exchange):
    audit = exchange.audit()
    [sent] = [s for s in exchange.sent if s.path == "CDS Hooks feedback" and s.valid]
    entries = json.loads(sent.answer.request.content)["feedback"]
    records = [r for r in exchange.records() if r.get("kind") == "feedback"]

    assert [r["input_hmac"] for r in records] == [audit.input_digest(e) for e in entries]
    assert [r["feedback"]["override_reason"] for r in records] == [
        None,
        {"system": "other", "code": "other"},
    ]
    assert {"comment", "reason_code", "suggestion_id", "feedback_field_value"} <= sent.canaries


def test_each_invalid_request_was_refused_at_the_layer_meant_to_refuse_it(exchange):
    refusals = {(s.path, s.label): s for s in exchange.sent if not s.valid and s.answer is not None}

    def located(path: str, label: str) -> list:
        return [tuple(d["loc"]) for d in refusals[path, label].answer.json()["detail"]]

    one = "JSON API, one patient"
    assert located(one, "age with a fraction") == [("patient", "age_years")]
    assert located(one, "burden over 100") == [("patient", "tumor_burden_percent")]
    assert located(one, "unknown primary site") == [("patient", "primary_site")]
    assert located(one, "sex given as a number") == [("patient", "sex")]
    assert located(one, "boolean given as text") == [("patient", "somatostatin_analog")]
    assert located(one, "follow-up over 120 months") == [("months_since_treatment",)]
    assert located(one, "malformed JSON") == [()]
    [(_, unknown)] = located(one, "unknown field")
    assert unknown == exchange.canaries.values["field_name"]
    assert (
        "months_since_treatment"
        in refusals[one, "follow-up beyond the survival curve (422)"].answer.json()["error"]
    )
    assert located("JSON API, batch", "one invalid patient") == [("patients", 1, "primary_site")]
    expressions = {
        label: [
            i.get("expression", [""])[0] for i in refusals["FHIR R4", label].answer.json()["issue"]
        ]
        for label in (
            "gender outside its value set",
            "birth date not a date",
            "value that is not a number",
            "burden over 100 (422)",
        )
    }
    assert expressions["gender outside its value set"] == ["Bundle.entry[0].resource.gender"]
    assert expressions["birth date not a date"] == ["Bundle.entry[0].resource.birthDate"]
    assert expressions["value that is not a number"][0].endswith("valueQuantity.value")
    assert "tumor_burden_percent" in refusals["FHIR R4", "burden over 100 (422)"].answer.text
    view = "CDS Hooks patient-view"
    assert "`hook` must be" in refusals[view, "another hook"].answer.json()["error"]
    assert "context.patientId" in refusals[view, "patient id with a space"].answer.json()["error"]
    assert "prefetch.patient" in refusals[view, "prefetched patient not the context's"].answer.text
    assert "card must be the uuid" in refusals["CDS Hooks feedback", "card not a uuid"].answer.text
    guard = {
        label: s.status for (path, label), s in refusals.items() if path == "refused by the guard"
    }
    assert guard == {
        "no token": 401,
        "unknown token": 403,
        "malformed token": 401,
        "CDS call without a token": 401,
        "body over the size limit (413)": 413,
    }


def test_the_form_sends_its_canaries_stops_an_invalid_age_and_fills_in_from_a_card_link(
    exchange,
):
    if not exchange.form:
        pytest.skip(f"the form needs Debian's chromium at {CHROMIUM} (make system-deps)")
    form, canaries = exchange.form, exchange.canaries.values
    records = {r["prediction_id"]: r for r in exchange.records()}
    audit = exchange.audit()

    def audited_as_sent(request, answer: dict) -> dict:
        patient = json.loads(request.post_data)["patient"]
        payload = {
            "patient": Patient.model_validate(patient).model_dump(mode="json"),
            "months_since_treatment": None,
        }
        assert records[answer["prediction_id"]]["input_hmac"] == audit.input_digest(payload)
        return patient

    typed = audited_as_sent(form["answered"], form["answered_answer"])
    linked = audited_as_sent(form["linked"], form["linked_answer"])

    assert (form["answered_status"], form["linked_status"]) == (200, 200)
    assert typed["tumor_burden_percent"] == float(canaries["form_burden"])
    assert typed["ki67_percent"] == float(canaries["form_ki67"])
    assert form["filled_burden"] == canaries["cds_burden"]
    assert linked["tumor_burden_percent"] == float(canaries["cds_burden"])
    assert urlsplit(form["address_after_filling"]).query == ""
    assert form["stopped_requests"] == 1
    assert form["refused_status"] == 400
    assert form["refused_answer"]["detail"][0]["loc"] == ["patient", "tumor_burden_percent"]
    assert canaries["cds_burden"] in form["link"]
    assert form["blocked"] == []
    assert form["hosts"] == {"127.0.0.1"}
    assert form["console_errors"] == []


def files_the_service_wrote(exchange: Exchange) -> dict[Path, str]:
    """The text of every file in the audit folder and the server's TMPDIR, and of every file
    changed since it started under BENTOML_HOME (metrics) and the working directory.

    Files that other processes remove while they are read are passed over.
    """
    paths = [*exchange.server.audit_log.parent.rglob("*"), *exchange.server_tmp.rglob("*")]
    for root in (Path(os.environ["BENTOML_HOME"]), ROOT):
        for folder, names, filenames in os.walk(root):
            names[:] = [n for n in names if n not in SKIPPED_FOLDERS]
            paths += [Path(folder, name) for name in filenames]
    contents = {}
    for path in paths:
        with contextlib.suppress(OSError):
            if path.is_file() and path.stat().st_mtime >= exchange.started:
                contents[path] = path.read_bytes().decode("utf-8", errors="replace")
    return contents


def test_no_canary_appears_in_the_output_the_audit_log_or_any_file_the_service_wrote(exchange):
    canaries = exchange.canaries
    output = exchange.server.output()
    audit_text = exchange.server.audit_log.read_text(encoding="utf-8")
    contents = files_the_service_wrote(exchange)

    assert "[DEBUG]" in output  # every logger at DEBUG
    assert "Exception on /v1/prognosis [POST]: rejected invalid input" in output
    assert "/cds-services/net-embolotherapy-prognosis/feedback" in output  # the access log
    assert 'GET /?<redacted> HTTP/1.1" 200' in output  # uvicorn's access line, query removed
    assert canaries.within(output) == set()
    assert canaries.within(audit_text) == set()
    assert {
        str(path): canaries.within(text) for path, text in contents.items() if canaries.within(text)
    } == {}
    assert canaries.within(exchange.metrics) == set()

    pairs = {(name, s.path) for s in exchange.sent for name in s.canaries}
    paths = {s.path for s in exchange.sent}
    valid = sum(s.valid for s in exchange.sent)
    records = len(audit_text.splitlines())
    print(
        f"\n{len(canaries.values)} canaries, {len(pairs)} canary x input-path pairs over "
        f"{len(paths)} input paths; {valid} valid and {len(exchange.sent) - valid} invalid "
        f"requests; scanned {len(output.encode())} bytes of output, {records} audit records, "
        f"{len(contents)} files ({sum(len(t) for t in contents.values())} characters) and "
        f"{len(exchange.metrics)} characters of /metrics"
    )
    assert len(paths) == (9 if exchange.form else 8)
    carried = {name for s in exchange.sent for name in s.canaries}
    assert set(canaries.values) - carried == (STOPPED_IN_THE_BROWSER if exchange.form else set())


def test_uvicorn_access_lines_keep_the_path_but_lose_the_query():
    logger = logging.getLogger("uvicorn.access")
    install_log_redaction()
    args = ("127.0.0.1:5000", "GET", "/?age_years=64&tumor_burden_percent=41.2783", "1.1", 200)
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, ACCESS_LINE, args, None)
    plain = logger.makeRecord(
        logger.name,
        logging.INFO,
        __file__,
        1,
        ACCESS_LINE,
        args[:2] + ("/v1/model", *args[3:]),
        None,
    )

    assert all(f.filter(record) for f in logger.filters)
    assert all(f.filter(plain) for f in logger.filters)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /?<redacted> HTTP/1.1" 200'
    assert plain.getMessage() == '127.0.0.1:5000 - "GET /v1/model HTTP/1.1" 200'
