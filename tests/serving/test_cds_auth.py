"""CDS Hooks 2.0 client JWTs: a valid EC or RSA token is accepted and its issuer audited; every
token the specification says to refuse is a 401 without detail, and nothing is audited."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from serving.audit import AuditLog
from serving.cds_auth import CdsAuthError, CdsClientsConfig, CdsTokenVerifier, IssuerConfig
from serving.settings import hash_token
from tests.serving.loopback import LoopbackServer, json_route
from tests.serving.test_cds_hooks import PATIENT_VIEW, ROOT, example, one_card

ISSUER = "https://ehr.example.org"
AUDIENCE_BASE = "http://testserver"
AUDIENCE = AUDIENCE_BASE + PATIENT_VIEW
EC_KEY = ec.generate_private_key(ec.SECP384R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ROGUE_KEY = ec.generate_private_key(ec.SECP384R1())
ROTATED_KEY = ec.generate_private_key(ec.SECP384R1())


def public_jwk(private_key, kid: str, alg: str) -> dict:
    algorithm = ECAlgorithm if alg.startswith("ES") else RSAAlgorithm
    jwk = json.loads(algorithm.to_jwk(private_key.public_key()))
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


def claims(**changes) -> dict:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": "ehr-client-1",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 240,
        "jti": str(uuid.uuid4()),
        "tenant": "hospital-a",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def token(payload: dict | None = None, *, key=EC_KEY, alg="ES384", kid="ec-1", **header) -> str:
    return jwt.encode(
        payload or claims(), key, algorithm=alg, headers={"kid": kid, "typ": "JWT", **header}
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict, payload: dict, sign) -> str:
    """A JWT assembled by hand, for the algorithms no library will sign with."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def rsa_public_pem() -> bytes:
    return RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    server.key_set = [public_jwk(EC_KEY, "ec-1", "ES384"), public_jwk(RSA_KEY, "rsa-1", "RS384")]
    server.routes["/jwks.json"] = json_route(lambda: {"keys": server.key_set})
    server.routes["/rogue.json"] = json_route({"keys": [public_jwk(ROGUE_KEY, "rogue", "ES384")]})
    server.routes["/allowed-jku.json"] = json_route(
        {"keys": [public_jwk(ROGUE_KEY, "partner", "ES384")]}
    )
    with server.running():
        yield server


@pytest.fixture
def clients_file(tmp_path, jwks_server):
    document = {
        "audience_base_url": AUDIENCE_BASE,
        "clock_skew_s": 30,
        "refresh_interval_s": 0,
        "issuers": [
            {
                "iss": ISSUER,
                "jwks_url": f"{jwks_server.base}/jwks.json",
                "jku_allowed": [f"{jwks_server.base}/allowed-jku.json"],
            }
        ],
    }
    path = tmp_path / "cds-clients.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def refused_tokens(server: LoopbackServer) -> dict[str, object]:
    """Every kind of token the acceptance list (and the spec) says must be refused."""
    now = int(time.time())
    replayed = claims()
    return {
        "alg none": hand_made(
            {"alg": "none", "kid": "ec-1", "typ": "JWT"}, claims(), lambda _: b""
        ),
        "HS256 with the public key as secret": hand_made(
            {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"},
            claims(),
            lambda data: hmac.new(rsa_public_pem(), data, hashlib.sha256).digest(),
        ),
        "unknown kid": token(kid="not-a-kid"),
        "wrong iss": token(claims(iss="https://other-ehr.example.org")),
        "wrong aud": token(claims(aud=AUDIENCE_BASE + "/cds-services/another-service")),
        "expired": token(claims(iat=now - 400, exp=now - 100)),
        "iat in the future": token(claims(iat=now + 600, exp=now + 700)),
        "replayed jti": ("twice", token(replayed)),
        "jku not allow-listed": token(key=ROGUE_KEY, kid="rogue", jku=f"{server.base}/rogue.json"),
        "no kid": hand_made(
            {"alg": "ES384", "typ": "JWT"},
            claims(),
            lambda data: b"x" * 96,
        ),
        "wrong typ": token(typ="at+jwt"),
        "lifetime over five minutes": token(claims(exp=now + 3600)),
        "signed by another key": token(key=ROGUE_KEY),
        "RSA token claiming an EC key": token(key=RSA_KEY, alg="RS384", kid="ec-1"),
        "no jti": token(claims(jti=None)),
        "not a JWT": "not-a-jwt",
    }


def verifier_of(clients_file) -> CdsTokenVerifier:
    return CdsTokenVerifier(CdsClientsConfig.from_file(clients_file))


@pytest.mark.parametrize(
    ("key", "alg", "kid"), [(EC_KEY, "ES384", "ec-1"), (RSA_KEY, "RS384", "rsa-1")]
)
def test_a_valid_ec_or_rsa_token_gives_the_client_with_its_tenant(clients_file, key, alg, kid):
    client = verifier_of(clients_file).verify(token(key=key, alg=alg, kid=kid), PATIENT_VIEW)

    assert (client.issuer, client.subject, client.tenant) == (ISSUER, "ehr-client-1", "hospital-a")
    assert client.caller == f"cds:{ISSUER}#hospital-a"


def test_each_token_to_refuse_is_refused_by_the_verifier(clients_file, jwks_server):
    verifier = verifier_of(clients_file)
    reasons = {}
    for name, sent in refused_tokens(jwks_server).items():
        if isinstance(sent, tuple):
            verifier.verify(sent[1], PATIENT_VIEW)
            sent = sent[1]
        with pytest.raises(CdsAuthError) as refused:
            verifier.verify(sent, PATIENT_VIEW)
        reasons[name] = refused.value.reason

    assert reasons["alg none"] == reasons["HS256 with the public key as secret"] == "algorithm"
    assert reasons["unknown kid"] == "unknown-kid"
    assert reasons["wrong iss"] == "unknown-issuer"
    assert reasons["wrong aud"] == "InvalidAudienceError"
    assert reasons["expired"] == "ExpiredSignatureError"
    assert reasons["iat in the future"] == "ImmatureSignatureError"
    assert reasons["replayed jti"] == "replayed-jti"
    assert reasons["jku not allow-listed"] == "jku-not-allowed"
    assert reasons["lifetime over five minutes"] == "lifetime"
    assert reasons["RSA token claiming an EC key"] == "key-algorithm"


def test_an_allow_listed_jku_is_where_the_key_is_looked_up(clients_file, jwks_server):
    sent = token(key=ROGUE_KEY, kid="partner", jku=f"{jwks_server.base}/allowed-jku.json")

    assert verifier_of(clients_file).verify(sent, PATIENT_VIEW).issuer == ISSUER


def test_an_unknown_kid_refreshes_the_cached_key_set_once(clients_file, jwks_server):
    verifier = verifier_of(clients_file)
    verifier.verify(token(), PATIENT_VIEW)
    fetched = jwks_server.count("/jwks.json")
    jwks_server.key_set = [*jwks_server.key_set, public_jwk(ROTATED_KEY, "ec-2", "ES384")]
    try:
        verifier.verify(token(), PATIENT_VIEW)
        assert jwks_server.count("/jwks.json") == fetched
        client = verifier.verify(token(key=ROTATED_KEY, kid="ec-2"), PATIENT_VIEW)
    finally:
        jwks_server.key_set = jwks_server.key_set[:2]

    assert client.issuer == ISSUER
    assert jwks_server.count("/jwks.json") == fetched + 1


def test_a_jwk_set_file_works_like_a_url(tmp_path):
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [public_jwk(EC_KEY, "ec-1", "ES384")]}))
    config = CdsClientsConfig(
        audience_base_url=AUDIENCE_BASE,
        issuers={ISSUER: IssuerConfig(ISSUER, jwks_file=tmp_path / "keys.json")},
    )

    assert CdsTokenVerifier(config).verify(token(), PATIENT_VIEW).tenant == "hospital-a"


