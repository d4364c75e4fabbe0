"""Fetch or 412: what a CDS Hooks prefetch lacks is fetched from an allow-listed FHIR server
on loopback, exactly the declared searches with the EHR's token, giving the same card as with
the prefetch; without a usable server the call is a 412 OperationOutcome."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from urllib.parse import unquote

import pytest
import yaml

from serving.bounded_http import FetchError, FetchLimits, fetch_json
from serving.cds_hooks import prefetch_templates
from serving.prefetch_fetch import FetchPlan, PrefetchUnavailable, complete_prefetch
from tests.serving.fhir_schema import assert_fhir
from tests.serving.loopback import LoopbackServer, json_route
from tests.serving.test_cds_auth import ISSUER, jwks_server, token  # noqa: F401 (fixture)
from tests.serving.test_cds_hooks import PATIENT_VIEW, example, one_card

ACCESS_TOKEN = "ehr-access-token-123"
PATIENT_ID = "net-g2-pancreas"


def fhir_authorization() -> dict:
    return {
        "access_token": ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "netprognosis",
    }


def searchset(value: dict) -> dict:
    return copy.deepcopy(value) if value.get("resourceType") == "Bundle" else value


@pytest.fixture(scope="module")
def fhir_server() -> Iterator[LoopbackServer]:
    """A FHIR server answering the discovery document's searches with the example's data."""
    server = LoopbackServer()
    prefetch = example("cds_patient_view.json")["prefetch"]
    for key, template in prefetch_templates().items():
        path = "/fhir/" + template.split("?")[0].replace("{{context.patientId}}", PATIENT_ID)
        server.routes[path] = json_route(searchset(prefetch[key]))
    server.routes["/broken/Patient/" + PATIENT_ID] = json_route({}, status=500)
    with server.running():
        yield server


@pytest.fixture
def clients_file(tmp_path, jwks_server, fhir_server):  # noqa: F811 (fixture)
    document = {
        "audience_base_url": "http://testserver",
        "issuers": [
            {
                "iss": ISSUER,
                "jwks_url": f"{jwks_server.base}/jwks.json",
                "fhir_servers": [f"{fhir_server.base}/fhir", f"{fhir_server.base}/broken"],
            }
        ],
    }
    path = tmp_path / "cds-clients.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def call(client, request: dict):
    return client.post(PATIENT_VIEW, json=request, headers={"Authorization": f"Bearer {token()}"})


def without_prefetch(server: str | None, authorization: dict | None = None) -> dict:
    request = example("cds_patient_view.json")
    del request["prefetch"]
    request.pop("fhirServer", None)
    if server is not None:
        request["fhirServer"] = server
    if authorization is not None:
        request["fhirAuthorization"] = authorization
    return request


def comparable(card: dict) -> dict:
    """A card without what differs between two answers for the same patient (the ids)."""
    return {
        "summary": card["summary"],
        "detail": card["detail"],
        "indicator": card["indicator"],
        "suggestions": [s["label"] for s in card["suggestions"]],
        "links": card["links"],
    }


def test_missing_prefetch_is_fetched_and_gives_the_same_card(
    make_client, clients_file, fhir_server
):
    client = make_client(cds_clients_file=clients_file)
    with_prefetch = one_card(call(client, example("cds_patient_view.json")))
    before = len(fhir_server.requests)

    fetched = one_card(
        call(client, without_prefetch(f"{fhir_server.base}/fhir", fhir_authorization()))
    )

    assert comparable(fetched) == comparable(with_prefetch)
    requests = fhir_server.requests[before:]
    rendered = {
        "/fhir/" + t.replace("{{context.patientId}}", PATIENT_ID)
        for t in prefetch_templates().values()
    }
    assert {unquote(path) for path, _ in requests} == rendered
    assert len(requests) == len(rendered)
    assert {headers["authorization"] for _, headers in requests} == {f"Bearer {ACCESS_TOKEN}"}


@pytest.mark.parametrize(
    ("server", "authorization"),
    [
        (None, None),
        ("fhir", None),
        (None, "token"),
        ("https://elsewhere.example.org/fhir", "token"),
        ("broken", "token"),
    ],
    ids=["no fhirServer", "no fhirAuthorization", "no server", "not allow-listed", "server error"],
)
def test_missing_prefetch_that_cannot_be_fetched_is_a_412_operation_outcome(
    make_client, clients_file, fhir_server, server, authorization
):
    client = make_client(cds_clients_file=clients_file, audit_salt="k")
    if server in ("fhir", "broken"):
        server = f"{fhir_server.base}/{server}"

    response = call(
        client, without_prefetch(server, fhir_authorization() if authorization else None)
    )

    assert response.status_code == 412
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = assert_fhir(response.json())
    assert outcome["issue"][0]["code"] == "incomplete"
    assert ACCESS_TOKEN not in response.text
    assert client.audit_log.read_text(encoding="utf-8") == ""


def test_without_client_authentication_nothing_is_fetched(make_client, fhir_server):
    before = len(fhir_server.requests)

    response = make_client().post(
        PATIENT_VIEW, json=without_prefetch(f"{fhir_server.base}/fhir", fhir_authorization())
    )

    assert response.status_code == 412
    assert len(fhir_server.requests) == before


def test_a_patient_who_is_not_a_net_patient_still_gets_a_card_saying_so(make_client):
    request = example("cds_patient_view.json")
    request["prefetch"]["conditions"] = {"resourceType": "Bundle", "type": "searchset", "entry": []}

    card = one_card(make_client().post(PATIENT_VIEW, json=request))

    assert card["summary"].startswith("No prognosis")
    assert "neuroendocrine tumour diagnosis" in card["detail"]


def fake_get(pages: dict[str, dict], seen: list[str]):
    def get(url, *, headers, limits):
        seen.append(url)
        if url not in pages:
            raise FetchError("status-404")
        return pages[url], 100

    return get


def test_search_pages_are_followed_on_the_same_origin_only():
    base = "https://fhir.example.org/r4"
    first = f"{base}/Condition?patient=p1"
    pages = {
        first: {
            "resourceType": "Bundle",
            "entry": [{"resource": {"resourceType": "Condition", "id": "a"}}],
            "link": [{"relation": "next", "url": f"{base}/page2"}],
        },
        f"{base}/page2": {
            "resourceType": "Bundle",
            "entry": [{"resource": {"resourceType": "Condition", "id": "b"}}],
            "link": [{"relation": "next", "url": "https://evil.example.org/page3"}],
        },
    }
    seen: list[str] = []

    completed = complete_prefetch(
        {"patient": {"resourceType": "Patient", "id": "p1"}},
        templates={
            "patient": "Patient/{{context.patientId}}",
            "conditions": "Condition?patient={{context.patientId}}",
        },
        patient_id="p1",
        body={"fhirServer": base, "fhirAuthorization": fhir_authorization()},
        plan=FetchPlan((base,)),
        get=fake_get(pages, seen),
    )

    assert [e["resource"]["id"] for e in completed["conditions"]["entry"]] == ["a", "b"]
    assert seen == [first, f"{base}/page2"]


def test_only_optional_keys_missing_without_a_server_is_answered_as_before():
    prefetch = {"patient": {"resourceType": "Patient"}, "conditions": None}
    templates = {"patient": "Patient/{{context.patientId}}", "procedures": "Procedure?patient=x"}

    assert (
        complete_prefetch(prefetch, templates=templates, patient_id="p", body={}, plan=None)
        == prefetch
    )
    with pytest.raises(PrefetchUnavailable) as refused:
        complete_prefetch(
            prefetch,
            templates={**templates, "conditions": "Condition?patient=x"},
            patient_id="p",
            body={},
            plan=None,
        )
    assert refused.value.message.startswith("the prefetch lacks conditions, which")


@pytest.fixture(scope="module")
def odd_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    server.routes["/big"] = json_route({"data": "x" * 5_000})
    server.routes["/hop"] = lambda *_: (302, {"Location": "/big"}, b"")
    server.routes["/away"] = lambda *_: (302, {"Location": "https://example.org/big"}, b"")

    def slow(*_):
        time.sleep(1.5)
        return 200, {"Content-Type": "application/json"}, b"{}"

    server.routes["/slow"] = slow
    with server.running():
        yield server


@pytest.mark.parametrize(
    ("path", "limits", "reason"),
    [
        ("/big", FetchLimits(5.0, 1_000), "too-large"),
        ("/away", FetchLimits(), "redirect-off-origin"),
        ("/slow", FetchLimits(0.5, 1_000), "network-error"),
        ("/missing", FetchLimits(), "status-404"),
    ],
)
def test_each_bound_of_a_fetch_holds(odd_server, path, limits, reason):
    with pytest.raises(FetchError) as refused:
        fetch_json(odd_server.base + path, limits=limits)

    assert refused.value.reason == reason


def test_a_same_origin_redirect_is_followed_and_plain_http_off_loopback_refused(odd_server):
    assert json.dumps(fetch_json(odd_server.base + "/hop")).startswith('{"data"')
    with pytest.raises(FetchError, match="url-not-allowed"):
        fetch_json("http://fhir.example.org/Patient/1")
