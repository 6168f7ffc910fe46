"""`make scale-demo`: the hub's DAGs on Airflow with PostgreSQL and the CeleryExecutor, two Celery workers, one full run.

What it starts (all on this machine, all torn down at the end):
- two throw-away PostgreSQL databases on 127.0.0.1:5432 (user postgres): airflow_demo_<id> (Airflow's metadata and
  Celery's result backend) and hub_demo_<id> (the hub database: SQLite would serialise two workers' writes);
- a simulated province at scale 0.01 and its court API (world.server, in this process);
- `airflow api-server` (the Execution API Celery tasks talk to), `airflow scheduler`, `airflow dag-processor`,
  and `airflow celery worker --concurrency 1` twice, on the local Redis broker (redis://127.0.0.1:6379/0) and a
  queue of the demo's own so no other Airflow on the broker takes its tasks.

The DAGs are the project's, unchanged: the shipped airflow.cfg leaves them unpaused, so the scheduler starts every
collect_<source> run (catchup off: one run for the latest interval), their landing Assets trigger the merge_<library>
DAGs, and the library Assets trigger release_opendata. The demo waits until each collect_*, merge_* and
release_opendata DAG has a successful run and nothing is queued or running, reading dag_run and task_instance in the
metadata database, then prints timings (which worker ran what) and writes them to <data_root>/bench/scale-demo.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("HUB_DEMO_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BROKER_URL = os.environ.get("HUB_DEMO_BROKER_URL", "redis://127.0.0.1:6379/0")
SCALE = 0.01
WORKERS = 2
POLL_SECONDS = 5.0
Progress = Callable[[str], None]


@dataclass
class Demo:
    """Names, URLs and processes of one demo run."""

    ident: str
    root: Path
    airflow_url: str
    hub_url: str
    port: int
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def throwaway_databases(ident: str) -> Iterator[tuple[str, str]]:
    """Create airflow_demo_<id> and hub_demo_<id>; yield their URLs; drop them (even with sessions left open)."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    names = (f"airflow_demo_{ident}", f"hub_demo_{ident}")
    with admin.connect() as connection:
        for name in names:
            connection.execute(sa.text(f"CREATE DATABASE {name}"))
    urls = tuple(sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False) for name in names)
    try:
        yield urls
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def demo_environ(demo: Demo, connections: dict[str, str]) -> dict[str, str]:
    """Environment of every Airflow process: the hub's Airflow settings plus Celery, PostgreSQL and the demo's queue."""
    from connectors.connections import env_var_name
    from hub import airflow_env
    from hub.settings import Settings

    settings = Settings(data_root=demo.root / "data", database_url=demo.hub_url, airflow_database_url=demo.airflow_url,
                        world_dir=demo.root / "world")
    result_backend = "db+" + demo.airflow_url  # Celery's database backend takes any SQLAlchemy URL after db+
    environ = os.environ | airflow_env.airflow_environ(settings) | {
        "HUB_DATABASE_URL": demo.hub_url,
        "HUB_AIRFLOW_DATABASE_URL": demo.airflow_url,
        # Airflow would derive asyncpg for its async engine; psycopg 3 (shipped) has an async dialect of its own.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": demo.airflow_url.replace("postgresql+psycopg:", "postgresql+psycopg_async:", 1),
        "HUB_WORLD_DIR": str(demo.root / "world"),
        "HUB_SETTINGS_FILE": str(demo.root / "absent.toml"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": BROKER_URL,
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": f"hub_demo_{demo.ident}",
        "AIRFLOW__API__PORT": str(demo.port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{demo.port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{demo.port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
    }
    environ.update({env_var_name(conn_id): value for conn_id, value in connections.items()})
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    return environ


def airflow(arguments: list[str]) -> list[str]:
    """The command line of an airflow CLI call in this virtual environment."""
    return [sys.executable, "-m", "airflow", *arguments]


def start(demo: Demo, name: str, arguments: list[str], environ: dict[str, str]) -> None:
    """Start one Airflow process in its own process group, its output to <root>/logs/<name>.log."""
    log = open(demo.root / "logs" / f"{name}.log", "w", encoding="utf-8")  # noqa: SIM115 — closed with the process
    demo.processes[name] = subprocess.Popen(airflow(arguments), env=environ, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)


def stop_all(demo: Demo, progress: Progress) -> None:
    """SIGTERM every process group the demo started, then SIGKILL what is left after 30 s."""
    for process in demo.processes.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for name, process in demo.processes.items():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            progress(f"  强制结束 killing {name}")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_api(demo: Demo, timeout: float = 180) -> None:
    """Until the api-server answers (Celery tasks need its Execution API)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_alive(demo)
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{demo.port}/api/v2/monitor/health", timeout=2).status_code < 500:
                return
        time.sleep(1)
    raise RuntimeError("api-server 未就绪 did not answer")


def check_alive(demo: Demo) -> None:
    """Every started process still runs; else name it and the tail of its log."""
    for name, process in demo.processes.items():
        if process.poll() is not None:
            tail = (demo.root / "logs" / f"{name}.log").read_text(encoding="utf-8", errors="replace").splitlines()[-8:]
            raise RuntimeError(f"{name} 已退出 exited ({process.returncode}): " + " | ".join(tail))


def wanted(dag_id: str) -> bool:
    """The DAGs a full run consists of (licence_reminders is a daily housekeeping job, not part of it)."""
    return dag_id.startswith(("collect_", "merge_")) or dag_id == "release_opendata"


def run_states(engine: sa.Engine) -> list[dict[str, Any]]:
    """Every DAG run with its state and times, from the metadata database."""
    query = sa.text("SELECT dag_id, run_id, state, run_type, start_date, end_date FROM dag_run ORDER BY start_date")
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def finished(runs: list[dict[str, Any]], expected: set[str]) -> tuple[bool, str]:
    """(done, summary): done when every expected DAG has a successful run and no wanted run is still going."""
    good = {r["dag_id"] for r in runs if r["state"] == "success" and wanted(r["dag_id"])}
    going = [r["dag_id"] for r in runs if r["state"] in ("queued", "running") and wanted(r["dag_id"])]
    failed = sorted({r["dag_id"] for r in runs if r["state"] == "failed" and wanted(r["dag_id"])})
    if failed:
        raise RuntimeError(f"DAG 运行失败 failed DAG runs: {failed}")
    return expected <= good and not going, f"成功 {len(good & expected)}/{len(expected)} DAG，进行中 {len(going)}"


def expected_dags() -> set[str]:
    """collect_* of every source with a connection here, merge_* of every merged library, release_opendata."""
    from connectors.registry import all_sources, sources_for

    merges = {f"merge_{lib}" for lib in ("population", "legal_entity", "licence", "credit") if sources_for(lib, merged_only=True)}
    return {spec.dag_id for spec in all_sources()} | merges | {"release_opendata"}


def worker_task_counts(demo: Demo) -> dict[str, int]:
    """Tasks each Celery worker received (its log): both share one host name, so task_instance cannot tell them apart."""
    counts = {}
    for name in demo.processes:
        if name.startswith("worker"):
            text = (demo.root / "logs" / f"{name}.log").read_text(encoding="utf-8", errors="replace")
            counts[name] = sum(1 for line in text.splitlines() if "] received" in line)
    return counts


def task_figures(engine: sa.Engine) -> dict[str, Any]:
    """Task instances, their queue and the slowest tasks."""
    query = sa.text("SELECT dag_id, task_id, hostname, state, start_date, end_date, queue FROM task_instance")
    with engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(query)]
    timed = [(r["dag_id"] + "." + r["task_id"], (r["end_date"] - r["start_date"]).total_seconds()) for r in rows
             if r["start_date"] and r["end_date"]]
    slowest = sorted(timed, key=lambda item: -item[1])[:8]
    return {"task_instances": len(rows), "queues": sorted({r["queue"] or "" for r in rows}),
            "slowest_tasks": [{"task": t, "seconds": round(s, 1)} for t, s in slowest],
            "task_seconds_total": round(sum(s for _, s in timed), 1)}


def run_demo(scale: float = SCALE, timeout: float = 1200, keep: bool = False, progress: Progress = print) -> dict[str, Any]:
    """The whole demo; returns its timings (raises with the failing part named if it does not complete)."""
    from hub.db import upgrade
    from hub.pipeline import world_api, world_connections
    from hub.settings import get_settings
    from world import generate

    ident = secrets.token_hex(4)
    root = (get_settings().data_root / f"scale-demo-{ident}").resolve()
    (root / "logs").mkdir(parents=True)
    clock = time.monotonic()
    progress(f"Celery 演示 scale demo {ident}: 工作目录 {root}")
    try:
        with throwaway_databases(ident) as (airflow_url, hub_url):
            demo = Demo(ident, root, airflow_url, hub_url, free_port())
            started = time.monotonic()
            generate(out=root / "world", scale=scale, seed=20261123)
            demo.timings["world_seconds"] = time.monotonic() - started
            progress(f"  模拟省份 world scale {scale}: {demo.timings['world_seconds']:.1f} s")
            upgrade(hub_url)
            with world_api(root / "world", progress=lambda _: None) as api_url:
                environ = demo_environ(demo, world_connections(root / "world", api_url))
                os.environ.update({k: v for k, v in environ.items() if k.startswith("HUB_")})
                get_settings.cache_clear()
                from hub.crypto import get_cipher

                get_cipher.cache_clear()
                get_cipher()  # the keyring exists before two workers want it
                started = time.monotonic()
                done = subprocess.run(airflow(["db", "migrate"]), env=environ, capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"airflow db migrate 失败: {done.stderr[-1500:]}")
                demo.timings["airflow_db_migrate_seconds"] = time.monotonic() - started
                progress(f"  Airflow 元数据库 PostgreSQL 迁移 migrated: {demo.timings['airflow_db_migrate_seconds']:.1f} s")
                try:
                    return drive(demo, environ, scale, timeout, clock, progress)
                finally:
                    progress("  停止 Airflow 进程 stopping Airflow processes …")
                    stop_all(demo, progress)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def drive(demo: Demo, environ: dict[str, str], scale: float, timeout: float, clock: float, progress: Progress) -> dict[str, Any]:
    """Start the Airflow processes, wait for the full run, collect the figures."""
    queue = environ["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]
    started = time.monotonic()
    start(demo, "api-server", ["api-server", "--port", str(demo.port), "--workers", "1"], environ)
    for number in range(1, WORKERS + 1):
        start(demo, f"worker{number}", ["celery", "worker", "--concurrency", "1", "--queues", queue, "--skip-serve-logs",
                                        "--celery-hostname", f"hub{number}_{demo.ident}@%h"], environ)
    wait_for_api(demo)
    demo.timings["api_ready_seconds"] = time.monotonic() - started
    progress(f"  api-server 与 {WORKERS} 个 Celery worker 已启动 started: {demo.timings['api_ready_seconds']:.1f} s")
    start(demo, "dag-processor", ["dag-processor"], environ)
    start(demo, "scheduler", ["scheduler"], environ)
    engine = sa.create_engine(demo.airflow_url, poolclass=sa.pool.NullPool)
    expected, first_run, last_line = expected_dags(), None, ""
    deadline = time.monotonic() + timeout
    scheduling = time.monotonic()
    while True:
        check_alive(demo)
        runs = run_states(engine)
        if runs and first_run is None:
            first_run = time.monotonic() - scheduling
            progress(f"  第一个 DAG 运行已创建 first DAG run created after {first_run:.1f} s")
        done, line = finished(runs, expected)
        if line != last_line:
            progress(f"  {time.monotonic() - scheduling:6.1f} s  {line}")
            last_line = line
        if done:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"超时 timed out after {timeout:.0f} s: {line}")
        time.sleep(POLL_SECONDS)
    demo.timings["first_run_created_seconds"] = first_run or 0.0
    demo.timings["full_run_seconds"] = time.monotonic() - scheduling
    wanted_runs = [r for r in runs if wanted(r["dag_id"]) and r["start_date"] and r["end_date"]]
    span = (max(r["end_date"] for r in wanted_runs) - min(r["start_date"] for r in wanted_runs)).total_seconds()
    figures = {
        "scale": scale, "executor": "CeleryExecutor", "workers": WORKERS, "worker_concurrency": 1, "broker": BROKER_URL,
        "metadata_db": "PostgreSQL", "hub_db": "PostgreSQL", "load_average": round(os.getloadavg()[0], 2),
        **{k: round(v, 1) for k, v in demo.timings.items()},
        "first_dag_start_to_last_dag_end_seconds": round(span, 1),
        "dag_runs": len(wanted_runs),
        "dag_run_seconds": [{"dag": r["dag_id"], "trigger": r["run_type"], "seconds": round((r["end_date"] - r["start_date"]).total_seconds(), 1)}
                            for r in wanted_runs],
        "tasks_per_worker": worker_task_counts(demo),
        **task_figures(engine),
        "total_seconds": round(time.monotonic() - clock, 1),
    }
    engine.dispose()
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the demo, print and keep its figures."""
    from hub.settings import get_settings

    parser = argparse.ArgumentParser(description="Airflow + CeleryExecutor + PostgreSQL 演示 scale demo")
    parser.add_argument("--scale", type=float, default=SCALE)
    parser.add_argument("--timeout", type=float, default=1200, help="等待全量运行的秒数 seconds to wait for the full run")
    parser.add_argument("--keep", action="store_true", help="保留工作目录 keep the demo's folder (logs)")
    arguments = parser.parse_args(argv)
    out = get_settings().data_root / "bench" / "scale-demo.json"  # before the demo points HUB_DATA_ROOT at its folder
    figures = run_demo(arguments.scale, arguments.timeout, arguments.keep)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    print(json.dumps(figures, ensure_ascii=False, indent=2, default=str))
    print(f"完成 done: 全量运行 full run {figures['full_run_seconds']} s；结果 figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
