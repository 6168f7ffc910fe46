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
from urllib.parse import urlsplit

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


def world_connections(world_dir: Path, api_url: str | None = None) -> dict[str, str]:
    """Airflow connections (AIRFLOW_CONN_* values) for the simulated province's sources.

    sql: the database URL (a relative SQLite file is under the world folder); file: an `fs` connection whose
    extra.path is the folder holding the location (the registry's glob picks the files in it); http: an `http`
    connection to api_url (the world's API served by world_api()) or to an absolute URL location, with the
    court's token as password. An http source without either gets no connection (its collection is skipped).
    """
    description = json.loads((world_dir / "world.json").read_text(encoding="utf-8"))
    connections = {}
    for source in description["sources"]:
        kind, location = source.get("kind"), str(source.get("location", ""))
        if kind == "sql":
            if "://" not in location:  # a SQLite file relative to the world folder
                location = f"sqlite:///{(world_dir / location).resolve()}"
            connections[source["id"]] = connection_json(location)
        elif kind == "file":
            connections[source["id"]] = json.dumps({"conn_type": "fs", "extra": {"path": str(drop_folder(world_dir, location))}})
        elif kind == "http" and (api_url or "://" in location):
            token = source.get("token") or description.get("court_token") or _world_token(description)
            connections[source["id"]] = http_connection_json(api_url or location, token)
    return connections


def drop_folder(world_dir: Path, location: str) -> Path:
    """The folder of a file source: the location itself, or the folder holding the file or glob it names."""
    parts = Path(location).parts
    glob_at = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), None)
    if glob_at is not None:
        return (world_dir.joinpath(*parts[:glob_at])).resolve()
    path = (world_dir / location).resolve()
    return path.parent if path.is_file() or (path.suffix and not path.exists()) else path


def http_connection_json(url: str, token: str | None) -> str:
    """An Airflow http connection (JSON form) for a base URL: schema is the scheme, as Airflow's HttpHook reads it."""
    parsed = urlsplit(url)
    body = {"conn_type": "http", "host": parsed.hostname, "port": parsed.port, "schema": parsed.scheme or "http", "password": token}
    return json.dumps({k: v for k, v in body.items() if v is not None})


def _world_token(description: dict) -> str | None:
    """The court API's token of a generated world (derived from its seed, as world.config does)."""
    try:
        from world.config import WorldConfig
    except ImportError:
        return None
    return WorldConfig(seed=int(description.get("seed", 1))).token


@contextlib.contextmanager
def world_api(world_dir: Path, progress: Progress = print) -> Iterator[str]:
    """Serve the world's HTTP API (the court's) on 127.0.0.1 in a thread while the pipeline runs; yields its base URL."""
    from world import server

    handle = server.start_in_thread(world_dir)
    progress(f"模拟法院接口 simulated court API: {handle.url}")
    try:
        yield handle.url
    finally:
        handle.stop()


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

    with output_to(get_settings().airflow_home / "logs" / "hub-run.log"):
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


# Merges in reference order: a licence's holder and a credit record's subject are checked against the population and
# legal-entity libraries, so those two merge first.
MERGE_ORDER: tuple[str, ...] = ("merge_population", "merge_legal_entity", "merge_licence", "merge_credit")


def dag_order(dag_ids: list[str]) -> list[str]:
    """Data-flow order: collection DAGs, merges (referenced libraries first), then the publication DAGs."""
    collections = sorted(d for d in dag_ids if d.startswith("collect_"))
    merges = [d for d in MERGE_ORDER if d in dag_ids] + sorted(d for d in dag_ids if d.startswith("merge_") and d not in MERGE_ORDER)
    ordered = collections + merges
    return ordered + sorted(set(dag_ids) - set(ordered))


def run_dags(settings: Settings, progress: Progress, skip: frozenset[str] = frozenset()) -> list[DagOutcome]:
    """Run every DAG once in data-flow order (but those in skip); one failing source does not stop the others."""
    log_file = settings.airflow_home / "logs" / "hub-run.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    progress(f"Airflow 元数据库 metadata DB: {settings.airflow_database_url}")
    migrate_airflow(settings, log_file)
    dags = load_dags()
    order = [d for d in dag_order(list(dags)) if d not in skip]
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


def unconnected_http_dags(connections: dict[str, str]) -> frozenset[str]:
    """Collection DAGs of registered HTTP sources that have no connection (no API served): skipped, not failed."""
    from connectors.registry import all_sources

    return frozenset(spec.dag_id for spec in all_sources()
                     if spec.kind == "http" and spec.connection not in connections and env_var_name(spec.connection) not in os.environ)


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
    progress(f"枢纽数据库 hub database: {sa.make_url(settings.database_url).render_as_string(hide_password=True)}")
    upgrade(settings.database_url)
    with world_api(world_dir, progress) as api_url:
        connections = world_connections(world_dir, api_url)
        export_connections(connections)
        if api_url:  # the API's port is new each run: its connection must follow it
            os.environ.update({env_var_name(c): v for c, v in connections.items() if json.loads(v)["conn_type"] == "http"})
        run_dags(settings, progress, skip=unconnected_http_dags(connections))
    return counts(settings.database_url)
