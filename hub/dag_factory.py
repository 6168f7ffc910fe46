"""Builders for the hub's DAGs. The files in dags/ only call these: wiring, no logic, nothing read at import but the registry.

Conventions applied to every DAG: an owner, tags, retries with exponential backoff, no catch-up, and
Assets for data-aware scheduling (a library merges when one of its sources lands).
"""

from __future__ import annotations

import functools
import operator
from datetime import datetime, timedelta

import pendulum
from airflow.sdk import DAG, Asset, Param, get_current_context, task

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


def backfill_params(spec: SourceSpec) -> dict[str, Param]:
    """DAG params of a source that can be backfilled: the replication-key window (from, to] of a manual run."""
    if not spec.can_backfill:
        return {}
    described = f"按 {spec.replication_key} 回补 backfill by {spec.replication_key}, e.g. 2026-01-01 or 2026-01-01 08:00:00"
    return {
        "backfill_from": Param(None, type=["null", "string"], title="回补起点（不含）backfill from (exclusive)", description=described),
        "backfill_to": Param(None, type=["null", "string"], title="回补终点（含）backfill to (inclusive)", description=described),
    }


def collection_dag(spec: SourceSpec) -> DAG:
    """collect_<source>: extract the source into an immutable landing and announce it (a manual run may backfill a window)."""
    backfill = "；手动触发时可给出 backfill_from / backfill_to 回补一个时间窗口（不移动增量水位）" if spec.can_backfill else ""
    with DAG(
        dag_id=spec.dag_id,
        description=f"{spec.department} · {spec.id} → 落地区 landing ({LIBRARY_LABELS[spec.library]})",
        schedule=spec.schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        params=backfill_params(spec),
        tags=["collect", spec.department_code, spec.library, spec.kind],
        doc_md=f"采集 {spec.department} 的数据源 `{spec.id}`（{spec.kind}，{spec.mode}），写入不可变的落地 Parquet，"
        f"并更新资产 `landing_{spec.id}`{backfill}。",
    ) as dag:

        @task(task_id="extract_to_landing", outlets=[landing_asset(spec.id)])
        def extract_to_landing() -> dict:
            """Read the source into landing; returns a small reference (path, rows), never the data."""
            from connectors.collect import collect, window_from_params

            context = get_current_context()
            # The window comes with the run (the trigger form writes the params into the run's conf): read the conf,
            # not the params, whose defaults are None and which an in-process dag.test() carries from run to run.
            window = window_from_params(spec.id, getattr(context.get("dag_run"), "conf", None) or {})
            landing = collect(spec.id, context["run_id"], window=window)
            return {"path": landing["path"], "rows": landing["rows"], "sha256": landing["sha256"]}

        extract_to_landing()
    return dag


def current_run_time() -> datetime:
    """When the running DAG run is for (its run_after): the time every stage of the run judges dates by."""
    context = get_current_context()
    dag_run = context.get("dag_run")
    return getattr(dag_run, "run_after", None) or context.get("logical_date") or dag_run.start_date


# Libraries whose rows without a usable key are matched by name, birth date, region / name, address (libraries/linkage.py).
LINKED_LIBRARIES: tuple[str, ...] = ("population", "legal_entity")


def merge_dag(library: str) -> DAG:
    """merge_<library>: check the quality of every pending landing of the library's sources, then load what passed."""
    inlets = [landing_asset(spec.id) for spec in sources_for(library, merged_only=True)]
    with DAG(
        dag_id=f"merge_{library}",
        description=f"汇入{LIBRARY_LABELS[library]} check and merge landings into the {library} library",
        schedule=functools.reduce(operator.or_, inlets) if inlets else None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=MERGE_ARGS,
        tags=["merge", "quality", library],
        doc_md=(f"当任一数据源落地后：先做质量检查（规则目录、Great Expectations 校验与 Data Docs、隔离区、问题工单），"
                f"再将通过检查的行按字段择优汇入{LIBRARY_LABELS[library]}（保留历史版本与字段来源）"
                + ("；最后对缺少有效身份号码/统一社会信用代码的隔离记录做记录匹配（关联、人工复核或不匹配）。" if library in LINKED_LIBRARIES
                   else "；最后以颁发部门的密钥为新增或变更的证照加盖电子签章。" if library == "licence" else "。")),
    ) as dag:

        @task(task_id="check_quality")
        def check_quality() -> dict:
            """Quality stage over the pending landings; returns counts and Data Docs pages per run (references, not data)."""
            from quality.stage import check_pending

            return check_pending(library, run_time=current_run_time())

        # The library's Asset is announced by the last task that changes the library (linkage where there is one).
        @task(task_id="load_pending_landings", outlets=[] if library in LINKED_LIBRARIES or library == "licence" else [library_asset(library)])
        def load_pending_landings(checked: dict) -> dict:
            """Load the rows the quality stage let through; returns counts per source run (skipped: no loader yet)."""
            from libraries.load import load_pending

            loaded = load_pending(library)
            if "not_loaded" in loaded:  # a library checked but not loadable yet must not announce a new version
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException(loaded["not_loaded"])
            return loaded

        loaded = load_pending_landings(check_quality())
        if library in LINKED_LIBRARIES:

            @task(task_id="link_unkeyed_records", outlets=[library_asset(library)])
            def link_unkeyed_records(_: dict) -> dict:
                """Record linkage for rows quarantined only for a missing or invalid key: link, review or no match."""
                from libraries.linkage import link_pending

                return link_pending(library)

            link_unkeyed_records(loaded)
        elif library == "licence":

            @task(task_id="seal_licences", outlets=[library_asset(library)])
            def seal_licences(_: dict) -> dict:
                """Seal every licence without a seal (new or changed) with its issuing department's key."""
                from hub.db import engine_for
                from hub.settings import get_settings
                from licences.seal import seal_pending

                return seal_pending(engine_for(get_settings().database_url), sealed_at=current_run_time())

            seal_licences(loaded)
    return dag
