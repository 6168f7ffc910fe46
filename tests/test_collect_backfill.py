"""Backfill: collect(source, run, window=(from, to)] for replication-key sources, through the function API and
the collect_<source> DAG's params; it never moves the incremental watermark and is idempotent per run id."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from connectors.base import SourceError
from connectors.collect import collect, last_watermark, window_from_params
from test_connector_http import TOKEN, FakeApi

ENTRY = {"department": "测试厅", "department_code": "test", "library": "credit", "schedule": None,
         "fields": {"id": {"to": "record_id"}}}


def rows(days: range, per_day: int = 3) -> list[dict]:
    """per_day rows on each day (at 08:00, 09:00, …), ids day*100 + n."""
    return [{"id": day * 100 + n, "name": f"张{day}{n}", "gxsj": dt.datetime(2026, 1, day, 8 + n)} for day in days for n in range(per_day)]


class Source:
    """A SQLite table t_bf (replication key gxsj) registered as source t_bf, plus a file source t_files."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch, settings) -> None:
        self.settings = settings
        self.engine = sa.create_engine(f"sqlite:///{tmp / 'src.sqlite'}")
        self.table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String),
                              sa.Column("gxsj", sa.DateTime))
        self.table.create(self.engine)
        (tmp / "drop").mkdir()
        sources = [ENTRY | {"id": "t_bf", "kind": "sql", "connection": "t_bf", "table": "t", "primary_key": ["id"], "replication_key": "gxsj"},
                   ENTRY | {"id": "t_files", "kind": "file", "connection": "t_files", "glob": "*.csv", "primary_key": ["id"]}]
        registry = tmp / "sources.yaml"
        registry.write_text(yaml.safe_dump({"sources": sources}, allow_unicode=True), encoding="utf-8")
        monkeypatch.setenv("HUB_SOURCE_REGISTRY", str(registry))
        monkeypatch.setenv("AIRFLOW_CONN_T_BF", json.dumps({"conn_type": "sqlite", "host": str(tmp / "src.sqlite")}))
        monkeypatch.setenv("AIRFLOW_CONN_T_FILES", json.dumps({"conn_type": "fs", "extra": {"path": str(tmp / "drop")}}))

    def add(self, days: range) -> None:
        with self.engine.begin() as connection:
            connection.execute(self.table.insert(), rows(days))

    def run_row(self, run_id: str) -> tuple:
        engine = sa.create_engine(self.settings.database_url)
        with engine.connect() as connection:
            row = connection.execute(sa.text("SELECT watermark_from, watermark_to, rows_extracted FROM source_run "
                                             "WHERE source_id = 't_bf' AND run_id = :r"), {"r": run_id}).one()
        engine.dispose()
        return tuple(row)

    def watermark(self) -> str | None:
        engine = sa.create_engine(self.settings.database_url)
        try:
            return last_watermark(engine, "t_bf")
        finally:
            engine.dispose()


@pytest.fixture
def source(hub_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from hub.db import upgrade

    upgrade(hub_settings.database_url)
    source = Source(tmp_path, monkeypatch, hub_settings)
    yield source
    source.engine.dispose()


def ids(landing: dict) -> list[int]:
    return sorted(pq.read_table(landing["path"]).column("id").to_pylist())


def test_backfill_reads_its_window_and_never_moves_the_watermark(source: Source) -> None:
    source.add(range(1, 6))
    assert collect("t_bf", "r1")["rows"] == 15
    assert source.watermark() == "2026-01-05 10:00:00"

    # (from, to]: from is exclusive, to inclusive; bounds as dates or times.
    backfill = collect("t_bf", "b1", window=("2026-01-02 08:00:00", "2026-01-04"))
    assert ids(backfill) == [201, 202, 300, 301, 302]
    assert backfill["details"]["backfill"] == {"from": "2026-01-02 08:00:00", "to": "2026-01-04"}
    assert (backfill["watermark_low"], backfill["watermark_high"]) == ("2026-01-02 08:00:00", "2026-01-04")
    assert source.run_row("b1") == (None, None, 5)  # no watermark recorded for a backfill
    assert source.watermark() == "2026-01-05 10:00:00"  # not moved backwards

    # A window reaching past the watermark does not move it forwards either.
    source.add(range(6, 7))
    ahead = collect("t_bf", "b2", window=("2026-01-05 09:00:00", "2026-01-06 08:00:00"))
    assert ids(ahead) == [502, 600]
    assert source.watermark() == "2026-01-05 10:00:00"
    assert ids(collect("t_bf", "r2")) == [600, 601, 602]  # the incremental run still gets all of day 6
    assert source.watermark() == "2026-01-06 10:00:00"


def test_backfill_is_idempotent_per_run_id(source: Source) -> None:
    source.add(range(1, 4))
    first = collect("t_bf", "b1", window=("2026-01-01", "2026-01-02 23:00:00"))
    assert collect("t_bf", "b1", window=("2026-01-01", "2026-01-02 23:00:00")) == first
    with pytest.raises(SourceError, match="already landed"):
        collect("t_bf", "b1", window=("2026-01-01", "2026-01-03"))
    with pytest.raises(SourceError, match="already landed"):
        collect("t_bf", "b1")  # the same run id as an incremental run
    assert source.run_row("b1") == (None, None, 6)


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (("2026-01-03", "2026-01-02"), "must be before"),
        (("2026-01-02", "2026-01-02"), "must be before"),
        (("", "2026-01-02"), "both be given"),
        (("a day", "b day"), "not a valid value of the replication key"),
        (("2026-01-02",), "must be"),
    ],
)
def test_a_bad_window_is_a_clear_error(source: Source, window: tuple, message: str) -> None:
    source.add(range(1, 3))
    with pytest.raises(SourceError, match=message) as failure:
        collect("t_bf", "bad", window=window)
    assert "t_bf" in str(failure.value)


