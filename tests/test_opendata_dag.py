"""The release_opendata DAG: scheduled by the libraries' Assets, one task per dataset, runs with dag.test()."""

from __future__ import annotations

import json

import pytest

from test_opendata_release import keyring, seed  # noqa: F401 - fixture

pytestmark = pytest.mark.airflow


def test_release_dag_runs_and_publishes(airflow_session, tmp_path, monkeypatch, keyring) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from hub.airflow_env import DAGS_FOLDER
    from hub.settings import get_settings
    from licences import keys
    from opendata import store
    from opendata.datasets import load_datasets

    url = f"sqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    get_settings.cache_clear()
    keys._cache_clear()
    seed(url)

    dag = DagBag(dag_folder=str(DAGS_FOLDER)).dags["release_opendata"]
    assert {t.task_id for t in dag.tasks} == {"release_" + i.replace("-", "_") for i in load_datasets()}
    condition = str(dag.timetable.asset_condition)
    assert all(f"library_{lib}" in condition for lib in ("population", "legal_entity", "licence", "credit"))
    assert dag.doc_md and "隐私闸门" in dag.doc_md and dag.owner == "hub-data-engineering"

    state = dag.test(logical_date=None).state
    assert str(getattr(state, "value", state)) == "success"
    root = get_settings().data_root
    assert {d["id"] for d in store.list_datasets(root)} == set(load_datasets())
    for dataset_id in load_datasets():
        assert store.verify_release(root, dataset_id)["ok"]
    first = {d["id"]: d["latest_version"] for d in store.list_datasets(root)}

    # A second run with unchanged libraries publishes no new version.
    state = dag.test(logical_date=None).state
    assert str(getattr(state, "value", state)) == "success"
    assert {d["id"]: d["latest_version"] for d in store.list_datasets(root)} == first
    assert json.loads((root / "opendata" / "keys.json").read_text())["format"] == "hub-opendata-keys/1"
    keys._cache_clear()
