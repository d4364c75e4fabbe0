"""Reading a cohort file (CSV or Parquet) in bounded memory, refusing what cannot be a cohort."""

from __future__ import annotations

import codecs
import csv
from pathlib import Path

import numpy as np
import pandas as pd

from training.exceptions import CohortReadError, CohortValidationError
from training.validate import Problem, checked_rows, chunk_rows, validate_cohort

__all__ = ["MAX_COHORT_ROWS", "MAX_COLUMNS", "MAX_LINE_BYTES", "load_cohort", "read_cohort"]

MAX_COHORT_ROWS = 1_000_000
"""Most data rows a cohort may have: far beyond any embolotherapy registry, and a bound on the
memory a mistaken file can take before it is refused."""
MAX_COLUMNS = 2000
MAX_LINE_BYTES = 1 << 20
"""Longest line of a CSV cohort (1 MiB); a row of the data dictionary takes a few hundred bytes."""
_SCAN_BYTES = 4 << 20
_UTF16_MARKS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def read_cohort(path: str | Path) -> pd.DataFrame:
    """Read a cohort file (CSV or Parquet, by extension) without interpreting it.

    A file that cannot be a cohort is refused before it is loaded whole, in bounded memory:
    a CSV that is empty, not UTF-8 text (binary, UTF-16, Latin-1), has a line over
    `MAX_LINE_BYTES`, more than `MAX_COLUMNS` columns or `MAX_COHORT_ROWS` rows; a Parquet
    file with more rows or columns than that; and a CSV whose rows reach `MAX_PROBLEMS`
    validation problems (checked chunk by chunk as it is parsed).

    Raises
    ------
    CohortReadError
        The file is missing, unreadable or beyond the limits; the message says which byte,
        line or limit, never a value.
    CohortValidationError
        The CSV's rows reach `MAX_PROBLEMS` problems; the first ones are listed.
    """
    path = Path(path)
    if not path.is_file():
        raise CohortReadError(f"cohort file must exist, but {path} was not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return _read_csv(path)
        if suffix in (".parquet", ".pq"):
            return _read_parquet(path)
    except (CohortReadError, CohortValidationError):
        raise
    except UnicodeDecodeError as error:
        raise CohortReadError(
            f"{path.name} must be UTF-8 text, but byte {error.start} is not; re-export it as UTF-8"
        ) from None
    except pd.errors.ParserError as error:
        raise CohortReadError(
            f"{path.name} could not be read as csv: {_first_line(error)}; check the delimiter "
            "(a comma) and the quoting of the export"
        ) from None
    except (pd.errors.EmptyDataError, OSError, ValueError) as error:
        raise CohortReadError(
            f"{path.name} could not be read as {suffix[1:]}: {type(error).__name__}"
        ) from None
    raise CohortReadError(f"cohort file must end in .csv or .parquet, but got {path.name!r}")


def _read_csv(path: Path) -> pd.DataFrame:
    n_lines = _check_csv_text(path)
    n_columns = _count_header_columns(path)
    # round_trip: numbers come back exactly as written, so a CSV export and a Parquet export
    # of the same table have the same fingerprint (the default parser can be off by one ulp).
    options = {"dtype": {"patient_id": str}, "encoding": "utf-8", "float_precision": "round_trip"}
    with pd.read_csv(path, chunksize=chunk_rows(n_columns), **options) as chunks:
        problems, stopped = checked_rows(chunks)
    if stopped:
        raise CohortValidationError(problems, n_lines - 1)
    frame = pd.read_csv(path, **options)
    if (short := _short_last_row(path, list(frame.columns), len(frame))) is not None:
        raise CohortValidationError([short], len(frame))
    return frame


def _short_last_row(path: Path, header: list[str], n_rows: int) -> Problem | None:
    """The problem of a last row with fewer fields than the header: a file cut short.

    pandas fills the missing fields with empty cells, which optional columns (the generator's
    truth, `hpfs_event_type`) would accept, so a truncated export could otherwise load.
    """
    if n_rows == 0:
        return None
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - MAX_LINE_BYTES - 2))
        tail = handle.read().rstrip(b"\r\n")
    last_line = tail.rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace")
    if last_line.count('"') % 2:
        return None  # the end of a quoted multi-line cell: its row cannot be told from here
    fields = next(csv.reader([last_line]), [])
    if len(fields) >= len(header):
        return None
    return Problem(
        n_rows,
        header[len(fields)],
        f"is missing: the last row has {len(fields)} of the header's {len(header)} fields, so "
        "the file looks cut short; export it again",
    )


