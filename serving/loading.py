"""Which model the service serves, and loading it verified (artifacts and schema version)."""

from __future__ import annotations

import attrs
import bentoml

from model.bundle import ModelBundle
from model.schema import SCHEMA_VERSION
from serving.exceptions import ModelSchemaMismatch
from serving.settings import Settings
from store import registry
from store.exceptions import RegistryError

__all__ = ["RegisteredBundle", "check_stored", "load_verified", "resolve_bundle_tag"]


@attrs.frozen
class RegisteredBundle(bentoml.models.BentoModel):
    """A bundle of the local model store.

    Unlike its parent it never tries to pull a missing model from BentoCloud (the service
    must not reach the network), and a missing model fails with the registry's message,
    which says how to train one. `bentoml serve` resolves it before starting any worker,
    so a store without the model refuses to start.
    """

    def resolve(self, base_path=None) -> bentoml.Model:
        registry.get_model(str(self.tag))
        return super().resolve(base_path)

    def to_info(self, alias: str | None = None):
        registry.get_model(str(self.tag))
        return super().to_info(alias)


def resolve_bundle_tag(settings: Settings) -> str:
    """The tag to serve, pinned to a version when the store has it.

    `NETPROG_MODEL_TAG`, else the production pointer, else the latest bundle. Pinning at
    import makes every worker load the same model even if one is registered meanwhile.
    """
    tag = settings.model_tag or registry.production_tag() or f"{registry.MODEL_NAME}:latest"
    try:
        return str(registry.get_model(tag).tag)
    except RegistryError:
        return tag


def check_stored(tag: str) -> bentoml.Model:
    """The store entry of `tag`, after checking its artifacts and the schema version it
    declares (without unpickling the bundle).

    Raises
    ------
    RegistryError
        No such model; the message says how to train one.
    BundleIntegrityError
        An artifact was altered or removed since training; the message names it.
    ModelSchemaMismatch
        The model was trained for another version of the patient schema.
    """
    stored = registry.get_model(tag)
    registry.verify(stored)
    _check_schema_version(stored.tag, stored.info.labels.get("schema_version"))
    return stored


def load_verified(tag: str) -> tuple[bentoml.Model, ModelBundle]:
    """The store entry and bundle of `tag`, checked as `check_stored` does, and the bundle's
    own schema version too (raises as `check_stored`)."""
    stored = check_stored(tag)
    bundle = registry.load_bundle(str(stored.tag))
    _check_schema_version(stored.tag, bundle.schema_version)
    return stored, bundle


def _check_schema_version(tag: object, version: str | None) -> None:
    if version != SCHEMA_VERSION:
        raise ModelSchemaMismatch(
            f"model {tag} must be trained for patient schema version {SCHEMA_VERSION}, but "
            f"was trained for {version!r}; retrain it with `netprog train` using this code"
        )
