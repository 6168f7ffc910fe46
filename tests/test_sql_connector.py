"""The relational connector on SQLite, PostgreSQL and MariaDB for real: full read, incremental read, landing."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from connectors.base import SourceError
from connectors.landing import read_landing, write_landing
from connectors.sql import SqlConnector

DDL = sa.MetaData()
HJRK = sa.Table(
    "hjrk",
    DDL,
    sa.Column("rkid", sa.Integer, primary_key=True),
    sa.Column("gmsfhm", sa.String(18)),
    sa.Column("xm", sa.String(50)),
    sa.Column("zczb", sa.Numeric(18, 4)),
    sa.Column("csrq", sa.String(20)),
    sa.Column("gxsj", sa.DateTime),
)


def _rows(start: int, count: int, day: int) -> list[dict]:
    return [
        {"rkid": i, "gmsfhm": f"{i:018d}", "xm": f"张{i}", "zczb": decimal.Decimal("12.5000"), "csrq": "1990年1月2日",
         "gxsj": dt.datetime(2026, 1, day, 8, 0, 0)}
        for i in range(start, start + count)
    ]


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def source_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'src.sqlite'}"
    else:
        yield request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")


def test_full_then_incremental_read(source_url: str, tmp_path) -> None:
    engine = sa.create_engine(source_url)
    DDL.create_all(engine)
    with engine.begin() as connection:
        connection.execute(HJRK.insert(), _rows(1, 2500, day=1))
    connector = SqlConnector("t_hjrk", source_url, "hjrk", ("rkid",), "gxsj")
    batches = list(connector.read_batches(batch_rows=1000))
    assert [b.num_rows for b in batches] == [1000, 1000, 500]
    assert connector.watermark.high == "2026-01-01 08:00:00" and connector.watermark.low is None
    assert batches[0].column("zczb")[0].as_py() == decimal.Decimal("12.5000")

    with engine.begin() as connection:
        connection.execute(HJRK.insert(), _rows(2501, 10, day=2))
    again = SqlConnector("t_hjrk", source_url, "hjrk", ("rkid",), "gxsj")
    new = list(again.read_batches(since=connector.watermark.high))
    assert sum(b.num_rows for b in new) == 10
    assert again.watermark == type(again.watermark)(low="2026-01-01 08:00:00", high="2026-01-02 08:00:00")
    engine.dispose()


def test_landing_is_atomic_idempotent_and_described(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'src.sqlite'}"
    engine = sa.create_engine(url)
    DDL.create_all(engine)
    with engine.begin() as connection:
        connection.execute(HJRK.insert(), _rows(1, 300, day=1))
    connector = SqlConnector("t_hjrk", url, "hjrk", ("rkid",), "gxsj")
    root = tmp_path / "landing"
    landing = write_landing(root, "t_hjrk", "manual__2026-01-01T00:00:00+00:00", connector.arrow_schema(),
                            connector.read_batches(batch_rows=100), watermark=lambda: connector.watermark)
    assert landing.rows == 300 and len(landing.sha256) == 64 and landing.watermark_high == "2026-01-01 08:00:00"
    assert pq.read_table(landing.path).num_rows == 300
    assert read_landing(root, "t_hjrk", "manual__2026-01-01T00:00:00+00:00") == landing
    # A rerun of the same run id returns the finished landing without reading the source again.
    def explode():
        raise AssertionError("source read again")
        yield
    assert write_landing(root, "t_hjrk", "manual__2026-01-01T00:00:00+00:00", connector.arrow_schema(), explode()) == landing


def test_a_crash_mid_landing_leaves_nothing_published(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'src.sqlite'}"
    engine = sa.create_engine(url)
    DDL.create_all(engine)
    with engine.begin() as connection:
        connection.execute(HJRK.insert(), _rows(1, 300, day=1))
    connector = SqlConnector("t_hjrk", url, "hjrk", ("rkid",), "gxsj")

    def crashing():
        batches = connector.read_batches(batch_rows=100)
        yield next(batches)
        raise RuntimeError("killed mid-extract")

    with pytest.raises(RuntimeError):
        write_landing(tmp_path / "landing", "t_hjrk", "r1", connector.arrow_schema(), crashing())
    assert read_landing(tmp_path / "landing", "t_hjrk", "r1") is None
    assert not list((tmp_path / "landing" / "t_hjrk").iterdir())


def test_unreachable_source_fails_clearly_without_credentials(tmp_path) -> None:
    connector = SqlConnector("t_pg", "postgresql+psycopg://hub:s3cret-pw@127.0.0.1:1/none", "hjrk", ("rkid",), "gxsj")
    with pytest.raises(SourceError) as failure:
        connector.arrow_schema()
    assert "t_pg" in str(failure.value) and "s3cret-pw" not in str(failure.value)


def test_missing_table_is_named(tmp_path) -> None:
    connector = SqlConnector("t_x", f"sqlite:///{tmp_path / 'empty.sqlite'}", "hjrk", ("rkid",), None)
    with pytest.raises(SourceError, match="hjrk"):
        connector.arrow_schema()


def test_window_reads_since_exclusive_until_inclusive(source_url: str) -> None:
    engine = sa.create_engine(source_url)
    DDL.create_all(engine)
    with engine.begin() as connection:
        for day in (1, 2, 3, 4):
            connection.execute(HJRK.insert(), _rows(day * 10, 3, day=day))
    connector = SqlConnector("t_hjrk", source_url, "hjrk", ("rkid",), "gxsj")
    batches = list(connector.read_batches(since="2026-01-01 08:00:00", until="2026-01-03"))  # a date bound is midnight
    assert sorted(r for b in batches for r in b.column("rkid").to_pylist()) == [20, 21, 22]
    assert connector.watermark.high == "2026-01-02 08:00:00"
    empty = SqlConnector("t_hjrk", source_url, "hjrk", ("rkid",), "gxsj")
    assert list(empty.read_batches(since="2026-01-04 08:00:00")) == []  # nothing newer: no batch, watermark kept
    assert empty.watermark.high == "2026-01-04 08:00:00"
    with pytest.raises(SourceError, match="t_hjrk.*replication key"):
        list(empty.read_batches(since="last tuesday"))
    engine.dispose()


PG_TYPES = """CREATE TABLE "人口 表" (id bigint primary key, "姓名" text, "100%" varchar(10), n numeric(18,4), nn numeric,
  f double precision, b boolean, d date, ts timestamp, tz timestamptz, j jsonb, u uuid, t time, sm smallint, by bytea)"""
PG_ROWS = r"""INSERT INTO "人口 表" VALUES
  (1, '张三', 'a,b"c', 12.5, 3.14159265358979, 0.1, true, '2026-01-02', '2026-01-01 08:00:00.123456',
   '2026-01-01 08:00:00+08', '{"名": 1}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '08:30:00', 7, '\x0102'),
  (2, E'line\nbreak', '', NULL, NULL, 'NaN', false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (3, 'NULL', 'NA', -0.0001, 1e-20, '-Infinity', NULL, '0001-01-01', '1900-01-01 00:00:00', '1970-01-01 00:00:00Z',
   '[]', NULL, '23:59:59.999999', -1, '\x')"""


def test_postgresql_copy_path_gives_the_cursor_path_values(pg_url: str) -> None:
    """COPY → CSV → Arrow must land exactly what the portable cursor path lands, for every type it can meet."""
    engine = sa.create_engine(pg_url)
    with engine.begin() as connection:
        connection.execute(sa.text(PG_TYPES))
        connection.execute(sa.text(PG_ROWS))
    copy = SqlConnector("t_pg", pg_url, "人口 表", ("id",), "ts")
    cursor = SqlConnector("t_pg", pg_url, "人口 表", ("id",), "ts", use_copy=False)
    assert copy._copy_available() and not cursor._copy_available()
    by_copy = pa.Table.from_batches(list(copy.read_batches(batch_rows=2)), schema=copy.arrow_schema())
    by_cursor = pa.Table.from_batches(list(cursor.read_batches(batch_rows=2)), schema=cursor.arrow_schema())
    assert by_copy.schema == by_cursor.schema
    for name in by_copy.column_names:  # (repr: NaN equals NaN)
        assert repr(by_copy.column(name).to_pylist()) == repr(by_cursor.column(name).to_pylist()), name
    assert copy.watermark == cursor.watermark and copy.watermark.high == "2026-01-01 08:00:00.123456"
    row = by_copy.to_pylist()[0]
    assert row["tz"] == dt.datetime(2026, 1, 1, 0, 0) and row["j"] == '{"名": 1}' and row["by"] == "\\x0102"
    assert by_copy.column("姓名").to_pylist() == ["张三", "line\nbreak", "NULL"]  # 'NULL' text is text, not null
    assert by_copy.column("100%").to_pylist() == ['a,b"c', "", "NA"]  # '' stays '', not null
    engine.dispose()


def test_an_empty_postgresql_table_lands_nothing_on_either_path(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    DDL.create_all(engine)
    for use_copy in (True, False):
        connector = SqlConnector("t_empty", pg_url, "hjrk", ("rkid",), "gxsj", use_copy=use_copy)
        assert list(connector.read_batches()) == [] and connector.watermark.high is None
    engine.dispose()


def test_rebatch_cuts_even_batches() -> None:
    from connectors.base import rebatch

    parts = [pa.record_batch({"x": list(range(n))}) for n in (3, 0, 7, 1, 6)]
    assert [b.num_rows for b in rebatch(parts, 5)] == [5, 5, 5, 2]
    assert [v for b in rebatch(parts, 5) for v in b.column(0).to_pylist()] == [v for p in parts for v in p.column(0).to_pylist()]