def _check_csv_text(path: Path) -> int:
    """Refuse a CSV that is empty, not UTF-8 text, or has too long or too many lines, reading
    it a block at a time; return its number of lines."""
    if path.stat().st_size == 0:
        raise CohortReadError(
            f"{path.name} could not be read as csv: the file is empty; export a header row "
            "and one row per patient"
        )
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines, line_start = 0, 0, 0
    with open(path, "rb") as handle:
        while block := handle.read(_SCAN_BYTES):
            _check_utf8(path, block, offset, lines, decoder)
            newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 0x0A) + offset
            if newlines.size:
                lengths = newlines - np.concatenate(([line_start], newlines[:-1] + 1))
                if lengths[longest := int(lengths.argmax())] > MAX_LINE_BYTES:
                    raise _line_too_long(path, lines + longest + 1)
                lines += newlines.size
                line_start = int(newlines[-1]) + 1
            offset += len(block)
            if offset - line_start > MAX_LINE_BYTES:
                raise _line_too_long(path, lines + 1)
            if lines > MAX_COHORT_ROWS + 1:
                raise _too_many_rows(path)
        _check_utf8(path, b"", offset, lines, decoder, final=True)
    lines += offset > line_start
    if lines > MAX_COHORT_ROWS + 1:
        raise _too_many_rows(path)
    return lines


def _too_many_rows(path: Path) -> CohortReadError:
    rows = "data rows (lines after the header)" if path.suffix.lower() == ".csv" else "rows"
    return CohortReadError(
        f"{path.name} must have at most {MAX_COHORT_ROWS:,} {rows}, but has more; check that "
        "this is the cohort export, or split it"
    )


def _check_utf8(path: Path, block: bytes, offset: int, lines: int, decoder, final=False) -> None:
    """Raise at the first byte of `block` (at `offset`, after `lines` lines) that is not UTF-8
    text: invalid UTF-8 or a NUL byte, which valid UTF-8 allows but no CSV export contains."""
    pending = len(decoder.getstate()[0])
    nul = block.find(b"\0")
    found = [nul] if nul >= 0 else []
    try:
        decoder.decode(block, final)
    except UnicodeDecodeError as error:
        found.append(error.start - pending)
    if not found:
        return
    bad = min(found)
    position, line = offset + bad, lines + block.count(b"\n", 0, max(bad, 0)) + 1
    if position == 0 and block.startswith(_UTF16_MARKS):
        what = "it starts with a UTF-16 byte-order mark"
    elif block[bad : bad + 1] == b"\0":
        what = f"byte {position} (line {line}) is a NUL byte, as in UTF-16 or a binary file"
    else:
        what = f"byte {position} (line {line}) is not (Latin-1 or another encoding?)"
    raise CohortReadError(f"{path.name} must be UTF-8 text, but {what}; re-export it as UTF-8")


def _line_too_long(path: Path, line: int) -> CohortReadError:
    return CohortReadError(
        f"{path.name} could not be read as csv: line {line} is longer than "
        f"{MAX_LINE_BYTES // 1024} KiB, where a cohort row has a few hundred bytes; check the "
        "line endings and that this is the cohort export"
    )


def _count_header_columns(path: Path) -> int:
    with open(path, encoding="utf-8", newline="") as handle:
        header = next(csv.reader([handle.readline()]), [])
    if len(header) > MAX_COLUMNS:
        raise _too_many_columns(path, len(header))
    return len(header)


def _too_many_columns(path: Path, n_columns: int) -> CohortReadError:
    return CohortReadError(
        f"{path.name} must have at most {MAX_COLUMNS} columns, but has {n_columns}; "
        "export the columns of the data dictionary (docs/retraining.md)"
    )


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata
    if metadata.num_rows > MAX_COHORT_ROWS:
        raise _too_many_rows(path)
    if metadata.num_columns > MAX_COLUMNS:
        raise _too_many_columns(path, metadata.num_columns)
    return pd.read_parquet(path)


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def load_cohort(path: str | Path) -> pd.DataFrame:
    """Read and validate a cohort file; see :func:`validate_cohort`."""
    return validate_cohort(read_cohort(path))
