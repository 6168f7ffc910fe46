"""`hub world …` — generate, serve and audit the simulated province. 模拟省份命令。"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `world` command group."""
    parser = subparsers.add_parser("world", help="模拟省份：生成、服务、核对 simulated province: generate, serve, audit")
    commands = parser.add_subparsers(dest="world_command", metavar="SUBCOMMAND", title="子命令 subcommands")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)

    generate = commands.add_parser("generate", help="生成模拟省份 generate a world (truth, sources, manifest, world.json)")
    generate.add_argument("--scale", type=float, default=0.01, help="规模，1 ≈ 100万人口 scale (1 ≈ 1,000,000 persons); default 0.01")
    generate.add_argument("--seed", type=int, default=1, help="随机种子 seed (same seed ⇒ same bytes); default 1")
    generate.add_argument("--out", required=True, type=Path, help="输出目录 output directory")
    generate.add_argument("--pg-url", help="公安户籍库写入此 PostgreSQL 数据库 put gongan hjrk into this PostgreSQL URL")
    generate.add_argument("--mysql-url", help="市场监管库写入此 MariaDB 数据库 put scjg qydj/gtgsh into this MariaDB URL")
    generate.add_argument("--defect-rate", type=float, default=1.0, help="缺陷率倍数，0 = 无缺陷 defect-rate multiplier (0 = clean)")
    generate.add_argument("--reference-date", type=dt.date.fromisoformat, default=None,
                          help="模拟省份的“今天” the world's today (YYYY-MM-DD); default 2026-11-01")
    generate.add_argument("--workers", type=int, default=None, help="并行进程数 worker processes (default: 2 for scale ≥ 0.05)")
    generate.add_argument("--quiet", action="store_true", help="不显示进度 no progress lines")
    generate.set_defaults(handler=run_generate)

    serve = commands.add_parser("serve", help="提供法院失信被执行人接口 serve the court API of a world")
    serve.add_argument("--world", required=True, type=Path, help="模拟省份目录 world directory")
    serve.add_argument("--host", default="127.0.0.1", help="监听地址 host; default 127.0.0.1")
    serve.add_argument("--port", type=int, default=8765, help="端口 port; default 8765")
    serve.add_argument("--rate-limit", type=float, default=None, help="每秒请求数上限 requests per second (429 beyond)")
    serve.add_argument("--burst", type=int, default=None, help="突发请求数 burst size")
    serve.add_argument("--fault-rate", type=float, default=0.0, help="首次请求返回500的页面比例 share of pages whose first request answers 500")
    serve.add_argument("--fault-attempts", type=int, default=1, help="故障页面连续失败次数 failing requests per faulty page")
    serve.add_argument("--token", default=None, help="访问令牌（默认取 world.json）bearer token (default: world.json)")
    serve.set_defaults(handler=run_serve)

    audit = commands.add_parser("audit", help="独立复核缺陷清单 re-detect defects and compare with the manifest")
    audit.add_argument("--world", required=True, type=Path, help="模拟省份目录 world directory")
    audit.set_defaults(handler=run_audit)


def _hub_error(message: str) -> Exception:
    """The CLI's error type (imported late: hub.cli imports this module)."""
    from hub.cli import HubError

    return HubError(message)


def run_generate(args: argparse.Namespace) -> int:
    """Generate a world and print where it is."""
    from world.generator import WorldError, generate

    progress = None if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    try:
        description = generate(
            args.out, scale=args.scale, seed=args.seed, reference_date=args.reference_date,
            defect_rate=args.defect_rate, pg_url=args.pg_url, mysql_url=args.mysql_url, workers=args.workers,
            progress=progress,
        )
    except WorldError as error:
        raise _hub_error(str(error)) from error
    counts = description["counts"]["sources"]
    print(f"模拟省份已生成 world generated: {args.out}")
    print(f"  数据源 sources: {len(counts)}，记录 rows: {sum(counts.values())}，缺陷 defects: {description['manifest']['entries']}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Serve the court API until interrupted."""
    from world.server import DEFAULT_BURST, DEFAULT_RATE, ENDPOINT, WorldServerError, serve

    options = {"rate": args.rate_limit or DEFAULT_RATE, "burst": args.burst or DEFAULT_BURST,
               "fault_rate": args.fault_rate, "fault_attempts": args.fault_attempts, "token": args.token}
    try:
        description = json.loads((args.world / "world.json").read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise _hub_error(f"不是模拟省份目录（缺少 world.json）not a world directory: {args.world}") from error
    print(f"法院接口 court API: http://{args.host}:{args.port}{ENDPOINT}", flush=True)
    print(f"  令牌 token: {args.token or description.get('court_token')}  (Authorization: Bearer …)", flush=True)
    try:
        serve(args.world, host=args.host, port=args.port, **options)
    except WorldServerError as error:
        raise _hub_error(str(error)) from error
    return 0


def run_audit(args: argparse.Namespace) -> int:
    """Audit a world; exit 1 if manifest and audit disagree."""
    from world.audit import audit

    if not (args.world / "world.json").exists():
        raise _hub_error(f"不是模拟省份目录（缺少 world.json）not a world directory: {args.world}")
    report = audit(args.world)
    expected, found = len(report.expected), len(report.found)
    agreed = len(report.expected & report.found)
    recall = agreed / expected if expected else 1.0
    precision = agreed / found if found else 1.0
    print(f"清单 manifest: {expected}，复核发现 found: {found}，一致 agreed: {agreed}")
    print(f"  召回率 recall {recall:.4f}，精确率 precision {precision:.4f}")
    for label, items in (("清单有、复核无 missing", report.missing), ("复核有、清单无 unexpected", report.unexpected)):
        for item in sorted(items)[:20]:
            print(f"  {label}: {item}")
    for note in report.notes[:20]:
        print(f"  注意 note: {note}")
    return 0 if report.ok and not report.notes else 1
