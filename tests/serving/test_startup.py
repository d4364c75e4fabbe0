"""The service refuses to start, saying why, without a usable model."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from pathlib import Path

import pytest

from serving.exceptions import ModelSchemaMismatch
from store import registry
from store.bentoml_compat import store_home_at
from store.exceptions import BundleIntegrityError, RegistryError


@pytest.fixture
def store_at(tmp_path):
    """Point BentoML at another model store (and home) for one test."""

    with contextlib.ExitStack() as stack:
        yield lambda home: stack.enter_context(store_home_at(home))


@pytest.fixture
def copied_store(store_at, tmp_path, model_tag):
    """A store holding a copy of the fixture model; returns the copy's folder."""
    source = Path(registry.get_model(model_tag).path)
    home = tmp_path / "copy"
    target = home / "models" / registry.MODEL_NAME / source.name
    shutil.copytree(source, target)
    (target.parent / "latest").write_text(source.name, encoding="utf-8")
    store_at(home)
    return target


def test_an_empty_store_refuses_to_start_and_says_how_to_train(service_module, store_at, tmp_path):
    store_at(tmp_path / "empty")

    with pytest.raises(RegistryError) as raised:
        service_module.NetPrognosis()

    assert "netprog train" in str(raised.value)
    assert service_module.BUNDLE_TAG in str(raised.value)


def test_bentoml_serve_resolving_the_declared_model_fails_with_the_hint_not_a_cloud_pull(
    service_module, store_at, tmp_path
):
    store_at(tmp_path / "empty")
    [declared] = service_module.NetPrognosis.models

    with pytest.raises(RegistryError, match="netprog train"):
        declared.resolve()
    with pytest.raises(RegistryError, match="netprog train"):
        declared.to_info()


def test_the_declared_model_is_the_served_bundle(service_module, model_tag):
    [declared] = service_module.NetPrognosis.models

    assert str(declared.tag) == model_tag
    assert str(declared.resolve().tag) == model_tag


def test_an_altered_artifact_refuses_to_start_naming_the_artifact(service_module, copied_store):
    bundle_file = copied_store / registry.BUNDLE_FILE
    bundle_file.write_bytes(bundle_file.read_bytes() + b"\0")

    with pytest.raises(BundleIntegrityError) as raised:
        service_module.NetPrognosis()

    assert "artifact bundle.joblib" in str(raised.value)
    assert "altered" in str(raised.value)
    with pytest.raises(BundleIntegrityError, match="bundle.joblib"):
        service_module.NetPrognosis.inner.check_model()


def test_an_unaltered_copy_starts(service_module, copied_store, settings_env):
    settings_env()

    instance = service_module.NetPrognosis()
    instance.follower.stop()

    assert instance.answers.model_tag.endswith(copied_store.name)
    assert instance.follower.follows, "unpinned, the service follows the production pointer"


def test_a_bundle_for_another_schema_version_refuses_to_start(
    service_module, store_at, tmp_path, fixture_bundle, monkeypatch
):
    store_at(tmp_path / "other-schema")
    stale = dataclasses.replace(
        fixture_bundle, schema_version="0", metadata=dict(fixture_bundle.metadata)
    )
    tag = registry.save_bundle(stale)
    monkeypatch.setattr(
        service_module.NetPrognosis.inner, "bundle_ref", service_module.RegisteredBundle(tag)
    )

    with pytest.raises(ModelSchemaMismatch) as raised:
        service_module.NetPrognosis()

    assert "schema version 1" in str(raised.value)
    assert "'0'" in str(raised.value)
