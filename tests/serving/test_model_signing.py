"""Signed models: with a verify key configured, a model whose `bundle.joblib` was replaced and
its checksum recomputed is refused at start, naming it, as are unsigned and wrongly signed
models; signed models start as before, and without a key nothing changes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import joblib
import pytest
import yaml

from store import registry
from store.signing import MANIFEST_FILE, SIGNATURE_FILE, generate_key_pair
from tests.serving.test_startup import store_at  # noqa: F401 (fixture)
from training.exceptions import BundleIntegrityError


@pytest.fixture
def keys(tmp_path) -> dict[str, Path]:
    found = {}
    for name in ("training", "other"):
        found[name] = tmp_path / f"{name}-signing.pem"
        found[f"{name}-verify"] = tmp_path / f"{name}-verify.pem"
        generate_key_pair(found[name], found[f"{name}-verify"])
    return found


@pytest.fixture
def registered(service_module, store_at, tmp_path, fixture_bundle, monkeypatch, keys):  # noqa: F811
    """``register(signed)``: the fixture bundle saved in a fresh store and declared served."""

    def register(signed: bool) -> Path:
        store_at(tmp_path / f"store-{signed}")
        if signed:
            monkeypatch.setenv("NETPROG_MODEL_SIGNING_KEY", str(keys["training"]))
        copy = dataclasses.replace(fixture_bundle, metadata=dict(fixture_bundle.metadata))
        tag = registry.save_bundle(copy)
        monkeypatch.delenv("NETPROG_MODEL_SIGNING_KEY", raising=False)
        monkeypatch.setattr(
            service_module.NetPrognosis.inner, "bundle_ref", service_module.RegisteredBundle(tag)
        )
        monkeypatch.setattr(service_module, "BUNDLE_TAG", tag)
        return Path(registry.get_model(tag).path)

    return register


def tamper_with_recomputed_checksum(folder: Path) -> None:
    """What an attacker with write access to the store does: replace the model, then its
    recorded checksum, so that the store's own check passes."""
    bundle_file = folder / registry.BUNDLE_FILE
    bundle = joblib.load(bundle_file)
    bundle.metadata["trained_on"] = "real"
    joblib.dump(bundle, bundle_file, compress=3)
    info_file = folder / "model.yaml"
    info = yaml.safe_load(info_file.read_text())
    info["metadata"]["artifact_sha256"][registry.BUNDLE_FILE] = registry.sha256_of(bundle_file)
    info_file.write_text(yaml.safe_dump(info))


def test_a_signed_model_starts_with_the_verify_key(service_module, registered, settings_env, keys):
    folder = registered(signed=True)
    settings_env(model_verify_key=keys["training-verify"])

    instance = service_module.NetPrognosis()

    assert instance.model_tag.endswith(folder.name)
    assert {MANIFEST_FILE, SIGNATURE_FILE} <= {p.name for p in folder.iterdir()}


def test_a_replaced_bundle_with_a_recomputed_checksum_is_refused_naming_the_model(
    service_module, registered, settings_env, keys
):
    folder = registered(signed=True)
    tamper_with_recomputed_checksum(folder)
    settings_env(model_verify_key=keys["training-verify"])

    with pytest.raises(BundleIntegrityError) as raised:
        service_module.NetPrognosis()
    with pytest.raises(BundleIntegrityError, match=folder.name):
        service_module.NetPrognosis.inner.check_model()

    assert f"artifact bundle.joblib of model {registry.MODEL_NAME}:{folder.name}" in str(
        raised.value
    )
    assert "signed manifest" in str(raised.value)


def test_without_a_verify_key_the_checksum_alone_cannot_tell(
    service_module, registered, settings_env
):
    folder = registered(signed=True)
    tamper_with_recomputed_checksum(folder)
    settings_env()

    instance = service_module.NetPrognosis()

    assert instance.card["training_data"]["label"] == "real"


@pytest.mark.parametrize(
    ("signed", "verify_key", "message"),
    [
        (False, "training-verify", "is not signed"),
        (True, "other-verify", "does not verify with the configured key"),
    ],
)
def test_unsigned_and_wrongly_signed_models_are_refused_at_start(
    service_module, registered, settings_env, keys, signed, verify_key, message
):
    folder = registered(signed=signed)
    settings_env(model_verify_key=keys[verify_key])

    with pytest.raises(BundleIntegrityError, match=message) as raised:
        service_module.NetPrognosis()

    assert folder.name in str(raised.value)


def test_a_forged_signature_file_is_refused(service_module, registered, settings_env, keys):
    folder = registered(signed=True)
    (folder / SIGNATURE_FILE).write_bytes(b"AAAA" * 22)
    settings_env(model_verify_key=keys["training-verify"])

    with pytest.raises(BundleIntegrityError, match="does not verify"):
        service_module.NetPrognosis()
