"""Errors raised by the model store: no such model, or an artifact altered since training."""

from __future__ import annotations

__all__ = ["BundleIntegrityError", "RegistryError", "StoreError"]


class StoreError(ValueError):
    """Base class of the model store's errors."""


class RegistryError(StoreError):
    """The model store has no such model, or the pointer cannot move as asked."""


class BundleIntegrityError(StoreError):
    """A registered artifact is missing or altered since training."""
