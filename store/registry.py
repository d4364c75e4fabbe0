"""The model store: one BentoML model per training run, checksummed, with a production pointer."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml
import joblib
import pandas as pd

from model.bundle import ModelBundle
from store import signing, training_store
from store.bentoml_compat import bentoml_home, create_model_in, model_store_at, model_store_dir
from store.checksums import sha256_of
from store.exceptions import BundleIntegrityError, RegistryError

MODEL_NAME = "netprog-bundle"
BUNDLE_FILE = "bundle.joblib"
POINTER_FILE = "netprog-production.json"
POINTER_LOCK_FILE = "netprog-production.lock"
STAGING_DIR = ".netprog-staging"
HOLDOUT_FILE = "holdout.parquet"
TRAINING_IDS_FILE = "training_ids.json"
LOCAL_ROWS_FILE = "local_rows.parquet"
"""An updated model's local patients, as validated (training-side store)."""
DEVELOPMENT_ROWS_FILE = "development_rows.parquet"
"""A trained model's development patients, as fitted (training-side store)."""


def save_bundle(
    bundle: ModelBundle, write_extras: Callable[[str, Path], None] | None = None
) -> str:
    """Register `bundle` as a new model; returns its tag.

    `write_extras(tag, folder)`, when given, writes further artifacts (the report, the model
    card, the index of the training-side files) into the model's folder once the tag is
    known; they are checksummed with the bundle and, with `NETPROG_MODEL_SIGNING_KEY`, signed
    (store/signing.py). Patient-level files go to the training-side store instead
    (store/training_store.py).

    The model is assembled in a staging store beside the model store (BentoML writes it in a
    temporary folder, then copies it there) and enters the store by one `rename`, so a run
    killed at any point leaves the store as it was: without the new model, or with all of it.
    BentoML's temporary folder is made inside the staging folder, so that what a killed run
    leaves behind is removed by the next one.
    """
    labels = {
        "trained_on": bundle.metadata["trained_on"],
        "schema_version": bundle.schema_version,
    }
    _remove_abandoned_staging()
    staging = _staging_root() / f"{os.getpid()}-{os.urandom(4).hex()}-{socket.gethostname()}"
    store, temporary = staging / "store", staging / "tmp"
    store.mkdir(parents=True)
    temporary.mkdir()
    try:
        with (
            _temporary_files_in(temporary),
            create_model_in(
                model_store_at(store),
                MODEL_NAME,
                labels=labels,
                metadata=_store_metadata(bundle.metadata),
            ) as model,
        ):
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
            signing_key = signing.SigningSettings().model_signing_key
            signing.sign_model_folder(
                Path(model.path), str(model.tag), checksums, labels, signing_key
            )
        _commit(store, model.tag)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(model.tag)


@contextlib.contextmanager
def _temporary_files_in(folder: Path) -> Iterator[None]:
    """Point `tempfile` at `folder` for the block: BentoML assembles a new model in a folder
    from `tempfile.mkdtemp` and offers no other way to place it."""
    saved = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = saved


def _store_metadata(value):
    """`value` without None entries: BentoML's metadata holds only str, numbers, lists, dicts.

    The bundle inside the model keeps the full metadata; a figure that could not be computed
    (None) is left out of the store's copy rather than failing the registration.
    """
    if isinstance(value, dict):
        return {k: _store_metadata(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_store_metadata(v) for v in value if v is not None]
    return value


def _staging_root() -> Path:
    # Beside the model store, not in it (BentoML would list it as a model), and on the same
    # file system, so that the final rename is atomic.
    return model_store_dir().parent / STAGING_DIR


def _remove_abandoned_staging() -> None:
    """Delete staging folders of killed runs: on this host, with no process of their id left.

    A store shared between hosts may hold other hosts' live staging folders; those are left.
    """
    root = _staging_root()
    if not root.is_dir():
        return
    for folder in root.iterdir():
        pid, _, rest = folder.name.partition("-")
        host = rest.partition("-")[2]
        if pid.isdigit() and host == socket.gethostname() and not _process_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _commit(staged_store: Path, tag) -> None:
    """Move the staged model into the store by one rename, then point `latest` at it."""
    target = model_store_dir() / MODEL_NAME / tag.version
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staged_store / MODEL_NAME / tag.version, target)
    _write_atomically(target.parent / "latest", tag.version)


def _write_atomically(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, delete=False, encoding="utf-8", prefix=f".{path.name}."
    ) as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def report_paths(tag: str) -> tuple[Path, Path]:
    """The evaluation report (HTML) and metrics (JSON) stored with model `tag`."""
    model = get_model(tag)
    return Path(model.path_of("report.html")), Path(model.path_of("metrics.json"))


def model_card_paths(tag: str) -> tuple[Path, Path]:
    """The model card (Markdown and JSON) stored with model `tag`."""
    model = get_model(tag)
    return Path(model.path_of("model_card.md")), Path(model.path_of("model_card.json"))