@pytest.mark.parametrize(
    "document",
    [
        {"issuers": []},
        {"audience_base_url": "ftp://x", "issuers": []},
        {"audience_base_url": AUDIENCE_BASE, "issuers": [{"iss": ISSUER}]},
        {
            "audience_base_url": AUDIENCE_BASE,
            "issuers": [{"iss": ISSUER, "jwks_url": "http://ehr.example.org/jwks"}],
        },
    ],
)
def test_a_configuration_without_audience_keys_or_https_is_refused(tmp_path, document):
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(document))

    with pytest.raises(ValueError, match="must|required"):
        CdsClientsConfig.from_file(path)


def test_a_valid_token_gets_the_card_and_the_audit_names_the_issuer(make_client, clients_file):
    client = make_client(audit_salt="k", cds_clients_file=clients_file)

    card = one_card(
        client.post(
            PATIENT_VIEW,
            json=example("cds_patient_view.json"),
            headers={"Authorization": f"Bearer {token(key=RSA_KEY, alg='RS384', kid='rsa-1')}"},
        )
    )

    [record] = AuditLog(client.audit_log, b"k").records()
    assert (record["prediction_id"], record["caller"]) == (card["uuid"], f"cds:{ISSUER}#hospital-a")


def test_every_refused_token_is_a_bare_401_and_nothing_is_audited(
    make_client, clients_file, jwks_server, caplog
):
    client = make_client(
        audit_salt="k", cds_clients_file=clients_file, api_token_hashes=hash_token("api-token")
    )
    answers = {}
    for name, sent in refused_tokens(jwks_server).items():
        if isinstance(sent, tuple):
            first = client.post(
                PATIENT_VIEW,
                json=example("cds_patient_view.json"),
                headers={"Authorization": f"Bearer {sent[1]}"},
            )
            assert first.status_code == 200
            sent = sent[1]
        answers[name] = client.post(
            PATIENT_VIEW,
            json=example("cds_patient_view.json"),
            headers={"Authorization": f"Bearer {sent}"},
        )
    api_token = client.post(
        PATIENT_VIEW,
        json=example("cds_patient_view.json"),
        headers={"Authorization": "Bearer api-token"},
    )
    missing = client.post(PATIENT_VIEW, json=example("cds_patient_view.json"))

    for name, response in {**answers, "API token": api_token, "no token": missing}.items():
        assert response.status_code == 401, name
        assert response.json() == {"error": "unauthorized"}, name
    records = list(AuditLog(client.audit_log, b"k").records())
    assert [r["caller"] for r in records] == [f"cds:{ISSUER}#hospital-a"]
    assert "hospital-a" not in caplog.text


def test_the_json_api_keeps_its_bearer_tokens_when_cds_clients_are_configured(
    make_client, clients_file
):
    client = make_client(cds_clients_file=clients_file, api_token_hashes=hash_token("api-token"))
    patient = {
        "patient": json.loads((ROOT / "data/examples/g2_pancreas_sirt.json").read_text())["patient"]
    }

    accepted = client.post(
        "/v1/prognosis", json=patient, headers={"Authorization": "Bearer api-token"}
    )
    refused = client.post(
        "/v1/prognosis", json=patient, headers={"Authorization": f"Bearer {token()}"}
    )

    assert accepted.status_code == 200
    assert refused.status_code == 403
