"""DAG integrity: every DAG file imports without errors, and every DAG has an owner, tags and retries."""

from __future__ import annotations

import pytest

from connectors.registry import all_sources

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def dagbag(airflow_session):
    """All DAGs of the project, as Airflow's DagBag parses them."""
    from airflow.dag_processing.dagbag import DagBag

    from hub.airflow_env import DAGS_FOLDER

    return DagBag(dag_folder=str(DAGS_FOLDER))


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert dagbag.dags, "no DAG was found"


def test_one_collection_dag_per_registered_source(dagbag) -> None:
    expected = {spec.dag_id for spec in all_sources()}
    assert expected <= set(dagbag.dags)


def test_every_dag_has_owner_tags_and_retries(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
            assert task.retry_exponential_backoff, f"{dag_id}.{task.task_id} retries without backoff"


def test_merge_dags_are_scheduled_by_landing_assets(dagbag) -> None:
    merge = dagbag.dags["merge_population"]
    assert "landing_gongan_hjrk" in str(merge.timetable.asset_condition)


def test_dag_files_do_no_work_at_import() -> None:
    """DAG files only wire tasks: they import the factory and the registry, nothing else."""
    from hub.airflow_env import DAGS_FOLDER

    for path in DAGS_FOLDER.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        assert all(("registry" in line or "dag_factory" in line) for line in imports), f"{path.name}: {imports}"
