"""Append-only, tamper-evident audit log of predictions: one JSON line per prediction.

Each record holds who asked (a token-hash prefix), when, which model answered and a keyed
digest of the input, never the input itself::

    {"v": 1, "seq": 0, "time": "2026-01-01T00:00:00.000000Z", "prediction_id": "...",
     "route": "/v1/prognosis", "model_tag": "netprog-bundle:...", "caller": "3f9a1c2b4d5e",
     "input_hmac": "<HMAC-SHA256(key, canonical input JSON)>",
     "prev_hash": "<record_hash of seq - 1, or 64 zeros>", "record_hash": "<HMAC-SHA256 ...>"}

CDS Hooks feedback on a prediction's card is a record of kind ``feedback`` in the same chain,
keyed by the prediction's id, whose ``feedback`` object holds the outcome and the coded choice
(`serving/cds_hooks/`; free text only in ``input_hmac``); prediction records carry no kind.

`record_hash` is an HMAC keyed with the audit secret over the canonical record without it, so
editing, inserting or deleting a record breaks the chain and cannot be repaired without the
secret. Deleting the *last* records leaves a valid shorter chain: the head file
``<log>.head`` (record count and last hash, replaced atomically after every append) detects
that, and copying the head off the host (an external anchor) detects it even when both files
are rewritten. Appends hold an exclusive `fcntl` lock, so several worker processes can share
one log. Written by hand because no maintained library offers a keyed, file-locked hash chain.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from serving.exceptions import AuditIntegrityError, AuditWriteError
from serving.settings import Settings

__all__ = [
    "ANONYMOUS",
    "FORMAT_VERSION",
    "GENESIS_HASH",
    "AuditEntry",
    "AuditLog",
    "AuditReport",
    "canonical_json",
    "load_or_create_key",
    "verify",
]

FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64
ANONYMOUS = "anonymous"
CALLER_PREFIX_LENGTH = 12
"""Hex characters of the caller's token hash kept in a record: enough to tell tokens apart."""

_TAIL_BYTES = 16384
_DAMAGED = (
    "the audit log is damaged and must be repaired by the operator; no prediction is "
    "returned without an audit record"
)
_MAX_PROBLEMS = 50


def canonical_json(value: object) -> bytes:
    """The one byte string a JSON value hashes as: sorted keys, no spaces, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def caller_id(token_hash: str | None) -> str:
    """The caller as recorded: a prefix of its token's SHA-256, a verified CDS client's
    `cds:<issuer>[#tenant]` (serving/cds_auth.py), or 'anonymous'."""
    if token_hash and token_hash.startswith("cds:"):
        return token_hash
    return token_hash[:CALLER_PREFIX_LENGTH] if token_hash else ANONYMOUS


def load_or_create_key(settings: Settings, *, create: bool = True) -> bytes:
    """The audit secret: `NETPROG_AUDIT_SALT`, else the salt file, created (0600) if missing.

    Workers racing to create the file agree on one key: it is hard-linked into place, which
    fails if another process got there first.
    """
    if settings.audit_salt is not None:
        return settings.audit_salt.get_secret_value().encode("utf-8")
    path = settings.audit_salt_path()
    if not create and not path.exists():
        raise AuditWriteError(
            f"the audit key file {path} does not exist; set NETPROG_AUDIT_SALT or "
            "NETPROG_AUDIT_SALT_FILE to the key the log was written with"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _create_key_file(path)
    key = path.read_text(encoding="utf-8").strip()
    if not key:
        raise AuditWriteError(
            f"the audit key file {path} is empty; restore it from backup (records made with "
            "the lost key can no longer be verified) or delete it to start a new log"
        )
    return key.encode("utf-8")


def _create_key_file(path: Path) -> None:
    """Write a new random key to `path` unless another process just did (atomic, 0600)."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".salt-")
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)


@dataclass(frozen=True)
class AuditEntry:
    """What the service knows about one prediction (or feedback on one) before it is recorded."""

    prediction_id: str
    route: str
    model_tag: str
    caller: str
    input_hmac: str
    kind: str = "prediction"
    feedback: Mapping[str, object] | None = None


