"""Where a cohort comes from: a CSV or Parquet file, or a SQL query through an SQLAlchemy URL."""

from __future__ import annotations

import pandas as pd

from training import cohort_files
from training.cohort_files import read_cohort
from training.exceptions import CohortReadError, SourceUnavailableError

__all__ = ["describe_source", "is_database_url", "read_source", "read_sql_cohort"]

SQL_CHUNK_ROWS = 50_000
"""Rows fetched at a time from a database (a server-side cursor), so that a query returning far
too many rows is stopped at the cap instead of filling memory."""
DEFAULT_POSTGRES_DRIVER = "postgresql+psycopg"
"""The driver shipped with the project (psycopg 3); a bare ``postgresql://`` URL uses it."""


def is_database_url(data: str) -> bool:
    """Whether `--data` names a database (an SQLAlchemy URL such as ``postgresql://…``)."""
    return "://" in data


def _engine_url(data: str):
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(data)
    except ArgumentError:
        raise CohortReadError(
            "--data must be a file path or an SQLAlchemy URL such as "
            f"postgresql://user@host:5432/registry, but {describe_source(data)!r} is neither"
        ) from None
    if url.drivername == "postgresql":
        url = url.set(drivername=DEFAULT_POSTGRES_DRIVER)
    return url


def describe_source(data: str, query: str | None = None) -> str:
    """The source as it may be logged and recorded: a database URL without its password."""
    if not is_database_url(data):
        return data
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        text = make_url(data).render_as_string(hide_password=True)
    except ArgumentError:
        text = data.split("://", 1)[0] + "://…"
    return f"{text} ({query})" if query else text


def read_sql_cohort(url: str, query: str) -> pd.DataFrame:
    """Run `query` on the database at `url` and return the rows as they come, uninterpreted.

    `numeric` columns arrive as floats, `date` columns as dates, booleans as booleans; the
    cohort validation decides whether they are acceptable. The password may be left out of the
    URL: the PostgreSQL driver then reads ``PGPASSWORD`` or ``~/.pgpass`` like `psql` does.
    A query returning more than `MAX_COHORT_ROWS` rows (training/cohort_files.py) is refused,
    read in chunks and stopped at the first row beyond it, as a file of that size is.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError, NoSuchModuleError, OperationalError, SQLAlchemyError

    engine_url = _engine_url(url)
    where = describe_source(url)
    try:
        engine = create_engine(engine_url)
    except NoSuchModuleError:
        raise CohortReadError(
            f"the database driver of {where} must be installed, but {engine_url.drivername!r} "
            "is not; use postgresql:// (psycopg 3 ships with netprog) or install the driver"
        ) from None
    try:
        with engine.connect().execution_options(stream_results=True) as connection:
            chunks = pd.read_sql_query(
                text(query), connection, coerce_float=True, chunksize=SQL_CHUNK_ROWS
            )
            return _within_row_cap(chunks, where)
    except OperationalError as error:
        raise SourceUnavailableError(
            f"the database at {where} must accept the connection, but it failed: "
            f"{_first_line(error.orig)}. Check that the server is up, the host and port, the "
            "user and the password (PGPASSWORD or ~/.pgpass), then run the job again"
        ) from None
    except (DBAPIError, SQLAlchemyError) as error:
        raise CohortReadError(
            f"the query on {where} must run and return the cohort table, but the database "
            f"answered: {_first_line(getattr(error, 'orig', None) or error)}"
        ) from None
    finally:
        engine.dispose()


def _within_row_cap(chunks, where: str) -> pd.DataFrame:
    limit = cohort_files.MAX_COHORT_ROWS
    read: list[pd.DataFrame] = []
    for chunk in chunks:
        read.append(chunk)
        if sum(len(part) for part in read) > limit:
            raise CohortReadError(
                f"the query on {where} must return at most {limit:,} rows, but returned more; "
                "check its WHERE clause and joins (a join can multiply rows), or select the "
                "cohort in parts"
            )
    return pd.concat(read, ignore_index=True) if len(read) > 1 else read[0]


def _first_line(error: object) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def read_source(data: str, query: str | None = None) -> pd.DataFrame:
    """Read the cohort named by `--data` (and `--query` for a database), without validating it.

    Parameters
    ----------
    data : str
        A ``.csv`` or ``.parquet`` file, or an SQLAlchemy URL (``postgresql://user@host/db``).
    query : str, optional
        The SQL that returns the cohort table; required for a database, refused for a file.
    """
    if is_database_url(data):
        if not query:
            raise CohortReadError(
                f"a database source needs --query with the SELECT that returns the cohort, but "
                f"none was given for {describe_source(data)}"
            )
        return read_sql_cohort(data, query)
    if query:
        raise CohortReadError(
            f"--query applies to a database URL only, but --data is the file {data!r}; "
            "drop --query or pass the database URL"
        )
    return read_cohort(data)
