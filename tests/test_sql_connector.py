"""The relational connector on SQLite, PostgreSQL and MariaDB for real: full read, incremental read, landing."""

from __future__ import annotations

import datetime as dt
import decimal

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