@dataclass
class AuditReport:
    """The outcome of :func:`verify`."""

    path: Path
    n_records: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no record was edited, inserted or deleted."""
        return not self.problems

    def summary(self) -> str:
        """A human-readable account, one finding per line."""
        if self.ok:
            lines = [f"audit log {self.path}: OK, {self.n_records} record(s), chain intact"]
        else:
            lines = [
                f"audit log {self.path}: TAMPERED OR DAMAGED, {len(self.problems)} problem(s) "
                f"in {self.n_records} record(s)"
            ]
            lines += [f"  - {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


class AuditLog:
    """The audit log file, its head and its key.

    Parameters
    ----------
    path : Path
        The JSON-lines log; the head is ``<path>.head``.
    key : bytes
        Secret key of the input digests and of the chain.
    fsync : bool, default: True
        Force every append to disk before returning.
    """

    def __init__(self, path: Path, key: bytes, *, fsync: bool = True):
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.key = key
        self.fsync = fsync

    @classmethod
    def from_settings(cls, settings: Settings, *, create_key: bool = True) -> AuditLog:
        """The log configured by `settings`, its key loaded (or created, if `create_key`)."""
        try:
            key = load_or_create_key(settings, create=create_key)
        except OSError as error:
            raise AuditWriteError(
                f"the audit key could not be read or created at {settings.audit_salt_path()}: "
                f"{error.strerror or error}; set NETPROG_AUDIT_SALT or make the folder writable"
            ) from None
        return cls(settings.audit_log_path(), key, fsync=settings.audit_fsync)

    def input_digest(self, payload: object) -> str:
        """Keyed HMAC-SHA256 of the canonical JSON of a request input."""
        return hmac.new(
            self.key, b"input\x00" + canonical_json(payload), hashlib.sha256
        ).hexdigest()

    def record_hash(self, record: Mapping[str, object]) -> str:
        """Keyed hash of a record without its `record_hash` field."""
        body = {k: v for k, v in record.items() if k != "record_hash"}
        return hmac.new(self.key, b"record\x00" + canonical_json(body), hashlib.sha256).hexdigest()

    def check_writable(self) -> None:
        """Create the log's folder and file if needed; raise :class:`AuditWriteError` if not."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.close(descriptor)
            if not os.access(self.path.parent, os.W_OK):
                raise PermissionError(errno.EACCES, "folder is not writable")
        except OSError as error:
            raise self._write_failure(error) from None

    def append(self, entries: Sequence[AuditEntry]) -> list[dict]:
        """Append one chained record per entry and force them to disk; returns the records.

        The records are written under an exclusive lock and forced to disk (fsync) after it is
        released, so that the fsyncs of concurrent workers overlap and the file system commits
        them together; the head then advances, under the lock again, to the last record known
        to be on disk, so it never counts a record a crash could lose.

        Raises
        ------
        AuditWriteError
            The records could not all be written and forced to disk; none may be relied on.
        AuditIntegrityError
            The log's last line is not a record, so the chain cannot be continued.
        """
        if not entries:
            return []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as error:
            raise self._write_failure(error) from None
        try:
            with _exclusive(descriptor):
                seq, prev_hash = self._tail(descriptor)
                records: list[dict] = []
                for entry in entries:
                    records.append(self._record(entry, seq + len(records), prev_hash))
                    prev_hash = records[-1]["record_hash"]
                _write_all(descriptor, b"".join(canonical_json(r) + b"\n" for r in records))
            if self.fsync:
                os.fsync(descriptor)
            with _exclusive(descriptor):
                self._advance_head(seq + len(records), prev_hash)
        except OSError as error:
            raise self._write_failure(error) from None
        finally:
            os.close(descriptor)
        return records

    def records(self) -> Iterator[dict]:
        """The records in order (unverified; see :func:`verify`)."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)

    def read_head(self) -> dict | None:
        """The head: ``{"count", "last_hash", "updated"}``, or None when there is none."""
        if not self.head_path.exists():
            return None
        return json.loads(self.head_path.read_text(encoding="utf-8"))

    def _record(self, entry: AuditEntry, seq: int, prev_hash: str) -> dict:
        record = {
            "v": FORMAT_VERSION,
            "seq": seq,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "prediction_id": entry.prediction_id,
            "route": entry.route,
            "model_tag": entry.model_tag,
            "caller": entry.caller,
            "input_hmac": entry.input_hmac,
            "prev_hash": prev_hash,
        }
        if entry.kind != "prediction":
            record["kind"] = entry.kind
            record["feedback"] = dict(entry.feedback or {})
        record["record_hash"] = self.record_hash(record)
        return record

    def _tail(self, descriptor: int) -> tuple[int, str]:
        """Next sequence number and previous hash, from the log's last line."""
        size = os.fstat(descriptor).st_size
        if size == 0:
            return 0, GENESIS_HASH
        start = max(0, size - _TAIL_BYTES)
        tail = os.pread(descriptor, size - start, start)
        if not tail.endswith(b"\n"):
            raise AuditIntegrityError(
                f"the audit log {self.path} ends in an incomplete record (an interrupted "
                "write); predictions are refused until it is repaired: run `netprog audit "
                "verify` and remove the partial last line",
                public_message=_DAMAGED,
            )
        last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        try:
            record = json.loads(last)
            return int(record["seq"]) + 1, str(record["record_hash"])
        except (ValueError, KeyError, TypeError):
            raise AuditIntegrityError(
                f"the last line of the audit log {self.path} is not an audit record; "
                "predictions are refused until it is repaired: run `netprog audit verify`",
                public_message=_DAMAGED,
            ) from None

    def _advance_head(self, count: int, last_hash: str) -> None:
        """Point the head at record `count` - 1 unless it already counts as many (a later
        append finished first); replaced by rename. Call under the lock.

        The head itself is not fsynced (that would double the cost of an append): after an
        operating-system crash it can only lag the durable log, which :func:`verify` reports
        as a note, never as a deletion.
        """
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            current = self.read_head()
            if current is not None and int(current["count"]) >= count:
                return
        head = {
            "count": count,
            "last_hash": last_hash,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        temporary = self.head_path.with_name(self.head_path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(descriptor, canonical_json(head))
        finally:
            os.close(descriptor)
        os.replace(temporary, self.head_path)

    def _write_failure(self, error: OSError) -> AuditWriteError:
        reason = error.strerror or type(error).__name__
        return AuditWriteError(
            f"the audit log {self.path} could not be written ({reason}); no prediction is "
            "returned without an audit record: free disk space or fix the file's permissions",
            public_message=f"the audit log could not be written ({reason}); no prediction is "
            "returned without an audit record",
        )


@contextlib.contextmanager
def _exclusive(descriptor: int) -> Iterator[None]:
    """Hold an exclusive `flock` on an open file (all workers lock the log itself)."""
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)


def _write_all(descriptor: int, data: bytes) -> None:
    """Write every byte (unbuffered, so that a failure leaves nothing pending to retry)."""
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def verify(log: AuditLog) -> AuditReport:
    """Check the chain and the head: every edited, inserted or deleted record is a problem.

    A record whose hash does not match was edited; a broken `prev_hash` or `seq` means a
    record was inserted or deleted before it; fewer records than the head counts, or a last
    hash the head does not name, means records were deleted at the end.
    """
    report = AuditReport(log.path)
    previous_hash, expected_seq = GENESIS_HASH, 0
    hashes: list[str] = []
    lines = log.path.read_bytes().splitlines() if log.path.exists() else []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            _problem(report, f"line {number}: empty line")
            continue
        try:
            record = json.loads(line)
            seq, prev_hash, stored_hash = record["seq"], record["prev_hash"], record["record_hash"]
        except (ValueError, KeyError, TypeError):
            _problem(report, f"line {number}: not an audit record")
            continue
        if not hmac.compare_digest(str(stored_hash), log.record_hash(record)):
            _problem(report, f"line {number} (seq {seq}): record was edited (hash mismatch)")
        if seq != expected_seq:
            _problem(
                report,
                f"line {number}: seq {seq} where {expected_seq} was expected (a record was "
                "inserted or deleted)",
            )
        if prev_hash != previous_hash:
            _problem(
                report,
                f"line {number} (seq {seq}): prev_hash does not match the record before it (a "
                "record was inserted, deleted or edited before this one)",
            )
        previous_hash, expected_seq = str(stored_hash), int(seq) + 1 if isinstance(seq, int) else 0
        hashes.append(previous_hash)
    report.n_records = len(hashes)
    _check_head(log, report, hashes)
    return report


def _check_head(log: AuditLog, report: AuditReport, hashes: list[str]) -> None:
    try:
        head = log.read_head()
    except (OSError, ValueError):
        _problem(report, f"head {log.head_path} is unreadable")
        return
    if head is None:
        if hashes:
            _problem(report, f"head {log.head_path} is missing, so deletions cannot be checked")
        return
    count, last_hash = head.get("count"), head.get("last_hash")
    if not isinstance(count, int) or count < 0:
        _problem(report, f"head {log.head_path} has no valid record count")
    elif count > len(hashes):
        _problem(
            report,
            f"the head counts {count} record(s) but the log holds {len(hashes)}: "
            f"{count - len(hashes)} record(s) were deleted from the end",
        )
    elif (hashes[count - 1] if count else GENESIS_HASH) != last_hash:
        _problem(report, f"record {count} does not carry the hash the head names (rewritten)")
    elif count < len(hashes):
        report.notes.append(
            f"the log holds {len(hashes) - count} record(s) after the head's count: an append "
            "was interrupted before the head was updated (not by itself evidence of tampering)"
        )
    report.notes.append(
        "deleting the last records together with rewriting the head is detectable only "
        "against a copy of the head kept elsewhere (an external anchor)"
    )


def _problem(report: AuditReport, message: str) -> None:
    if len(report.problems) < _MAX_PROBLEMS:
        report.problems.append(message)
    elif len(report.problems) == _MAX_PROBLEMS:
        report.problems.append("... further problems not listed")
