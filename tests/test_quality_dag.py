"""The merge DAG runs the quality stage (rules, GX suite, Data Docs, quarantine, tickets) before it loads; scorecards."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import pytest
import sqlalchemy as sa

from connectors.collect import collect
from connectors.connections import connection_json, env_var_name
from hub.db import engine_for, upgrade
from hub.models import Person, QualityRun, QualityTicket
from test_quality_feedback import BAD_LI, HJRK
from test_quality_rules import rid

pytestmark = pytest.mark.airflow


def test_merge_dag_checks_quality_before_loading(airflow_session, tmp_path, monkeypatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from hub.airflow_env import DAGS_FOLDER
    from hub.settings import get_settings
    from quality.scorecard import write_scorecards

    url = f"sqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    get_settings.cache_clear()
    upgrade(url)
    source = sa.create_engine(f"sqlite:///{tmp_path / 'gongan.sqlite'}")
    with source.begin() as c:
        c.exec_driver_sql(HJRK)
        c.exec_driver_sql("INSERT INTO hjrk VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", [
            (1, rid("19900102", 11), "张伟", "1", "01", "1990-01-02", "420102", "一路1号", None, "10", None, "2026-01-01 08:00:00"),
            (2, BAD_LI, "李四", "1", "01", "1988-11-11", "420102", "三路3号", None, "10", None, "2026-01-01 08:20:00"),
        ])
    monkeypatch.setenv(env_var_name("gongan_hjrk"), connection_json(source.url))
    collect("gongan_hjrk", "run-1")

    dag = DagBag(dag_folder=str(DAGS_FOLDER)).dags["merge_population"]
    assert [t.task_id for t in dag.topological_sort()] == ["check_quality", "load_pending_landings", "link_unkeyed_records"]
    state = dag.test(logical_date=None).state
    assert str(getattr(state, "value", state)) == "success"

    hub = engine_for(url)
    with sa.orm.Session(hub) as session:
        checked = session.scalars(sa.select(QualityRun)).one()
        assert checked.gx_success is False and checked.docs_page and checked.status == "loaded"
        assert (checked.rows_loaded, checked.rows_quarantined) == (1, 1)
        assert session.scalar(sa.select(sa.func.count()).select_from(Person)) == 1
        assert session.scalars(sa.select(QualityTicket)).first().department_code == "gongan"
    data = get_settings().data_root / "quality"
    assert open(checked.docs_page, encoding="utf-8").read().count("POP-ID-resident_id") >= 1
    assert "人口库质量检查报告" in (data / "reports" / "population" / "latest.html").read_text(encoding="utf-8")

    result = write_scorecards(hub, tmp_path / "scorecard")
    assert result["departments"]["gongan"] == 50.0 and result["open_tickets"]["gongan"] >= 1
    for chart in result["charts"]:
        ElementTree.parse(tmp_path / "scorecard" / chart)  # well-formed SVG
    page = (tmp_path / "scorecard" / "index.html").read_text(encoding="utf-8")
    assert "数据质量评分卡" in page and "省公安厅" in page and "Data Docs" in page
