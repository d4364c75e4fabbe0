"""`bentoml serve` as deployed refuses every protected route without a usable bearer token
before the request reaches the model, keeps the open routes open, and answers oversized,
over-long and deeply nested bodies with a clean 4xx.

The protected routes are read from the running service's OpenAPI document (every path under
`/v1` and `/cds-services`, mounted apps included), so a new route is covered without a change
here; `UNDOCUMENTED_ROUTES` would name any the document missed (none does).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from serving.fhir_refusals import RECORD_ROUTE_PREFIXES
from serving.security import MAX_JSON_DEPTH, MAX_TOKEN_CHARS, PROTECTED_PREFIXES
from tests.reliability.conftest import AUTH, TOKEN

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "data" / "examples"
MAX_BODY_BYTES = 1_000_000
MAX_RECORD_BYTES = 10 * 1024 * 1024
MAX_BATCH = 1000
UNDOCUMENTED_ROUTES: tuple[tuple[str, str], ...] = ()
"""(method, path) of protected routes the OpenAPI document does not list."""
OPEN_ROUTES = (
    "/livez",
    "/healthz",
    "/readyz",
    "/metrics",
    "/docs.json",
    "/",
    "/web/app.js",
    "/web/style.css",
    "/web/vendor/plotly.min.js",
)
MISSING_CREDENTIALS = {
    "no Authorization header": None,
    "Basic scheme": "Basic dXNlcjpwYXNz",
    "another scheme": "Token abc",
    "the token without a scheme": TOKEN,
    "scheme run into the token": f"Bearer{TOKEN}",
    "tab after the scheme": f"Bearer\t{TOKEN}",
}
"""Headers without a bearer credential: 401 with a bare challenge (RFC 6750 §3)."""
MALFORMED_CREDENTIALS = {
    "scheme alone": "Bearer",
    "token with a space": "Bearer reliability test token",
    "token with a comma": f"Bearer {TOKEN},x",
    "padding before the token": f"Bearer ={TOKEN}",
    "non-ASCII token (UTF-8)": "Bearer tökén".encode(),
    "non-ASCII token (Latin-1)": "Bearer tökén".encode("latin-1"),
    "token over the length limit": "Bearer " + "a" * (MAX_TOKEN_CHARS + 1),
    "token of 60,000 characters": "Bearer " + "a" * 60_000,
    "two Authorization headers": [f"Bearer {TOKEN}", "Bearer another-token"],
}
"""Bearer credentials that break RFC 6750's b64token syntax: 401, ``error="invalid_request"``."""
WRONG_TOKENS = {
    "unknown token": "Bearer not-the-token",
    "token in upper case": f"Bearer {TOKEN.upper()}",
    "token with a suffix": f"Bearer {TOKEN}x",
    "token of the length limit": "Bearer " + "a" * MAX_TOKEN_CHARS,
}
"""Well-formed tokens that are not configured: 403, ``error="invalid_token"``."""
ACCEPTED_CREDENTIALS = {
    "Bearer": f"Bearer {TOKEN}",
    "lower-case scheme": f"bearer {TOKEN}",
    "upper-case scheme": f"BEARER {TOKEN}",
    "two spaces after the scheme": f"Bearer  {TOKEN}",
}
"""RFC 7235 §2.1: the scheme is case-insensitive and followed by one or more spaces."""
JSON_TYPE = {"content-type": "application/json"}
GUARD_ERRORS = re.compile(r"^(authentication required|the Authorization header|the bearer token)")


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


VALID_BODIES = {
    "/v1/prognosis": example("g2_pancreas_sirt.json"),
    "/v1/prognosis/batch": example("batch.json"),
    "/v1/fhir/prognosis": example("fhir/g2_pancreas_sirt.bundle.json"),
    "/cds-services/net-embolotherapy-prognosis": example("fhir/cds_patient_view.json"),
    "/cds-services/net-embolotherapy-prognosis-order": example("fhir/cds_order_select.json"),
    "/cds-services/net-embolotherapy-prognosis/feedback": example("fhir/cds_feedback.json"),
    "/cds-services/net-embolotherapy-prognosis-order/feedback": example("fhir/cds_feedback.json"),
}
"""A body each POST route answers 200 to, writing audit records: what a refused request would
have done had it got through."""