def test_only_replication_key_sources_can_be_backfilled(source: Source) -> None:
    with pytest.raises(SourceError, match="cannot be backfilled"):
        collect("t_files", "b1", window=("2026-01-01", "2026-01-02"))


def test_window_from_dag_params() -> None:
    assert window_from_params("s", {"backfill_from": None, "backfill_to": None}) is None
    assert window_from_params("s", {}) is None
    assert window_from_params("s", {"backfill_from": "2026-01-01", "backfill_to": "2026-01-02"}) == ("2026-01-01", "2026-01-02")
    with pytest.raises(SourceError, match="both bounds"):
        window_from_params("s", {"backfill_from": "2026-01-01", "backfill_to": ""})


def test_http_backfill_filters_the_window(hub_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.db import upgrade

    upgrade(hub_settings.database_url)
    with FakeApi(key="updatedAt") as api:
        api.records = [{"id": i, "updatedAt": f"2026-01-{i:02d} 08:00:00"} for i in range(1, 11)]
        entry = ENTRY | {"id": "t_api", "kind": "http", "connection": "t_api", "endpoint": "/api/v1/sxbzxr", "page_size": 3,
                         "since_param": "updated_since", "primary_key": ["id"], "replication_key": "updatedAt"}
        registry = tmp_path / "sources.yaml"
        registry.write_text(yaml.safe_dump({"sources": [entry]}, allow_unicode=True), encoding="utf-8")
        monkeypatch.setenv("HUB_SOURCE_REGISTRY", str(registry))
        monkeypatch.setenv("AIRFLOW_CONN_T_API", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": api.port, "password": TOKEN}))
        assert collect("t_api", "r1")["rows"] == 10
        landing = collect("t_api", "b1", window=("2026-01-03 08:00:00", "2026-01-06 08:00:00"))
        assert sorted(int(v) for v in pq.read_table(landing["path"]).column("id").to_pylist()) == [4, 5, 6]
        assert landing["details"]["skipped_after_window"] == 4
        assert any(r.get("updated_since") == "2026-01-03 08:00:00" for r in api.requests)
        api.records.append({"id": 11, "updatedAt": "2026-01-11 08:00:00"})
        assert [int(v) for v in pq.read_table(collect("t_api", "r2")["path"]).column("id").to_pylist()] == [11]


@pytest.mark.airflow
def test_a_dag_run_with_backfill_params(airflow_session, source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.registry import get_source
    from hub.dag_factory import collection_dag

    source.add(range(1, 4))
    dag = collection_dag(get_source("t_bf"))
    assert set(dag.params) == {"backfill_from", "backfill_to"}
    assert collection_dag(get_source("t_files")).params == {}  # a file drop has no window to backfill
    run = dag.test(logical_date=None, run_conf={"backfill_from": "2026-01-01 09:00:00", "backfill_to": "2026-01-02 08:00:00"})
    assert str(getattr(run.state, "value", run.state)) == "success"
    landing = json.loads(next((source.settings.landing_dir / "t_bf").glob("run=*/_landing.json")).read_text(encoding="utf-8"))
    assert landing["details"]["backfill"] == {"from": "2026-01-01 09:00:00", "to": "2026-01-02 08:00:00"}
    assert landing["rows"] == 2  # 2026-01-01 10:00 and 2026-01-02 08:00
    assert source.watermark() is None  # the incremental position is untouched: the next normal run reads everything
    normal = dag.test(logical_date=None)
    assert str(getattr(normal.state, "value", normal.state)) == "success" and source.watermark() == "2026-01-03 10:00:00"
