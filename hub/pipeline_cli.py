"""`hub run` (the main job) and `hub airflow …` (Airflow with the hub's configuration)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from hub.cli import HubError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `run` and `airflow` commands."""
    run = subparsers.add_parser(
        "run", help="端到端运行：生成模拟省份、运行 Airflow DAG、打印统计 run the whole pipeline end to end"
    )
    run.add_argument("--scale", type=float, help="模拟规模 world scale (default HUB_WORLD_SCALE)")
    run.add_argument("--seed", type=int, help="随机种子 world seed (default HUB_WORLD_SEED)")
    run.add_argument("--regenerate", action="store_true", help="重新生成模拟省份 regenerate the world")
    run.set_defaults(handler=run_command)
    airflow = subparsers.add_parser(
        "airflow", help="以枢纽配置运行 Airflow run Airflow with the hub's configuration, e.g. `hub airflow standalone`"
    )
    airflow.add_argument("arguments", nargs=argparse.REMAINDER, help="Airflow 的参数 arguments for airflow")
    airflow.set_defaults(handler=airflow_command)


def run_command(args: argparse.Namespace) -> int:
    """Run the pipeline and print the counts per source and per library."""
    from connectors.registry import get_source
    from hub.pipeline import PipelineError, run_pipeline

    try:
        result = run_pipeline(scale=args.scale, seed=args.seed, regenerate=args.regenerate)
    except PipelineError as error:
        raise HubError(str(error)) from error
    print(f"\n{'各数据源 per source':<26}{'抽取 extracted':>14}{'入库 loaded':>13}{'隔离 rejected':>15}  去向 status")
    for source_id, row in sorted(result["sources"].items()):
        status = "已入库 merged" if get_source(source_id).merge and row["loaded"] + row["rejected"] else "仅落地 landed"
        print(f"  {source_id:<24}{row['extracted']:>14,}{row['loaded']:>13,}{row['rejected']:>15,}  {status}")
    print("\n各基础库 per library")
    labels = {"population": "人口库", "legal_entity": "法人库", "licence": "电子证照库", "credit": "信用库"}
    for library, count in result["libraries"].items():
        print(f"  {labels[library]} {library:<16}{count:>12,}")
    return 0


def airflow_command(args: argparse.Namespace) -> int:
    """Exec `airflow` with the hub's Airflow environment and the world's connections."""
    from hub import airflow_env
    from hub.pipeline import export_connections, world_connections
    from hub.settings import get_settings

    settings = get_settings()
    airflow_env.apply(settings)
    if (settings.world_dir / "world.json").exists():
        export_connections(world_connections(settings.world_dir))
    binary = shutil.which("airflow", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if binary is None:
        raise HubError("找不到 airflow 命令 airflow executable not found")
    bin_dir = os.path.dirname(binary)  # airflow standalone starts `airflow` subprocesses: keep its bin/ on PATH
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    os.execv(binary, [binary, *args.arguments])
    return 0  # not reached
