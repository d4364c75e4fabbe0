"""Signed models: an Ed25519 signature over each registered model's manifest.

The model store records each artifact's SHA-256 beside the artifact (`model.yaml`), so whoever
can rewrite `bundle.joblib` can rewrite its checksum too. The manifest — the model's tag, its
labels, the checksums of every artifact and the training data's label and fingerprint — is
therefore also written as `manifest.json` and signed with a private key the model store does
not hold: the training job has it (`NETPROG_MODEL_SIGNING_KEY`, a PEM file), the service only
the public key (`NETPROG_MODEL_VERIFY_KEY`). With a verify key configured, a model that is
unsigned, signed by another key, or whose artifacts differ from its signed manifest is refused
before it is unpickled, naming the model.

The signature and key handling are `cryptography`'s; this module only decides what is signed.
Generate a key pair with ``openssl genpkey -algorithm ed25519 -out signing.pem`` and
``openssl pkey -in signing.pem -pubout -out verify.pem``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from store.checksums import sha256_of
from store.exceptions import BundleIntegrityError

__all__ = [
    "MANIFEST_FILE",
    "SIGNATURE_FILE",
    "SigningSettings",
    "generate_key_pair",
    "manifest_of",
    "sign_model_folder",
    "verify_model_folder",
]

MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"


class SigningSettings(BaseSettings):
    """Where the keys are: `NETPROG_MODEL_SIGNING_KEY` (training), `NETPROG_MODEL_VERIFY_KEY`
    (the service)."""

    model_config = SettingsConfigDict(env_prefix="NETPROG_", extra="ignore", frozen=True)

    model_signing_key: Path | None = Field(
        None, description="Ed25519 private key (PEM) that signs each new model's manifest."
    )
    model_verify_key: Path | None = Field(
        None,
        description="Ed25519 public key (PEM); when set, the service refuses unsigned or "
        "wrongly signed models.",
    )


def generate_key_pair(private_path: Path, public_path: Path) -> None:
    """Write a new Ed25519 key pair as PEM files (the private one with mode 0600)."""
    key = Ed25519PrivateKey.generate()
    private_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def manifest_of(tag: str, checksums: Mapping[str, str], labels: Mapping[str, str]) -> bytes:
    """The manifest's bytes: canonical JSON of the tag, labels and artifact checksums."""
    document = {
        "format": 1,
        "tag": tag,
        "labels": dict(sorted(labels.items())),
        "artifact_sha256": dict(sorted(checksums.items())),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign_model_folder(
    folder: Path,
    tag: str,
    checksums: Mapping[str, str],
    labels: Mapping[str, str],
    private_key_path: Path | None,
) -> bool:
    """Write `manifest.json` and its signature into a model's folder; False without a key."""
    if private_key_path is None:
        return False
    key = serialization.load_pem_private_key(Path(private_key_path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleIntegrityError(
            f"the model signing key {private_key_path} must be an Ed25519 private key, but is "
            "another kind; generate one with `openssl genpkey -algorithm ed25519`"
        )
    manifest = manifest_of(tag, checksums, labels)
    (folder / MANIFEST_FILE).write_bytes(manifest)
    (folder / SIGNATURE_FILE).write_bytes(base64.b64encode(key.sign(manifest)))
    return True


def verify_model_folder(folder: Path, tag: str, public_key_path: Path | None) -> None:
    """Check a model's signed manifest and every artifact it lists; nothing without a key.

    Raises
    ------
    BundleIntegrityError
        The model is unsigned, signed by another key, for another tag, or an artifact
        differs from the manifest; the message names the model.
    """
    if public_key_path is None:
        return
    key = serialization.load_pem_public_key(Path(public_key_path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise BundleIntegrityError(
            f"the model verify key {public_key_path} must be an Ed25519 public key"
        )
    manifest_path, signature_path = folder / MANIFEST_FILE, folder / SIGNATURE_FILE
    if not manifest_path.is_file() or not signature_path.is_file():
        raise BundleIntegrityError(
            f"model {tag} is not signed, and a verify key is configured: refusing to load it; "
            "retrain it with NETPROG_MODEL_SIGNING_KEY set"
        )
    manifest = manifest_path.read_bytes()
    try:
        key.verify(base64.b64decode(signature_path.read_bytes(), validate=True), manifest)
    except (InvalidSignature, ValueError):
        raise BundleIntegrityError(
            f"model {tag}'s manifest signature does not verify with the configured key: it "
            "was altered or signed by another key; refusing to load it"
        ) from None
    document = json.loads(manifest)
    if document.get("tag") != tag:
        raise BundleIntegrityError(f"model {tag} carries the signed manifest of another model")
    for name, expected in document["artifact_sha256"].items():
        path = folder / name
        if not path.is_file() or sha256_of(path) != expected:
            raise BundleIntegrityError(
                f"artifact {name} of model {tag} differs from its signed manifest; refusing "
                "to load it: restore it or retrain"
            )
