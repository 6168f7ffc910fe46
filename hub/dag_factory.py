"""Builders for the hub's DAGs. The files in dags/ only call these: wiring, no logic, nothing read at import but the registry.

Conventions applied to every DAG: an owner, tags, retries with exponential backoff, no catch-up, and
Assets for data-aware scheduling (a library merges when one of its sources lands).
"""

from __future__ import annotations

import functools
import operator
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, get_current_context, task

from connectors.registry import SourceSpec, sources_for

START_DATE = pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai")
OWNER = "hub-data-engineering"

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=2),
}
# Merges are deterministic and local: one quick retry covers a locked database; more would only delay a real error.
MERGE_ARGS = DEFAULT_ARGS | {"retries": 1, "retry_delay": timedelta(seconds=5)}

LIBRARY_LABELS = {"population": "人口库", "legal_entity": "法人库", "licence": "电子证照库", "credit": "信用库"}


def landing_asset(source_id: str) -> Asset:
    """The Asset a source's landing updates; merge DAGs are scheduled on it."""
    return Asset(uri=f"hub://landing/{source_id}", name=f"landing_{source_id}", group="landing")


def library_asset(library: str) -> Asset:
    """The Asset a base library's merge updates; publication DAGs are scheduled on it."""
    return Asset(uri=f"hub://library/{library}", name=f"library_{library}", group="library")


def current_run_id() -> str:
    """The Airflow run id of the running task (the idempotency key of every stage)."""
    return get_current_context()["run_id"]


def collection_dag(spec: SourceSpec) -> DAG:
    """collect_<source>: extract the source into an immutable landing and announce it."""
    with DAG(
        dag_id=spec.dag_id,
        description=f"{spec.department} · {spec.id} → 落地区 landing ({LIBRARY_LABELS[spec.library]})",
        schedule=spec.schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["collect", spec.department_code, spec.library, spec.kind],
        doc_md=f"采集 {spec.department} 的数据源 `{spec.id}`（{spec.kind}），写入不可变的落地 Parquet，并更新资产 `landing_{spec.id}`。",
    ) as dag:

        @task(task_id="extract_to_landing", outlets=[landing_asset(spec.id)])
        def extract_to_landing() -> dict:
            """Read the source into landing; returns a small reference (path, rows), never the data."""
            from connectors.collect import collect

            landing = collect(spec.id, current_run_id())
            return {"path": landing["path"], "rows": landing["rows"], "sha256": landing["sha256"]}

        extract_to_landing()
    return dag


def merge_dag(library: str) -> DAG:
    """merge_<library>: load every landed, not yet loaded run of the library's sources."""
    inlets = [landing_asset(spec.id) for spec in sources_for(library, merged_only=True)]
    with DAG(
        dag_id=f"merge_{library}",
        description=f"汇入{LIBRARY_LABELS[library]} merge landings into the {library} library",
        schedule=functools.reduce(operator.or_, inlets) if inlets else None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=MERGE_ARGS,
        tags=["merge", library],
        doc_md=f"当任一数据源落地后，将尚未入库的落地批次标准化并汇入{LIBRARY_LABELS[library]}。",
    ) as dag:

        @task(task_id="load_pending_landings", outlets=[library_asset(library)])
        def load_pending_landings() -> dict:
            """Standardise and load the pending landings; returns counts per source run."""
            from libraries.load import load_pending

            return load_pending(library)

        load_pending_landings()
    return dag
