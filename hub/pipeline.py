"""The main job, end to end on the embedded default: world → hub database → Airflow DAGs → counts.

`hub run` (and `make run`) calls run_pipeline(). DAGs run in-process with dag.test(), in data-flow order
(every collection DAG, then the merge DAGs their Assets would trigger), so no scheduler is needed; the
same DAGs run unchanged under `make airflow` or a production scheduler.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from connectors.connections import connection_json, env_var_name
from hub import airflow_env
from hub.settings import Settings, get_settings

Progress = Callable[[str], None]


class PipelineError(Exception):
    """A stage of the main job failed; the message says which and why."""


@dataclass
class DagOutcome:
    """How one DAG run ended."""

    dag_id: str
    state: str
    seconds: float


def world_connections(world_dir: Path) -> dict[str, str]:
    """Airflow connections (AIRFLOW_CONN_* values) for the simulated province's sources."""
    description = json.loads((world_dir / "world.json").read_text(encoding="utf-8"))
    connections = {}
    for source in description["sources"]:
        if source.get("kind") != "sql":
            continue
        location = source["location"]
        if "://" not in location:  # a SQLite file relative to the world folder
            location = f"sqlite:///{(world_dir / location).resolve()}"
        connections[source["id"]] = connection_json(location)
    return connections


def export_connections(connections: dict[str, str]) -> None:
    """Make connections visible to Airflow (and to task processes) through AIRFLOW_CONN_* variables."""
    for conn_id, value in connections.items():
        os.environ.setdefault(env_var_name(conn_id), value)


def migrate_airflow(settings: Settings, log_file: Path) -> None:
    """`airflow db migrate` on the Airflow metadata database (idempotent)."""
    env = os.environ | airflow_env.airflow_environ(settings)
    with open(log_file, "a", encoding="utf-8") as log:
        done = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, stdout=log, stderr=log)
    if done.returncode != 0:
        raise PipelineError(f"Airflow 元数据库迁移失败 metadata DB migration failed; see {log_file}")


@contextlib.contextmanager
def output_to(log_file: Path) -> Iterator[None]:
    """Send everything written to stdout/stderr (Airflow's task logs) to a file for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_file, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def load_dags() -> dict:
    """Every DAG of the project, parsed by Airflow's DagBag; import errors are fatal."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(airflow_env.DAGS_FOLDER))
    if bag.import_errors:
        raise PipelineError(f"DAG 导入错误 DAG import errors: {bag.import_errors}")
    return bag.dags


def run_dag(dag, log_file: Path) -> DagOutcome:
    """Run one DAG in-process with dag.test(), its logs going to log_file."""
    started = time.monotonic()
    with output_to(log_file):
        dag_run = dag.test(logical_date=None)
    state = str(getattr(dag_run.state, "value", dag_run.state))
    return DagOutcome(dag.dag_id, state, time.monotonic() - started)


def dag_order(dag_ids: list[str]) -> list[str]:
    """Data-flow order: collection DAGs first, then merges (later stages append themselves here)."""
    stages = ("collect_", "merge_")
    ordered = [d for stage in stages for d in sorted(dag_ids) if d.startswith(stage)]
    return ordered + sorted(set(dag_ids) - set(ordered))


def run_dags(settings: Settings, progress: Progress) -> list[DagOutcome]:
    """Run every DAG once in data-flow order; one failing source does not stop the others."""
    log_file = settings.airflow_home / "logs" / "hub-run.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    progress(f"Airflow 元数据库 metadata DB: {settings.airflow_database_url}")
    migrate_airflow(settings, log_file)
    dags = load_dags()
    order = dag_order(list(dags))
    outcomes = []
    for number, dag_id in enumerate(order, start=1):
        outcome = run_dag(dags[dag_id], log_file)
        mark = "成功 success" if outcome.state == "success" else f"失败 {outcome.state}"
        progress(f"[{number}/{len(order)}] {dag_id:<28} {mark}  {outcome.seconds:5.1f} s")
        outcomes.append(outcome)
    failed = [o.dag_id for o in outcomes if o.state != "success"]
    if failed:
        raise PipelineError(f"以下 DAG 失败 failed DAGs: {', '.join(failed)}; 日志 log: {log_file}")
    return outcomes


def counts(database_url: str) -> dict:
    """Rows per source (latest run) and per base library, from the hub database."""
    from hub.db import engine_for
    from hub.models import CreditRecord, LegalEntity, Licence, Person, SourceRun

    engine = engine_for(database_url)
    with engine.connect() as connection:
        per_source = {
            row.source_id: {"extracted": row.e, "loaded": row.l, "rejected": row.r}
            for row in connection.execute(
                sa.select(
                    SourceRun.source_id,
                    sa.func.sum(SourceRun.rows_extracted).label("e"),
                    sa.func.sum(SourceRun.rows_loaded).label("l"),
                    sa.func.sum(SourceRun.rows_rejected).label("r"),
                ).group_by(SourceRun.source_id)
            )
        }
        per_library = {
            name: connection.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()
            for name, model in (("population", Person), ("legal_entity", LegalEntity), ("licence", Licence), ("credit", CreditRecord))
        }
    return {"sources": per_source, "libraries": per_library}


def ensure_world(settings: Settings, scale: float, seed: int, regenerate: bool, progress: Progress) -> Path:
    """The simulated province at settings.world_dir, generated unless one of the same scale and seed is there."""
    from world import generate

    world_dir = settings.world_dir
    description = world_dir / "world.json"
    if description.exists() and not regenerate:
        existing = json.loads(description.read_text(encoding="utf-8"))
        if existing.get("scale") == scale and existing.get("seed") == seed:
            progress(f"模拟省份已存在 simulated province present: {world_dir} (scale {scale}, seed {seed})")
            return world_dir
    progress(f"生成模拟省份 generating the simulated province: scale {scale}, seed {seed} → {world_dir}")
    started = time.monotonic()
    generate(out=world_dir, scale=scale, seed=seed)
    progress(f"  完成 done in {time.monotonic() - started:.1f} s")
    return world_dir


def run_pipeline(scale: float | None = None, seed: int | None = None, regenerate: bool = False, progress: Progress = print) -> dict:
    """The main job: world, hub database, every DAG, counts."""
    from hub.db import upgrade

    settings = get_settings()
    airflow_env.apply(settings)
    world_dir = ensure_world(settings, scale or settings.world_scale, seed or settings.world_seed, regenerate, progress)
    export_connections(world_connections(world_dir))
    progress(f"枢纽数据库 hub database: {sa.make_url(settings.database_url).render_as_string(hide_password=True)}")
    upgrade(settings.database_url)
    run_dags(settings, progress)
    return counts(settings.database_url)
