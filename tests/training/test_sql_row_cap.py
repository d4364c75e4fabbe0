"""A SQL source is held to the same row cap as a cohort file, read in chunks up to it."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from training import cohort_files, sources
from training.exceptions import CohortReadError


@pytest.fixture
def database(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    engine = sa.create_engine(url)
    pd.DataFrame({"patient_id": [f"p{i}" for i in range(25)], "age_years": range(25)}).to_sql(
        "net_registry", engine, index=False
    )
    engine.dispose()
    return url


def test_a_query_returning_more_rows_than_the_cap_is_refused_saying_what_to_check(
    database, monkeypatch
):
    monkeypatch.setattr(cohort_files, "MAX_COHORT_ROWS", 20)
    monkeypatch.setattr(sources, "SQL_CHUNK_ROWS", 7)

    with pytest.raises(CohortReadError) as refused:
        sources.read_source(database, "SELECT * FROM net_registry")

    assert str(refused.value) == (
        f"the query on {database} must return at most 20 rows, but returned more; check its "
        "WHERE clause and joins (a join can multiply rows), or select the cohort in parts"
    )


def test_a_query_within_the_cap_returns_every_row_in_order_across_chunks(database, monkeypatch):
    monkeypatch.setattr(cohort_files, "MAX_COHORT_ROWS", 25)
    monkeypatch.setattr(sources, "SQL_CHUNK_ROWS", 7)

    table = sources.read_source(database, "SELECT * FROM net_registry ORDER BY age_years")

    assert table["age_years"].tolist() == list(range(25))
    assert table.index.tolist() == list(range(25))


def test_a_query_returning_no_rows_gives_an_empty_table_with_its_columns(database):
    table = sources.read_source(database, "SELECT * FROM net_registry WHERE age_years < 0")

    assert len(table) == 0
    assert list(table.columns) == ["patient_id", "age_years"]