def verify(model: bentoml.Model) -> None:
    """Check every artifact's SHA-256 against the one recorded at training time and, with
    `NETPROG_MODEL_VERIFY_KEY` set, against the model's signed manifest (store/signing.py)."""
    recorded = model.info.metadata.get("artifact_sha256")
    if not isinstance(recorded, dict) or BUNDLE_FILE not in recorded:
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
    verify_key = signing.SigningSettings().model_verify_key
    signing.verify_model_folder(Path(model.path), str(model.tag), verify_key)


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
    """Registered bundles, newest first (none in an empty store)."""
    try:
        models = bentoml.models.list(MODEL_NAME)
    except bentoml.exceptions.NotFound:
        return []
    return sorted(models, key=lambda m: m.info.creation_time, reverse=True)


def store_home() -> Path:
    """The BentoML home folder holding the model store and the production pointer."""
    return bentoml_home()


def _pointer_path() -> Path:
    return store_home() / POINTER_FILE


@contextlib.contextmanager
def _pointer_lock() -> Iterator[None]:
    """Serialise read-modify-write of the pointer between processes (an advisory file lock)."""
    path = store_home() / POINTER_LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_pointer() -> dict:
    """The pointer: `production`, the `stack` that rollback pops, the append-only `history`.

    Pointer files written before the stack existed kept the stack as their history; it is
    rebuilt from it.
    """
    path = _pointer_path()
    if not path.is_file():
        return {"production": None, "stack": [], "history": []}
    pointer = json.loads(path.read_text(encoding="utf-8"))
    pointer.setdefault("stack", [entry["tag"] for entry in pointer["history"]])
    return pointer


def _write_pointer(pointer: dict) -> None:
    path = _pointer_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, json.dumps(pointer, indent=2))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def production_tag() -> str | None:
    """The tag the production pointer names, if any."""
    return _read_pointer()["production"]


def pointer_history() -> list[dict]:
    """Every move of the production pointer, oldest first: tag, time, action, reason, gate."""
    return _read_pointer()["history"]


_ANY = object()


def set_production(
    tag: str,
    reason: str = "",
    *,
    gate: dict | None = None,
    expected_production: str | None | object = _ANY,
) -> None:
    """Point production at `tag` (atomically: a rename), keeping the previous one for rollback.

    Parameters
    ----------
    reason : str
        Why; recorded in the pointer history.
    gate : dict, optional
        The promotion gate's decision summary, recorded with the move.
    expected_production : str or None, optional
        The production tag the caller's decision was based on; when production has moved
        since (another promotion ran meanwhile), nothing is changed and RegistryError says so.
    """
    model = get_model(tag)
    verify(model)
    with _pointer_lock():
        pointer = _read_pointer()
        if expected_production is not _ANY and pointer["production"] != expected_production:
            raise RegistryError(
                f"production must still be {expected_production} for this promotion, but it "
                f"moved to {pointer['production']} meanwhile; run the promotion again"
            )
        entry: dict[str, Any] = {
            "tag": str(model.tag),
            "at": _now(),
            "action": "promote",
            "reason": reason,
        }
        if gate is not None:
            entry["gate"] = gate
        _write_pointer(
            {
                "production": str(model.tag),
                "stack": [*pointer["stack"], str(model.tag)],
                "history": [*pointer["history"], entry],
            }
        )


def rollback() -> str:
    """Restore the production model before the current one; returns its tag.

    The history keeps every move, the rollback included; only the stack of production
    models is popped, so a second rollback goes one further back.
    """
    with _pointer_lock():
        pointer = _read_pointer()
        stack = pointer["stack"]
        if len(stack) < 2:
            raise RegistryError("there is no previous production model to roll back to")
        previous = stack[-2]
        entry = {
            "tag": previous,
            "at": _now(),
            "action": "rollback",
            "reason": f"rollback from {stack[-1]}",
        }
        _write_pointer(
            {
                "production": previous,
                "stack": stack[:-1],
                "history": [*pointer["history"], entry],
            }
        )
    return previous


def holdout_rows(tag: str) -> pd.DataFrame | None:
    """The held-out test rows of model `tag` (verified), or None if it has none.

    They are kept in the training-side store (store/training_store.py), never in the
    model's folder, which `bentoml build` copies into every Bento; models registered before
    kept them in their folder, where they are still read.
    """
    path = _patient_file(tag, HOLDOUT_FILE)
    return pd.read_parquet(path) if path is not None else None


def fitted_rows(tag: str) -> pd.DataFrame | None:
    """The patients model `tag` was fitted on (an update's local patients, a training run's
    development patients), verified; None for models registered before they were kept.

    The promotion gate refits the model's procedure on resamples of them
    (:mod:`training.gate_optimism`); like the held-out rows they stay in the training-side
    store, never in a Bento.
    """
    for name in (LOCAL_ROWS_FILE, DEVELOPMENT_ROWS_FILE):
        path = _patient_file(tag, name)
        if path is not None:
            return pd.read_parquet(path)
    return None


def training_patients(tag: str) -> set[str] | None:
    """Keyed hashes of the patients model `tag` was fitted on, or None if not recorded."""
    path = _patient_file(tag, TRAINING_IDS_FILE)
    if path is None:
        return None
    return set(json.loads(path.read_text(encoding="utf-8"))["patient_sha256"])


def _patient_file(tag: str, name: str) -> Path | None:
    model = get_model(tag)
    verify(model)
    kept = training_store.verified_file(str(model.tag), Path(model.path), name)
    if kept is not None:
        return kept
    legacy = Path(model.path_of(name))
    return legacy if legacy.is_file() else None
