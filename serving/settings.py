"""The service's configuration: one pydantic-settings class read from `NETPROG_*` variables."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from serving.exceptions import SettingsError

__all__ = ["AUDIT_DIR_NAME", "Settings", "hash_token", "load_settings"]

AUDIT_DIR_NAME = "netprog-audit"
"""Folder under `BENTOML_HOME` holding the audit log when `NETPROG_AUDIT_LOG` is not set."""

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which an API token is configured."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    """Everything an operator can set, each from the environment variable `NETPROG_<NAME>`.

    List settings are comma-separated (``NETPROG_API_TOKEN_HASHES=hash1,hash2``). Defaults
    give a service without authentication that audits to ``$BENTOML_HOME/netprog-audit/``.
    """

    model_config = SettingsConfigDict(env_prefix="NETPROG_", extra="ignore", frozen=True)

    model_tag: str | None = Field(
        None,
        description="Model to serve, e.g. `netprog-bundle:abc123`; default: the production "
        "pointer, else the latest registered bundle.",
    )
    api_token_hashes: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="SHA-256 hex digests of the accepted bearer tokens (`netprog token-hash`); "
        "empty: authentication is off and every caller is 'anonymous'.",
    )
    audit_log: Path | None = Field(
        None,
        description="Audit log file (JSON lines); default "
        "`$BENTOML_HOME/netprog-audit/audit.jsonl`. Its head is `<file>.head`.",
    )
    audit_salt: SecretStr | None = Field(
        None,
        description="Secret key of the audit log's HMACs (hex or any text); default: read "
        "from `audit_salt_file`, generated there (mode 0600) on first use.",
    )
    audit_salt_file: Path | None = Field(
        None, description="Where the generated audit key is kept; default `<audit dir>/audit.salt`."
    )
    audit_fsync: bool = Field(
        True, description="fsync every audit append before the answer is sent (durability)."
    )
    max_body_bytes: int = Field(1_000_000, gt=0, description="Largest accepted request body.")
    max_record_body_bytes: int = Field(
        10 * 1024 * 1024,
        gt=0,
        description="Largest accepted body on the FHIR route and the CDS Hooks calls, which "
        "carry whole patient records (default 10 MiB; serving/fhir_refusals.py).",
    )
    max_batch: int = Field(1000, ge=1, description="Most patients in one batch request.")
    cds_clients_file: Path | None = Field(
        None,
        description="CDS Hooks 2.0 clients (YAML or JSON: issuers, their JWK Sets, allowed "
        "`jku` URLs and FHIR servers; docs/ehr-integration.md). When set, every "
        "`/cds-services` route needs a client JWT instead of an API token.",
    )
    cors_allow_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Origins allowed by CORS; empty (the default): CORS is off."
    )
    workers: int = Field(1, ge=1, le=64, description="BentoML worker processes.")
    max_concurrency: int = Field(
        16,
        ge=1,
        le=1024,
        description="Requests one worker holds at once, answering or waiting; more are refused "
        "at once with 429, so that an overloaded service keeps answering at its capacity "
        "instead of queueing without bound.",
    )

    @field_validator("api_token_hashes", mode="before")
    @classmethod
    def _parse_token_hashes(cls, value: object) -> object:
        value = _split_commas(value)
        if isinstance(value, list | tuple):
            return tuple(str(v).strip().lower() for v in value)
        return value

    @field_validator("api_token_hashes")
    @classmethod
    def _check_token_hashes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for digest in value:
            if not _SHA256_HEX.match(digest):
                raise ValueError(
                    "each API token hash must be 64 hexadecimal characters (a SHA-256 digest: "
                    "`netprog token-hash` prints it), but one has "
                    f"{len(digest)} characters; configure hashes, never the tokens themselves"
                )
        return value

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        return _split_commas(value)

    @property
    def auth_enabled(self) -> bool:
        """Whether `/v1` routes require a bearer token."""
        return bool(self.api_token_hashes)

    def audit_log_path(self) -> Path:
        """The audit log file, defaulting to a folder under `BENTOML_HOME`."""
        if self.audit_log is not None:
            return self.audit_log
        from store.registry import store_home

        return store_home() / AUDIT_DIR_NAME / "audit.jsonl"

    def audit_salt_path(self) -> Path:
        """The file the generated audit key is kept in."""
        if self.audit_salt_file is not None:
            return self.audit_salt_file
        return self.audit_log_path().parent / "audit.salt"


def load_settings() -> Settings:
    """The settings from the environment, with errors that never repeat the offending value.

    pydantic's own message quotes the input, which for a token hash could be a token pasted
    by mistake; this one names the variable and what it must hold.
    """
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"NETPROG_{'_'.join(str(part) for part in e['loc'][:1]).upper()}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)
        )
        raise SettingsError(f"invalid service settings: {problems}") from None
