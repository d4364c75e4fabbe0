"""Tests of bearer-token authentication, body limits and the settings that configure them."""

from __future__ import annotations

import json

import anyio
import pytest

from serving.exceptions import SettingsError
from serving.security import RequestGuard
from serving.settings import Settings, hash_token, load_settings
from tests.serving.conftest import example

TOKEN = "s3cret-token-for-tests"
OTHER_TOKEN = "another-token"
V1_ROUTES = [
    ("POST", "/v1/prognosis", example("g1_gut_tace.json")),
    ("POST", "/v1/prognosis/batch", example("batch.json")),
    ("GET", "/v1/model", None),
]


@pytest.fixture
def secured(make_client):
    return make_client(api_token_hashes=f"{hash_token(OTHER_TOKEN)},{hash_token(TOKEN)}")


@pytest.mark.parametrize(("method", "route", "body"), V1_ROUTES)
def test_every_v1_route_answers_401_with_a_bearer_challenge_without_a_token(
    secured, method, route, body
):
    response = secured.request(method, route, json=body)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in response.json()["error"]


@pytest.mark.parametrize(("method", "route", "body"), V1_ROUTES)
def test_every_v1_route_answers_403_to_a_wrong_token(secured, method, route, body):
    response = secured.request(
        method, route, json=body, headers={"authorization": "Bearer not-the-token"}
    )

    assert response.status_code == 403
    assert response.json() == {"error": "the bearer token is not accepted by this service"}


@pytest.mark.parametrize(("method", "route", "body"), V1_ROUTES)
def test_every_v1_route_answers_200_to_an_accepted_token(secured, method, route, body):
    response = secured.request(
        method, route, json=body, headers={"authorization": f"Bearer {TOKEN}"}
    )

    assert response.status_code == 200


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", TOKEN])
def test_a_header_that_is_not_a_bearer_token_is_401(secured, header):
    response = secured.get("/v1/model", headers={"authorization": header})

    assert response.status_code == 401


@pytest.mark.parametrize("route", ["/livez", "/readyz", "/healthz", "/docs.json"])
def test_health_readiness_and_docs_stay_open_when_tokens_are_configured(secured, route):
    assert secured.get(route).status_code == 200


def test_metrics_path_passes_the_guard_without_a_token():
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guard = RequestGuard(app, settings=Settings(api_token_hashes=(hash_token(TOKEN),)))
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/metrics", "headers": []}
    anyio.run(guard, scope, receive, send)
    assert calls == ["/metrics"]
    assert sent[0]["status"] == 200


def test_a_body_declared_over_one_megabyte_is_413_before_it_is_read(client):
    body = b"{" + b" " * 1_000_000 + b"}"

    response = client.post(
        "/v1/prognosis", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert "at most 1000000 bytes" in response.json()["error"]


def test_a_chunked_body_over_one_megabyte_is_413_by_counting_the_bytes(client):
    async def chunks():
        for _ in range(11):
            yield b" " * 100_000

    response = client.post(
        "/v1/prognosis", content=chunks(), headers={"content-type": "application/json"}
    )

    assert "content-length" not in response.request.headers
    assert response.status_code == 413


def test_a_body_just_under_the_limit_reaches_validation(client):
    padding = " " * (1_000_000 - 200)
    body = json.dumps({"patients": []}).replace("[", "[" + padding, 1).encode()
    assert len(body) < 1_000_000

    response = client.post(
        "/v1/prognosis/batch", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 400


def test_the_body_limit_follows_its_setting(make_client):
    small = make_client(max_body_bytes=100)

    response = small.post("/v1/prognosis", json=example("g1_gut_tace.json"))

    assert response.status_code == 413


def test_a_token_configured_instead_of_its_hash_is_refused_without_repeating_it(monkeypatch):
    monkeypatch.setenv("NETPROG_API_TOKEN_HASHES", "plain-token-CANARY")

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert "NETPROG_API_TOKEN_HASHES" in str(raised.value)
    assert "64 hexadecimal characters" in str(raised.value)
    assert "CANARY" not in str(raised.value)


def test_token_hashes_are_read_comma_separated_and_lower_cased(monkeypatch):
    digest = hash_token(TOKEN)
    monkeypatch.setenv("NETPROG_API_TOKEN_HASHES", f" {digest.upper()} , {hash_token('x')}")

    settings = load_settings()

    assert settings.api_token_hashes == (digest, hash_token("x"))
    assert settings.auth_enabled


def test_hash_token_is_the_sha256_hex_digest():
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
