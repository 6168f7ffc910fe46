"""`hub bench` — run the benchmarks and write a JSON and a Markdown report."""

from __future__ import annotations

import argparse
from pathlib import Path

from hub.cli import HubError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `bench` command."""
    parser = subparsers.add_parser("bench", help="运行基准测试 run the benchmarks (figures, not pass/fail)")
    parser.add_argument("--scale", type=float, default=1.0, help="模拟规模 world scale (default 1)")
    parser.add_argument("--only", action="append", metavar="NAME", help="只运行指定基准 run only these (repeatable)")
    parser.add_argument("--out", type=Path, help="报告目录 report folder (default <data_root>/bench)")
    parser.add_argument("--timeout", type=float, default=1800, help="每项超时秒数 seconds per benchmark")
    parser.add_argument("--list", action="store_true", help="列出基准 list the benchmarks")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmarks."""
    from benchmarks.harness import available, run_all
    from hub.settings import get_settings

    names = available()
    if args.list:
        print("\n".join(names))
        return 0
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        raise HubError(f"未知基准 unknown benchmarks: {unknown}; 可用 available: {names}")
    out = args.out or get_settings().data_root / "bench"
    report = run_all(args.only or names, args.scale, out, args.timeout)
    print(f"报告 report: {out / 'report.md'}")
    return 1 if any("error" in r for r in report["results"]) else 0
