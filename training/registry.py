"""The model store: one BentoML model per training run, checksummed, with a production pointer."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import bentoml
import joblib
from bentoml._internal.configuration.containers import BentoMLContainer

from model.bundle import ModelBundle
from training.exceptions import BundleIntegrityError, RegistryError

MODEL_NAME = "netprog-bundle"
BUNDLE_FILE = "bundle.joblib"
POINTER_FILE = "netprog-production.json"


def sha256_of(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_bundle(
    bundle: ModelBundle, write_extras: Callable[[str, Path], None] | None = None
) -> str:
    """Register `bundle` as a new model; returns its tag.

    `write_extras(tag, folder)`, when given, writes further artifacts (the report) into the
    model's folder once the tag is known; they are checksummed with the bundle.

    BentoML writes the model in a temporary folder and moves it into the store only when the
    block ends without error, so a run killed part-way leaves the store as it was.
    """
    labels = {
        "trained_on": bundle.metadata["trained_on"],
        "schema_version": bundle.schema_version,
    }
    with bentoml.models.create(MODEL_NAME, labels=labels, metadata=dict(bundle.metadata)) as model:
        bundle.metadata["tag"] = str(model.tag)
        joblib.dump(bundle, model.path_of(BUNDLE_FILE), compress=3)
        if write_extras is not None:
            write_extras(str(model.tag), Path(model.path))
        checksums = {
            path.name: sha256_of(path)
            for path in sorted(Path(model.path).iterdir())
            if path.is_file() and path.name != "model.yaml"
        }
        model.info.metadata["artifact_sha256"] = checksums
        model.info.metadata["tag"] = str(model.tag)
    return str(model.tag)


def report_paths(tag: str) -> tuple[Path, Path]:
    """The evaluation report (HTML) and metrics (JSON) stored with model `tag`."""
    model = get_model(tag)
    return Path(model.path_of("report.html")), Path(model.path_of("metrics.json"))


def verify(model: bentoml.Model) -> None:
    """Check every artifact's SHA-256 against the one recorded at training time."""
    recorded = model.info.metadata.get("artifact_sha256")
    if not recorded or BUNDLE_FILE not in recorded:
        raise BundleIntegrityError(
            f"model {model.tag} has no artifact checksums; retrain it with `netprog train`"
        )
    for name, expected in recorded.items():
        path = Path(model.path_of(name))
        if not path.is_file():
            raise BundleIntegrityError(
                f"artifact {name} of model {model.tag} is missing; retrain or restore it"
            )
        if sha256_of(path) != expected:
            raise BundleIntegrityError(
                f"artifact {name} of model {model.tag} was altered after training (SHA-256 "
                "mismatch); refusing to load it: retrain with `netprog train` or restore it"
            )


def load_bundle(tag: str | None = None) -> ModelBundle:
    """Load and verify a registered bundle: `tag`, else production, else the latest."""
    model = get_model(tag)
    verify(model)
    return joblib.load(model.path_of(BUNDLE_FILE))


def get_model(tag: str | None = None) -> bentoml.Model:
    """The store entry for `tag`, the production model, or the latest model."""
    tag = tag or production_tag() or f"{MODEL_NAME}:latest"
    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise RegistryError(
            f"no trained model {tag!r} in the model store {store_home()}; train one with "
            "`netprog train --data PATH` (or `make serve`, which trains the synthetic default)"
        ) from None


def list_models() -> list[bentoml.Model]:
    """Registered bundles, newest first."""
    return sorted(bentoml.models.list(MODEL_NAME), key=lambda m: m.info.creation_time, reverse=True)


def store_home() -> Path:
    """The BentoML home folder holding the model store and the production pointer."""
    return Path(BentoMLContainer.bentoml_home.get())


def _pointer_path() -> Path:
    return store_home() / POINTER_FILE


def _read_pointer() -> dict:
    path = _pointer_path()
    if not path.is_file():
        return {"production": None, "history": []}
    return json.loads(path.read_text(encoding="utf-8"))


def _write_pointer(pointer: dict) -> None:
    path = _pointer_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, delete=False, encoding="utf-8"
    ) as handle:
        json.dump(pointer, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def production_tag() -> str | None:
    """The tag the production pointer names, if any."""
    return _read_pointer()["production"]


def set_production(tag: str, reason: str = "") -> None:
    """Point production at `tag` (atomically: a rename), keeping the previous one for rollback."""
    model = get_model(tag)
    verify(model)
    pointer = _read_pointer()
    entry = {
        "tag": str(model.tag),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reason": reason,
    }
    history = [*pointer["history"], entry]
    _write_pointer({"production": str(model.tag), "history": history})


def rollback() -> str:
    """Restore the production model before the current one; returns its tag."""
    pointer = _read_pointer()
    history = pointer["history"]
    if len(history) < 2:
        raise RegistryError("there is no previous production model to roll back to")
    previous = history[-2]
    entry = {
        **previous,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reason": "rollback",
    }
    _write_pointer({"production": previous["tag"], "history": [*history[:-2], entry]})
    return previous["tag"]
