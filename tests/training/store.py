"""Test helpers: leave the session's model store and production pointer as a module found them."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import bentoml

from store import registry


@contextlib.contextmanager
def store_restored_afterwards() -> Iterator[None]:
    """Delete the models registered inside the block and restore the pointer file's bytes.

    Tests that train in-process share the session's BentoML home (tests/conftest.py); the
    pipeline tests rely on an empty store meaning "the first model becomes production".
    """
    pointer = registry.store_home() / registry.POINTER_FILE
    saved = pointer.read_bytes() if pointer.is_file() else None
    before = {str(model.tag) for model in registry.list_models()}
    try:
        yield
    finally:
        for model in registry.list_models():
            if str(model.tag) not in before:
                bentoml.models.delete(model.tag)
        if saved is None:
            pointer.unlink(missing_ok=True)
        else:
            pointer.write_bytes(saved)


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root`, by relative path (empty when `root` is absent)."""
    if not root.exists():
        return {}
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
