"""The relational sources on the real servers: 公安 hjrk in PostgreSQL, 市场监管 qydj/gtgsh in MariaDB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from world import generate
from world.audit import audit


@pytest.mark.postgres
@pytest.mark.mariadb
def test_pg_and_mysql_targets(tmp_path: Path, pg_url: str, mysql_url: str) -> None:
    """Both databases receive their tables; world.json points at them; the audit reads them and agrees."""
    description = generate(tmp_path / "w", scale=0.003, seed=9, pg_url=pg_url, mysql_url=mysql_url, workers=1)
    sources = {s["id"]: s for s in description["sources"]}
    assert sources["gongan_hjrk"]["location"] == pg_url and sources["gongan_hjrk"]["dialect"] == "postgresql"
    assert sources["scjg_qydj"]["location"] == mysql_url and sources["scjg_gtgsh"]["dialect"] == "mysql"
    assert not (tmp_path / "w" / "gongan").exists() and not (tmp_path / "w" / "scjg").exists()

    pg = sa.create_engine(pg_url)
    try:
        with pg.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM hjrk")).scalar() == sources["gongan_hjrk"]["rows"]
            columns = {c["name"]: str(c["type"]) for c in sa.inspect(connection).get_columns("hjrk")}
            assert columns["gmsfhm"] == "VARCHAR(18)" and columns["gxsj"].startswith("TIMESTAMP")
            assert sa.inspect(connection).get_pk_constraint("hjrk")["constrained_columns"] == ["rkid"]
            latest = connection.execute(sa.text("SELECT max(gxsj) FROM hjrk")).scalar()
            assert latest.date().isoformat() <= description["reference_date"]
    finally:
        pg.dispose()

    my = sa.create_engine(mysql_url)
    try:
        with my.connect() as connection:
            for table, source in (("qydj", "scjg_qydj"), ("gtgsh", "scjg_gtgsh")):
                assert connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == sources[source]["rows"]
            charset = connection.execute(sa.text(
                "SELECT CCSA.character_set_name FROM information_schema.TABLES T JOIN "
                "information_schema.COLLATION_CHARACTER_SET_APPLICABILITY CCSA ON CCSA.collation_name = T.table_collation "
                "WHERE T.table_schema = DATABASE() AND T.table_name = 'qydj'")).scalar()
            assert charset == "utf8mb4"
            name = connection.execute(sa.text("SELECT qymc FROM qydj ORDER BY qyid LIMIT 1")).scalar()
            assert "公司" in name or "部" in name or "企业" in name
    finally:
        my.dispose()

    report = audit(tmp_path / "w")
    assert report.ok and not report.notes
    assert json.loads((tmp_path / "w" / "world.json").read_text(encoding="utf-8"))["manifest"]["entries"] > 0


@pytest.mark.postgres
def test_pg_target_is_replaced_on_regeneration(tmp_path: Path, pg_url: str) -> None:
    """Generating again into the same database replaces the table instead of appending."""
    first = generate(tmp_path / "w", scale=0.002, seed=1, pg_url=pg_url, workers=1)
    second = generate(tmp_path / "w", scale=0.002, seed=2, pg_url=pg_url, workers=1)
    rows = next(s["rows"] for s in second["sources"] if s["id"] == "gongan_hjrk")
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM hjrk")).scalar() == rows
    finally:
        engine.dispose()
    assert first["seed"] != second["seed"]
