"""CDS Hooks 2.0 client authentication: the signed JWT every CDS client sends, verified.

CDS Hooks 2.0 ("Trusting CDS Clients") has the EHR sign a short-lived JWT for each call and
send it as `Authorization: Bearer <jwt>`. This module checks it, with PyJWT (and
`cryptography`) doing every signature and claim computation:

- header: `alg` one of the asymmetric algorithms in `ALGORITHMS` (never `none`, never HMAC),
  `kid` and `typ: JWT` present; `jku`, when sent, must be one of the URLs allow-listed for the
  token's issuer, and the key is then looked up there;
- `iss` one of the configured issuers, each with its JWK Set (a URL, fetched with
  `serving.bounded_http` and cached; or a file); a `kid` the cached set lacks makes one
  refresh, at most every `refresh_interval_s` per set;
- `aud` exactly the URL of the endpoint called (`audience_base_url` + the request path);
- `exp`, `iat` (not in the future) and `nbf` with `clock_skew_s` of leeway; `exp` at most
  `max_lifetime_s` after `iat`; `sub` and `jti` present, and a `jti` seen before from the
  same issuer refused until its token expires (per worker process);
- `tenant`, when sent, is kept with the caller.

Every refusal is the same 401 without detail; the reason's kind (never a claim value) is
logged at INFO for the operator. Configuration is one file (`NETPROG_CDS_CLIENTS_FILE`,
YAML or JSON, described in docs/ehr-integration.md); see `CdsClientsConfig.from_file`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
import jwt
import yaml
from jwt import PyJWK
from starlette.responses import JSONResponse

from serving.bounded_http import FetchError, FetchLimits, fetch_json, is_allowed_url, origin_of

__all__ = [
    "ALGORITHMS",
    "CDS_PREFIX",
    "CdsAuthError",
    "CdsClientsConfig",
    "CdsTokenVerifier",
    "IssuerConfig",
    "JwksCache",
    "ReplayCache",
    "VerifiedClient",
    "is_cds_route",
    "unauthorized",
    "verifier_from_file",
    "verify_request",
]

logger = logging.getLogger(__name__)

ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
"""Asymmetric JWS algorithms accepted (CDS Hooks 2.0 requires ES384 and RS384 at least)."""
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti")


class CdsAuthError(Exception):
    """A CDS client's JWT is refused; `reason` is a short kind for the log, never a value."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class IssuerConfig:
    """One EHR allowed to call: its `iss`, where its keys are, and what it may point to.

    Attributes
    ----------
    issuer : str
        The `iss` claim the EHR sends.
    jwks_url : str, optional
        Its JWK Set URL (https, or http to loopback).
    jwks_file : Path, optional
        Its JWK Set as a file; one of `jwks_url` and `jwks_file` is required.
    jku_allowed : tuple of str
        JWK Set URLs the EHR may name in a token's `jku` header; others are refused.
    fhir_servers : tuple of str
        Base URLs of FHIR servers the service may fetch missing prefetch from for this
        issuer (serving/prefetch_fetch.py).
    """

    issuer: str
    jwks_url: str | None = None
    jwks_file: Path | None = None
    jku_allowed: tuple[str, ...] = ()
    fhir_servers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError(
                f"issuer {self.issuer!r} must have exactly one of jwks_url and jwks_file"
            )
        for url in (self.jwks_url, *self.jku_allowed, *self.fhir_servers):
            if url is not None and not is_allowed_url(url):
                raise ValueError(
                    f"issuer {self.issuer!r}: every URL must be https (or http to a loopback "
                    "host), but one is not"
                )


@dataclass(frozen=True)
class CdsClientsConfig:
    """The CDS clients' configuration: issuers, the service's public URL and the bounds."""

    audience_base_url: str
    issuers: Mapping[str, IssuerConfig]
    clock_skew_s: int = 60
    max_lifetime_s: int = 300
    jwks_cache_s: int = 3600
    refresh_interval_s: int = 30
    fetch: FetchLimits = field(default_factory=lambda: FetchLimits(5.0, 1_000_000))

    @classmethod
    def from_file(cls, path: str | Path) -> CdsClientsConfig:
        """Read the configuration file (YAML or JSON, see docs/ehr-integration.md).

        Raises
        ------
        ValueError
            The file does not follow the format; the message says what must hold.
        """
        path = Path(path)
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or not isinstance(document.get("issuers"), list):
            raise ValueError(f"{path} must be a mapping with an `issuers` list")
        base = document.get("audience_base_url")
        if not isinstance(base, str) or origin_of(base)[0] not in ("http", "https"):
            raise ValueError(
                f"{path}: `audience_base_url` (the service's public URL, e.g. "
                "https://netprog.example.org) is required"
            )
        issuers = {}
        for item in document["issuers"]:
            issuer = _issuer(item, path.parent)
            issuers[issuer.issuer] = issuer
        bounds: dict[str, Any] = {k: int(document[k]) for k in _BOUNDS if k in document}
        return cls(audience_base_url=base.rstrip("/"), issuers=issuers, **bounds)


