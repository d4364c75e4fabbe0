"""A worker process for the concurrency test: appends audit records (imports only the log)."""

from __future__ import annotations

from serving.audit import AuditEntry, AuditLog


def append_many(path: str, key: bytes, worker: int, count: int) -> None:
    """Append `count` records to the log at `path`, one append per record."""
    log = AuditLog(path, key, fsync=False)
    for number in range(count):
        log.append(
            [
                AuditEntry(
                    prediction_id=f"worker-{worker}-{number}",
                    route="/v1/prognosis",
                    model_tag="netprog-bundle:test",
                    caller="anonymous",
                    input_hmac="0" * 64,
                )
            ]
        )
