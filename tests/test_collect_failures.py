"""Unreachable sources: retried by Airflow with exponential backoff, then a clear failure naming the source and
the cause — never the credentials — while other sources' collections go on."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from connectors.base import SourceError
from connectors.collect import collect

PASSWORD = "Pw-7f3kQz9-never-logged"
ENTRY = {"department": "测试厅", "department_code": "test", "library": "credit", "schedule": "@daily", "kind": "sql",
         "table": "t", "primary_key": ["id"], "replication_key": "gxsj", "fields": {"id": {"to": "record_id"}}}


@pytest.fixture
def sources(hub_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """t_pg_down (PostgreSQL, nothing listening), t_my_denied (MariaDB, wrong password) and t_up (SQLite with rows)."""
    from hub.db import upgrade

    upgrade(hub_settings.database_url)
    registry = tmp_path / "sources.yaml"
    entries = [ENTRY | {"id": name, "connection": name} for name in ("t_pg_down", "t_my_denied", "t_up")]
    registry.write_text(yaml.safe_dump({"sources": entries}, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("HUB_SOURCE_REGISTRY", str(registry))
    monkeypatch.setenv("AIRFLOW_CONN_T_PG_DOWN", json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "hub", "password": PASSWORD, "schema": "gongan"}))
    monkeypatch.setenv("AIRFLOW_CONN_T_MY_DENIED", json.dumps(
        {"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": "root", "password": PASSWORD, "schema": "test"}))
    monkeypatch.setenv("AIRFLOW_CONN_T_UP", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "up.sqlite")}))
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'up.sqlite'}")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, gxsj DATETIME)"))
        connection.execute(sa.text("INSERT INTO t VALUES (1, '2026-01-01 08:00:00'), (2, '2026-01-02 08:00:00')"))
    engine.dispose()
    return tmp_path


@pytest.mark.parametrize(("source_id", "cause"), [("t_pg_down", "Connection refused"), ("t_my_denied", "Access denied")])
def test_an_unreachable_source_fails_clearly_without_credentials(sources: Path, source_id: str, cause: str) -> None:
    with pytest.raises(SourceError) as failure:
        collect(source_id, "r1")
    message = str(failure.value)
    assert source_id in message and cause in message and PASSWORD not in message
    chained = failure.value.__cause__
    assert chained is not None and PASSWORD not in str(chained) and PASSWORD not in repr(chained)
    assert collect("t_up", "r1")["rows"] == 2  # the next source is not affected


def test_a_missing_connection_is_named() -> None:
    from connectors.collect import connection_fields

    with pytest.raises(SourceError, match="AIRFLOW_CONN_NOWHERE"):
        connection_fields("t_x", "nowhere")


@pytest.mark.airflow
def test_a_dag_run_retries_then_fails_clearly_and_other_sources_go_on(
    airflow_session, sources: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    from connectors.registry import get_source
    from hub.dag_factory import collection_dag

    down, up = collection_dag(get_source("t_pg_down")), collection_dag(get_source("t_up"))
    task = down.get_task("extract_to_landing")
    # As shipped: three retries, 30 s doubling up to 30 min (checked here, shortened below to keep the test quick).
    assert task.retries == 3 and task.retry_exponential_backoff and task.retry_delay == timedelta(seconds=30)
    assert task.max_retry_delay == timedelta(minutes=30)
    task.retries, task.retry_delay = 1, timedelta(seconds=1)

    failed = down.test(logical_date=None)
    succeeded = up.test(logical_date=None)
    assert str(getattr(failed.state, "value", failed.state)) == "failed"
    assert str(getattr(succeeded.state, "value", succeeded.state)) == "success"
    with create_session() as session:
        tries = session.query(TaskInstance.try_number, TaskInstance.state).filter(
            TaskInstance.dag_id == down.dag_id, TaskInstance.run_id == failed.run_id).one()
    assert tries[0] == 2 and str(tries[1]) in ("failed", "TaskInstanceState.FAILED")  # the first try and one retry

    log = capfd.readouterr()
    text = log.out + log.err
    assert "数据源 t_pg_down 无法连接 cannot connect" in text and "Connection refused" in text
    assert PASSWORD not in text, "a connection password reached the task log"