@dataclass(frozen=True)
class Route:
    method: str
    path: str

    @property
    def body(self) -> dict | None:
        return VALID_BODIES.get(self.path) if self.method == "POST" else None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@pytest.fixture(scope="module")
def server(serve_module):
    return serve_module()


@pytest.fixture(scope="module")
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def routes(client) -> list[Route]:
    """Every protected route of the OpenAPI document, path parameters filled in."""
    document = client.get("/docs.json").json()
    service_ids = [s["id"] for s in client.get("/cds-services", headers=AUTH).json()["services"]]
    values = {"service_id": service_ids}
    found = []
    for template, operations in document["paths"].items():
        if not template.startswith(PROTECTED_PREFIXES):
            continue
        names = re.findall(r"{(\w+)}", template)
        assert set(names) <= set(values), f"{template}: give its parameters values in this test"
        paths = [template]
        for name in names:
            paths = [p.replace(f"{{{name}}}", v) for p in paths for v in values[name]]
        found += [Route(method.upper(), path) for method in operations for path in paths]
    found += [Route(method, path) for method, path in UNDOCUMENTED_ROUTES]
    return found


class AuditWatch:
    """The number of records in the audit log, to tell whether requests reached the model."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def count(self) -> int:
        if not self.path.exists():
            return 0
        return len(self.path.read_text(encoding="utf-8").splitlines())


@pytest.fixture
def audit(server) -> AuditWatch:
    return AuditWatch(server.audit_log)


def send(
    client: httpx.Client, route: Route, authorization=None, *, url=None, headers=(), **kwargs
) -> httpx.Response:
    """`route` with the given Authorization header(s) (None: none; a list: one header each),
    and its valid body unless `content` is given."""
    values = [] if authorization is None else authorization
    sent = [("authorization", v) for v in (values if isinstance(values, list) else [values])]
    sent += list(dict(headers).items())
    if route.body is not None and "content" not in kwargs:
        kwargs["json"] = route.body
    return client.request(route.method, url or route.path, headers=sent, **kwargs)


def test_the_openapi_document_lists_every_route_of_the_api_and_the_mounted_apps(routes):
    listed = {str(route) for route in routes}

    assert {
        "POST /v1/prognosis",
        "POST /v1/prognosis/batch",
        "GET /v1/model",
        "POST /v1/fhir/prognosis",
        "GET /cds-services",
        "POST /cds-services/net-embolotherapy-prognosis",
        "POST /cds-services/net-embolotherapy-prognosis-order",
        "POST /cds-services/net-embolotherapy-prognosis/feedback",
        "POST /cds-services/net-embolotherapy-prognosis-order/feedback",
    } <= listed
    assert UNDOCUMENTED_ROUTES == ()


def test_every_protected_route_answers_an_accepted_token_and_every_post_is_audited(
    client, routes, audit
):
    for route in routes:
        for name, header in ACCEPTED_CREDENTIALS.items():
            before = audit.count()

            response = send(client, route, header)

            assert response.status_code == 200, (str(route), name, response.text[:300])
            if route.method == "POST":
                assert route.body is not None, f"{route}: add a valid body to VALID_BODIES"
                assert audit.count() > before, (str(route), name)


@pytest.mark.parametrize(
    ("variants", "status", "challenge"),
    [
        (MISSING_CREDENTIALS, 401, 'Bearer realm="netprog"'),
        (MALFORMED_CREDENTIALS, 401, 'Bearer realm="netprog", error="invalid_request"'),
        (WRONG_TOKENS, 403, 'Bearer realm="netprog", error="invalid_token"'),
    ],
    ids=["missing", "malformed", "wrong"],
)
def test_every_protected_route_refuses_each_unusable_credential_before_the_model(
    client, routes, audit, variants, status, challenge
):
    before = audit.count()
    refused = []

    for route in routes:
        for name, header in variants.items():
            response = send(client, route, header)

            assert response.status_code == status, (str(route), name, response.text[:200])
            assert response.headers["www-authenticate"] == challenge, (str(route), name)
            assert GUARD_ERRORS.match(refusal_message(response)), (str(route), name)
            refused.append((str(route), name))

    assert len(refused) == len(routes) * len(variants) >= 9 * len(variants)
    assert audit.count() == before
    print(f"\n{status} {challenge}: {len(routes)} routes x {len(variants)} headers refused")


PATH_TRICKS = {
    "trailing slash": lambda path: path + "/",
    "double leading slash": lambda path: "/" + path,
    "dot segment": lambda path: "/." + path,
    "upper case": lambda path: path.upper(),
    "encoded slash": lambda path: path.replace("/", "%2F", 2).replace("%2F", "/", 1),
}


def test_no_spelling_of_a_protected_path_or_other_method_gets_past_the_guard(
    client, routes, audit, server
):
    before = audit.count()
    answers = {}

    for route in routes:
        for name, trick in PATH_TRICKS.items():
            url = httpx.URL(server.base).copy_with(raw_path=trick(route.path).encode())
            answers[str(route), name] = send(client, route, url=url).status_code
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"):
            answers[str(route), method] = send(client, Route(method, route.path)).status_code
    unknown = client.get("/v1/no-such-route").status_code

    assert unknown == 401
    assert set(answers.values()) <= {401, 404, 405}
    assert [key for key, status in answers.items() if status == 200] == []
    assert {answers[str(route), method] for route in routes for method in ("GET", "POST")} == {401}
    assert audit.count() == before


@pytest.mark.parametrize("header", [None, "Bearer not-the-token", "Basic x", "Bearer"])
def test_open_routes_stay_open_whatever_authorization_is_sent(client, header):
    statuses = {path: send(client, Route("GET", path), header).status_code for path in OPEN_ROUTES}

    assert statuses == dict.fromkeys(OPEN_ROUTES, 200)


def post_routes(routes: list[Route]) -> list[Route]:
    return [route for route in routes if route.method == "POST"]


def body_limit_of(path: str) -> int:
    """1 MB, or 10 MiB on the routes that carry whole patient records (FHIR, CDS Hooks)."""
    return MAX_RECORD_BYTES if path.startswith(RECORD_ROUTE_PREFIXES) else MAX_BODY_BYTES


def refusal_message(response: httpx.Response) -> str:
    """The message of a refusal: `error`, or an OperationOutcome's diagnostics (FHIR routes)."""
    body = response.json()
    if body.get("resourceType") == "OperationOutcome":
        return body["issue"][0]["diagnostics"]
    return body["error"]


