"""The training-side store: patient-level files of a model, kept out of what is served.

A registered model's folder is what `bentoml build` copies into every Bento and container
image. The held-out patients' rows (`holdout.parquet`) and the keyed hashes of the training
patients (`training_ids.json`), which the promotion gate and the reports read, are kept here
instead: in `NETPROG_TRAINING_STORE` (default `$BENTOML_HOME/netprog-training/`), one folder
per model version, created with mode 0700. The model's folder keeps only an index
(`training_side.json`: each file's name and SHA-256), checksummed and signed with the other
artifacts, so a file altered or swapped here is refused when read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from store.bentoml_compat import bentoml_home
from store.checksums import sha256_of
from store.exceptions import BundleIntegrityError

__all__ = [
    "INDEX_FILE",
    "TrainingStoreSettings",
    "folder_of",
    "verified_file",
    "write_patient_files",
]

INDEX_FILE = "training_side.json"
STORE_DIR_NAME = "netprog-training"


class TrainingStoreSettings(BaseSettings):
    """Where the training-side store is: `NETPROG_TRAINING_STORE`."""

    model_config = SettingsConfigDict(env_prefix="NETPROG_", extra="ignore", frozen=True)

    training_store: Path | None = Field(
        None,
        description="Folder of the patient-level files of each model (held-out rows, "
        "training ids); default `$BENTOML_HOME/netprog-training/`. Never packaged.",
    )


def _root() -> Path:
    configured = TrainingStoreSettings().training_store
    if configured is not None:
        return configured
    return bentoml_home() / STORE_DIR_NAME


def folder_of(tag: str) -> Path:
    """The training-side folder of model `tag` (name:version)."""
    name, _, version = tag.partition(":")
    return _root() / name / version


def write_patient_files(
    tag: str, model_folder: Path, writers: Mapping[str, Callable[[Path], None]]
) -> Path:
    """Write each file with its writer into the training-side folder of `tag`, and their
    index into `model_folder`; returns the training-side folder."""
    side = folder_of(tag)
    side.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, write in writers.items():
        write(side / name)
    index = {"tag": tag, "sha256": {name: sha256_of(side / name) for name in writers}}
    (model_folder / INDEX_FILE).write_text(json.dumps(index, sort_keys=True), encoding="utf-8")
    return side


def verified_file(tag: str, model_folder: Path, name: str) -> Path | None:
    """The training-side file `name` of model `tag`, checked against the model's index;
    None when the model keeps no such file there.

    Raises
    ------
    BundleIntegrityError
        The file is missing from the training-side store or differs from the index.
    """
    index_path = model_folder / INDEX_FILE
    if not index_path.is_file():
        return None
    expected = json.loads(index_path.read_text(encoding="utf-8"))["sha256"].get(name)
    if expected is None:
        return None
    path = folder_of(tag) / name
    if not path.is_file():
        raise BundleIntegrityError(
            f"{name} of model {tag} is missing from the training-side store {path.parent}; "
            "restore it (set NETPROG_TRAINING_STORE where it is kept) or retrain"
        )
    if sha256_of(path) != expected:
        raise BundleIntegrityError(
            f"{name} of model {tag} in the training-side store was altered since training "
            "(SHA-256 mismatch); restore it or retrain"
        )
    return path