_BOUNDS = ("clock_skew_s", "max_lifetime_s", "jwks_cache_s", "refresh_interval_s")


def _issuer(item: object, folder: Path) -> IssuerConfig:
    if not isinstance(item, dict) or not isinstance(item.get("iss"), str):
        raise ValueError("each issuer must be a mapping with an `iss` string")
    jwks_file = item.get("jwks_file")
    return IssuerConfig(
        issuer=item["iss"],
        jwks_url=item.get("jwks_url"),
        jwks_file=(folder / jwks_file) if jwks_file else None,
        jku_allowed=tuple(item.get("jku_allowed", ())),
        fhir_servers=tuple(s.rstrip("/") for s in item.get("fhir_servers", ())),
    )


@dataclass(frozen=True)
class VerifiedClient:
    """The CDS client a verified JWT identifies."""

    issuer: str
    subject: str
    tenant: str | None
    jti: str
    fhir_servers: tuple[str, ...] = ()
    """The FHIR servers missing prefetch may be fetched from for this client's issuer."""

    @property
    def caller(self) -> str:
        """How the audit log names the caller: the issuer, and the tenant when sent."""
        return f"cds:{self.issuer}" + (f"#{self.tenant}" if self.tenant else "")


class JwksCache:
    """JWK Sets by source (URL or file), cached for `ttl_s`, refreshed on an unknown `kid`."""

    def __init__(
        self,
        *,
        ttl_s: int,
        refresh_interval_s: int,
        load: Callable[[str], object],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s, self._refresh_interval_s = ttl_s, refresh_interval_s
        self._load, self._clock = load, clock
        self._sets: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def key(self, source: str, kid: str) -> dict[str, Any]:
        """The JWK `kid` of the set at `source`; CdsAuthError when it has none."""
        with self._lock:
            cached = self._sets.get(source)
            fetched_at, keys = cached if cached is not None else (None, {})
            now = self._clock()
            stale = fetched_at is None or now - fetched_at > self._ttl_s
            may_refresh = fetched_at is None or now - fetched_at > self._refresh_interval_s
            if stale or (kid not in keys and may_refresh):
                keys = self._fetch(source)
                self._sets[source] = (now, keys)
        if kid not in keys:
            raise CdsAuthError("unknown-kid")
        return keys[kid]

    def _fetch(self, source: str) -> dict[str, dict[str, Any]]:
        """The set's public keys by `kid`: asymmetric (EC, RSA) keys only, never `oct`."""
        try:
            document = self._load(source)
        except (FetchError, ValueError, OSError):
            raise CdsAuthError("jwks-unavailable") from None
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise CdsAuthError("jwks-unavailable")
        return {
            key["kid"]: key
            for key in keys
            if isinstance(key, dict)
            and isinstance(key.get("kid"), str)
            and key.get("kty") in ("EC", "RSA")
            and "d" not in key
        }


class ReplayCache:
    """`jti`s seen per issuer, each kept until its token expires (plus the clock skew)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def first_use(self, issuer: str, jti: str, expires_at: float) -> bool:
        """Record `jti`; False when it was already used and has not expired."""
        now = self._clock()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: t for k, t in self._seen.items() if t >= now}
            if self._seen.get((issuer, jti), -1.0) >= now:
                return False
            self._seen[(issuer, jti)] = expires_at
            return True


def load_jwks_source(source: str, limits: FetchLimits) -> object:
    """A JWK Set from `file:`-prefixed path or an URL (bounded GET)."""
    if source.startswith("file:"):
        return yaml.safe_load(Path(source.removeprefix("file:")).read_text(encoding="utf-8"))
    return fetch_json(source, limits=limits, headers={"Accept": "application/json"})


class CdsTokenVerifier:
    """Verifies CDS Hooks 2.0 client JWTs against a `CdsClientsConfig` (see the module)."""

    def __init__(
        self,
        config: CdsClientsConfig,
        *,
        load: Callable[[str], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._clock = clock
        self.keys = JwksCache(
            ttl_s=config.jwks_cache_s,
            refresh_interval_s=config.refresh_interval_s,
            load=load or (lambda source: load_jwks_source(source, config.fetch)),
        )
        self.replays = ReplayCache(clock)

    def verify(self, token: str, path: str) -> VerifiedClient:
        """The client of `token`, sent to the endpoint at `path`; CdsAuthError if refused."""
        header, issuer = self._header_and_issuer(token)
        source = self._key_source(header, issuer)
        key = self.keys.key(source, header["kid"])
        claims = self._decode(token, key, header["alg"], issuer, path)
        expires_at = float(claims["exp"]) + self.config.clock_skew_s
        if not self.replays.first_use(issuer.issuer, str(claims["jti"]), expires_at):
            raise CdsAuthError("replayed-jti")
        tenant = claims.get("tenant")
        return VerifiedClient(
            issuer=issuer.issuer,
            subject=str(claims["sub"]),
            tenant=tenant if isinstance(tenant, str) else None,
            jti=str(claims["jti"]),
            fhir_servers=issuer.fhir_servers,
        )

    def _header_and_issuer(self, token: str) -> tuple[dict, IssuerConfig]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise CdsAuthError("malformed") from None
        if header.get("alg") not in ALGORITHMS:
            raise CdsAuthError("algorithm")
        if not isinstance(header.get("kid"), str) or not header["kid"]:
            raise CdsAuthError("no-kid")
        if header.get("typ") != "JWT":
            raise CdsAuthError("typ")
        claimed = unverified.get("iss")
        issuer = self.config.issuers.get(claimed) if isinstance(claimed, str) else None
        if issuer is None:
            raise CdsAuthError("unknown-issuer")
        return header, issuer

    @staticmethod
    def _key_source(header: Mapping[str, Any], issuer: IssuerConfig) -> str:
        jku = header.get("jku")
        if jku is not None:
            if jku not in issuer.jku_allowed:
                raise CdsAuthError("jku-not-allowed")
            return jku
        return issuer.jwks_url or f"file:{issuer.jwks_file}"

    def _decode(self, token: str, jwk: dict, alg: str, issuer: IssuerConfig, path: str) -> dict:
        config = self.config
        if jwk.get("alg", alg) != alg:
            raise CdsAuthError("key-algorithm")
        try:
            key = PyJWK(jwk, algorithm=alg)
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=config.audience_base_url + path,
                issuer=issuer.issuer,
                leeway=config.clock_skew_s,
                options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
            )
        except jwt.PyJWTError as error:
            raise CdsAuthError(type(error).__name__) from None
        now = self._clock()
        if float(claims["iat"]) > now + config.clock_skew_s:
            raise CdsAuthError("iat-in-future")
        if float(claims["exp"]) - float(claims["iat"]) > config.max_lifetime_s:
            raise CdsAuthError("lifetime")
        return claims


CDS_PREFIX = "/cds-services"
"""Routes whose callers are CDS clients: with a configuration file, they need a client JWT."""
_UNAUTHORIZED = {"error": "unauthorized"}


def verifier_from_file(path: str | Path | None) -> CdsTokenVerifier | None:
    """The verifier of the configuration file at `path`, or None when no file is configured.

    Raises
    ------
    ValueError
        The file does not follow the format (the service must not start).
    """
    if path is None:
        return None
    return CdsTokenVerifier(CdsClientsConfig.from_file(path))


def is_cds_route(path: str) -> bool:
    """Whether `path` is under `/cds-services` (discovery, services and feedback)."""
    return path == CDS_PREFIX or path.startswith(CDS_PREFIX + "/")


async def verify_request(
    verifier: CdsTokenVerifier, path: str, authorization: list[str]
) -> VerifiedClient | None:
    """The CDS client of a request's `Authorization` header(s), or None when refused.

    The verification runs in a worker thread: fetching a JWK Set may block.
    """
    if len(authorization) != 1:
        logger.info("CDS Hooks client refused (401): no single Authorization header")
        return None
    scheme, _, token = authorization[0].partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        logger.info("CDS Hooks client refused (401): no bearer credential")
        return None
    try:
        return await anyio.to_thread.run_sync(verifier.verify, token.strip(), path)
    except CdsAuthError as error:
        logger.info("CDS Hooks client refused (401): %s", error.reason)
        return None


def unauthorized() -> JSONResponse:
    """The one answer to every refused CDS client: 401, no detail on why."""
    return JSONResponse(
        _UNAUTHORIZED, status_code=401, headers={"WWW-Authenticate": 'Bearer realm="netprog"'}
    )