def test_a_body_declared_over_its_limit_is_413_on_every_post_route(client, routes, audit):
    before = audit.count()

    answers = {}
    for route in post_routes(routes):
        limit = body_limit_of(route.path)
        body = b"[" + b" " * (limit - 1) + b"]"
        assert len(body) == limit + 1
        answers[route.path] = (
            limit,
            send(client, route, AUTH["authorization"], content=body, headers=JSON_TYPE),
        )

    assert len(answers) >= 6
    for path, (limit, response) in answers.items():
        assert response.status_code == 413, path
        assert f"at most {limit} bytes" in refusal_message(response), path
    assert audit.count() == before


def test_a_chunked_body_over_its_limit_is_413_on_every_post_route(client, routes, audit):
    before = audit.count()

    def chunks(limit: int) -> Iterator[bytes]:
        yield b"["
        for _ in range(limit // 100_000 + 1):
            yield b" " * 100_000
        yield b"]"

    answers = {}
    for route in post_routes(routes):
        response = client.post(
            route.path,
            content=chunks(body_limit_of(route.path)),
            headers={**AUTH, **JSON_TYPE},
        )
        assert "content-length" not in response.request.headers
        answers[route.path] = response.status_code

    assert len(answers) >= 6
    assert set(answers.values()) == {413}
    assert audit.count() == before


def test_a_batch_of_1001_patients_is_400_before_any_prediction(client, audit):
    patient = example("g1_gut_tace.json")["patient"]
    body = json.dumps({"patients": [patient] * (MAX_BATCH + 1)}).encode()
    before = audit.count()

    response = client.post("/v1/prognosis/batch", content=body, headers={**AUTH, **JSON_TYPE})

    assert len(body) < MAX_BODY_BYTES
    assert response.status_code == 400
    [detail] = response.json()["detail"]
    assert detail["loc"] == ["patients"]
    assert f"at most {MAX_BATCH}" in detail["msg"]
    assert audit.count() == before


def nested(depth: int, opening: bytes, closing: bytes) -> bytes:
    return opening * depth + b"1" + closing * depth


HOSTILE_BODIES = {
    "arrays 100,000 deep": nested(100_000, b"[", b"]"),
    "objects 100,000 deep": nested(100_000, b'{"a":', b"}"),
    f"arrays {MAX_JSON_DEPTH + 1} deep": nested(MAX_JSON_DEPTH + 1, b"[", b"]"),
    "an integer of 100,000 digits": b'{"patient": {"age_years": ' + b"9" * 100_000 + b"}}",
    "a fraction of 100,000 digits": b'{"patient": {"age_years": 0.' + b"1" * 100_000 + b"}}",
    "1e400": b'{"patient": {"age_years": 1e400}, "resourceType": 1e400}',
    "-1e400 in a FHIR value": b'{"resourceType": "Bundle", "type": "collection", "entry": '
    b'[{"resource": {"resourceType": "Observation", "id": "x", "status": "final", "code": '
    b'{"text": "x"}, "valueQuantity": {"value": -1e400}}}]}',
    "an integer of 5,000 digits in a FHIR value": b'{"resourceType": "Bundle", "type": '
    b'"collection", "entry": [{"resource": {"resourceType": "Observation", "id": "x", '
    b'"status": "final", "code": {"text": "x"}, "valueQuantity": {"value": '
    + b"9" * 5000
    + b"}}}]}",
}


def test_deep_nesting_and_huge_numbers_get_a_clean_4xx_quickly_on_every_post_route(
    client, routes, audit, server
):
    before = audit.count()
    answers = {}

    for route in post_routes(routes):
        for name, body in HOSTILE_BODIES.items():
            started = time.monotonic()
            response = client.post(route.path, content=body, headers={**AUTH, **JSON_TYPE})
            answers[route.path, name] = (response.status_code, time.monotonic() - started)
            assert 400 <= response.status_code < 500, (route.path, name, response.text[:300])
            if "deep" in name and "100,000" in name:
                assert refusal_message(response).startswith("the JSON body must nest"), name

    assert len(answers) == len(post_routes(routes)) * len(HOSTILE_BODIES)
    assert max(seconds for _, seconds in answers.values()) < 5
    assert audit.count() == before
    assert "Traceback" not in server.output()


def test_json_nested_to_the_limit_passes_the_guard_and_one_level_more_does_not(client):
    route = "/v1/prognosis"
    at_limit = b'{"patient": ' + nested(MAX_JSON_DEPTH - 1, b"[", b"]") + b"}"
    over = b'{"patient": ' + nested(MAX_JSON_DEPTH, b"[", b"]") + b"}"
    headers = {**AUTH, **JSON_TYPE}

    reached = client.post(route, content=at_limit, headers=headers)
    refused = client.post(route, content=over, headers=headers)

    assert reached.status_code == 400
    assert reached.json()["detail"][0]["loc"] == ["patient"]
    assert refused.status_code == 400
    assert refused.json() == {
        "error": f"the JSON body must nest arrays and objects at most {MAX_JSON_DEPTH} levels deep"
    }
