"""Errors raised by the serving package: configuration, model loading and the audit log."""

from __future__ import annotations

__all__ = [
    "AuditIntegrityError",
    "AuditWriteError",
    "HarmsFileError",
    "ModelSchemaMismatch",
    "ServingError",
    "SettingsError",
]


class ServingError(ValueError):
    """Base class of the serving package's errors."""


class SettingsError(ServingError):
    """A `NETPROG_*` setting has a value the service cannot use."""


class ModelSchemaMismatch(ServingError):
    """The registered bundle was trained for another version of the patient schema."""


class HarmsFileError(ServingError):
    """`data/procedure_harms.yaml` lacks a modality or measure, or cites an unknown source."""


class AuditWriteError(ServingError):
    """The audit log could not be written; the prediction it was for must not be returned.

    `public_message` says so without the server's paths, for the answer to the caller.
    """

    def __init__(self, message: str, public_message: str | None = None):
        super().__init__(message)
        self.public_message = public_message or (
            "the audit log could not be written; no prediction is returned without an audit record"
        )


class AuditIntegrityError(AuditWriteError):
    """The audit log cannot be extended because its last record is unreadable."""
