"""Collect → landing → load into the population and legal-entity libraries, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from connectors.collect import collect
from connectors.connections import connection_json, env_var_name
from hub.crypto import get_cipher
from hub.db import engine_for, upgrade
from hub.models import LegalEntity, Person, SourceRun
from libraries.load import load_pending
from schemas.identifiers import resident_id_check_char, uscc_check_char

HJRK = """CREATE TABLE hjrk (rkid INTEGER PRIMARY KEY, gmsfhm VARCHAR(18), xm TEXT, xb TEXT, mz TEXT, csrq TEXT,
  hjdz_xzqh TEXT, hjdz TEXT, lxdh TEXT, hyzk TEXT, swrq TEXT, gxsj TIMESTAMP)"""
QYDJ = """CREATE TABLE qydj (qyid INTEGER PRIMARY KEY, tyshxydm TEXT, qymc TEXT, qylx TEXT, fddbr TEXT, fddbr_zjhm TEXT,
  zczb DECIMAL(18,4), clrq TEXT, djjg TEXT, djzt TEXT, zs TEXT, xzqh TEXT, jyfw TEXT, gxsj TIMESTAMP)"""


def resident_id(birth: str, sequence: int) -> str:
    body = f"420102{birth}{sequence:03d}"
    return body + resident_id_check_char(body)


def uscc(serial: int) -> str:
    from schemas.identifiers import org_code_check_char

    org = f"{serial:08d}"
    body = f"91420102{org}{org_code_check_char(org)}"
    return body + uscc_check_char(body)


@pytest.fixture
def sources(tmp_path, monkeypatch):
    """A tiny 公安 and 市场监管 source in SQLite files, registered as Airflow connections."""
    gongan = sa.create_engine(f"sqlite:///{tmp_path / 'gongan.sqlite'}")
    scjg = sa.create_engine(f"sqlite:///{tmp_path / 'scjg.sqlite'}")
    with gongan.begin() as c:
        c.exec_driver_sql(HJRK)
        c.exec_driver_sql(
            "INSERT INTO hjrk VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (1, resident_id("19900102", 11), "張偉", "男", "01", "1990年1月2日", "420102", "武汉市江岸区 一路 1号", "13800000001", "10", None, "2026-01-01 08:00:00"),
                (2, resident_id("19851231", 22), " 王芳 ", "2", "01", "19851231", "420102", "武汉市江岸区二路2号", "13800000002", "20", None, "2026-01-01 09:00:00"),
                (3, "420102199001020119", "李四", "1", "01", "1990-01-02", "420102", "x", None, "10", None, "2026-01-01 10:00:00"),
                (4, None, "无号", "1", "01", "1990-01-02", "420102", "x", None, "10", None, "2026-01-01 10:00:00"),
                (5, resident_id("19700101", 33), "赵六", "X", "01", "1970-01-01", "420102", "x", None, "10", None, "2026-01-01 10:00:00"),
            ],
        )
    with scjg.begin() as c:
        c.exec_driver_sql(QYDJ)
        c.exec_driver_sql(
            "INSERT INTO qydj VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (1, uscc(1), "武汉市江岸区鑫达商贸有限公司", "有限责任公司", "張偉", resident_id("19900102", 11), "100.5", "2010-05-06", "江岸区市场监督管理局", "存续", "武汉市江岸区三路3号", "420102", "商贸", "2026-01-01 08:00:00"),
                (2, "NOT-A-USCC", "坏代码公司", "有限责任公司", "王芳", None, "5", "2011-01-01", "x", "存续", "x", "420102", "x", "2026-01-01 08:00:00"),
            ],
        )
    for conn_id, engine in (("gongan_hjrk", gongan), ("scjg_qydj", scjg), ("scjg_gtgsh", scjg)):
        monkeypatch.setenv(env_var_name(conn_id), connection_json(engine.url))
    return tmp_path


def test_collect_and_load_both_libraries(sources, hub_settings, hub_db_url, monkeypatch) -> None:
    monkeypatch.setenv("HUB_DATABASE_URL", hub_db_url)
    from hub.settings import get_settings

    get_settings.cache_clear()
    upgrade(hub_db_url)
    landing = collect("gongan_hjrk", "run-1")
    assert landing["rows"] == 5 and landing["watermark_high"] == "2026-01-01 10:00:00"
    collect("scjg_qydj", "run-1")

    population = load_pending("population")
    assert population == {"gongan_hjrk/run-1": {"rows": 5, "loaded": 2, "quarantined": 3, "merged": 0}}
    assert load_pending("legal_entity") == {"scjg_qydj/run-1": {"rows": 2, "loaded": 1, "quarantined": 1, "merged": 0}}
    assert load_pending("population") == {}, "a loaded run is never loaded twice"

    engine = engine_for(hub_db_url)
    cipher = get_cipher()
    with sa.orm.Session(engine) as session:
        zhang = session.get(Person, cipher.index_hash(resident_id("19900102", 11)))
        assert zhang.name == "张伟" and zhang.gender == "1" and zhang.birth_date == dt.date(1990, 1, 2)
        assert cipher.decrypt(zhang.id_number_enc) == resident_id("19900102", 11)
        assert zhang.id_number_masked.startswith("420102********")
        assert cipher.decrypt(zhang.address_enc) == "武汉市江岸区 一路 1号"
        company = session.get(LegalEntity, uscc(1))
        assert company.legal_rep_person_id == zhang.person_id and company.legal_rep_name == "张伟"
        assert float(company.registered_capital) == 100.5
        runs = {r.source_id: r for r in session.scalars(sa.select(SourceRun))}
        assert runs["gongan_hjrk"].status == "loaded" and runs["gongan_hjrk"].rows_rejected == 3

    import pyarrow.parquet as pq

    quarantined = pq.read_table(get_settings().quarantine_dir / "gongan_hjrk" / "run=run-1" / "rows.parquet").to_pylist()
    reasons = {row["_source_key"]: row["_reason"] for row in quarantined}
    assert set(reasons) == {"3", "4", "5"}
    assert "校验位错误" in reasons["3"] and "公民身份号码为空" in reasons["4"] and "性别“X”不在" in reasons["5"]


def test_second_collection_is_incremental_and_rerun_is_idempotent(sources, hub_settings, monkeypatch) -> None:
    from hub.settings import get_settings

    upgrade(get_settings().database_url)
    first = collect("gongan_hjrk", "run-1")
    assert collect("gongan_hjrk", "run-1") == first, "same run id, same landing"
    with sa.create_engine(f"sqlite:///{sources / 'gongan.sqlite'}").begin() as c:
        c.exec_driver_sql(
            "INSERT INTO hjrk VALUES (6, ?, '孙七', '2', '01', '2000-02-29', '420102', 'y', NULL, '10', NULL, '2026-01-02 08:00:00')",
            (resident_id("20000229", 44),),
        )
    second = collect("gongan_hjrk", "run-2")
    assert second["rows"] == 1 and second["watermark_low"] == "2026-01-01 10:00:00"
    assert load_pending("population") == {
        "gongan_hjrk/run-1": {"rows": 5, "loaded": 2, "quarantined": 3, "merged": 0},
        "gongan_hjrk/run-2": {"rows": 1, "loaded": 1, "quarantined": 0, "merged": 0},
    }
