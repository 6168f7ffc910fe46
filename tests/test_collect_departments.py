"""Real departmental databases: the simulated province puts 公安 hjrk into PostgreSQL and 市场监管 qydj/gtgsh into
MariaDB; the shipped registry's sources are collected from them through collect() and through the real DAG."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from connectors.collect import collect
from connectors.connections import env_var_name, sqlalchemy_url
from connectors.registry import get_source
from connectors.sql import SqlConnector

pytestmark = [pytest.mark.postgres, pytest.mark.mariadb]
SOURCES = ("gongan_hjrk", "scjg_qydj", "scjg_gtgsh")


@pytest.fixture
def province(pg_url: str, mysql_url: str, hub_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A small world with its SQL sources on the real servers, their connections defined, a fresh hub database."""
    from hub.db import upgrade
    from hub.pipeline import world_connections
    from world import generate

    upgrade(hub_settings.database_url)
    monkeypatch.delenv("HUB_SOURCE_REGISTRY", raising=False)  # the shipped registry
    world = generate(tmp_path / "world", scale=0.01, seed=11, pg_url=pg_url, mysql_url=mysql_url)
    connections = world_connections(tmp_path / "world")
    for source_id in SOURCES:
        monkeypatch.setenv(env_var_name(get_source(source_id).connection), connections[source_id])
    return world


def landed_runs(settings, source_id: str) -> list[tuple]:
    engine = sa.create_engine(settings.database_url)
    with engine.connect() as connection:
        runs = connection.execute(sa.text("SELECT run_id, rows_extracted, watermark_to FROM source_run WHERE source_id = :s ORDER BY id"),
                                  {"s": source_id}).all()
    engine.dispose()
    return [tuple(r) for r in runs]


def test_collect_from_postgresql_and_mariadb(province: dict, hub_settings) -> None:
    counts = province["counts"]["sources"]
    assert {s["id"]: s["dialect"] for s in province["sources"] if s["id"] in SOURCES} == {
        "gongan_hjrk": "postgresql", "scjg_qydj": "mysql", "scjg_gtgsh": "mysql"}
    for source_id in SOURCES:
        first = collect(source_id, "r1")
        assert first["rows"] == counts[source_id] > 0, source_id
        assert pq.read_table(first["path"]).num_rows == counts[source_id]
        second = collect(source_id, "r2")
        assert second["rows"] == 0, f"{source_id}: a second collection must land nothing"
        runs = landed_runs(hub_settings, source_id)
        assert [r[:2] for r in runs] == [("r1", counts[source_id]), ("r2", 0)] and runs[0][2] == runs[1][2] is not None


def test_the_postgresql_copy_path_lands_what_the_cursor_path_reads(province: dict) -> None:
    """The COPY fast path against the portable cursor path, value for value, on the real 公安 table."""
    landed = pq.read_table(collect("gongan_hjrk", "r1")["path"]).sort_by("rkid")
    url = sqlalchemy_url("gongan_hjrk")
    cursor = SqlConnector("gongan_hjrk", url, "hjrk", ("rkid",), "gxsj", use_copy=False)
    read = pa.Table.from_batches(list(cursor.read_batches(batch_rows=4096)), schema=cursor.arrow_schema()).sort_by("rkid")
    assert landed.schema == read.schema and landed.equals(read)
    assert landed.column("xm").null_count < landed.num_rows and landed.column("gxsj").null_count == 0


@pytest.mark.airflow
def test_collect_hjrk_through_its_dag(airflow_session, province: dict, hub_settings) -> None:
    from hub.dag_factory import collection_dag

    dag = collection_dag(get_source("gongan_hjrk"))
    for attempt in (1, 2):
        run = dag.test(logical_date=None)
        assert str(getattr(run.state, "value", run.state)) == "success", attempt
    runs = landed_runs(hub_settings, "gongan_hjrk")
    assert [r[1] for r in runs] == [province["counts"]["sources"]["gongan_hjrk"], 0]
