"""`hub` — the command-line program of the hub. 政务数据共享枢纽命令行。

Each command group lives in the module that owns the concept and exposes `register(subparsers)`;
this file only assembles them, so adding a command never means editing another command's code.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import sys
from collections.abc import Sequence

# (module, description) — each module defines register(subparsers) -> None.
COMMAND_MODULES: tuple[str, ...] = (
    "hub.cli_settings",
    "schemas.cli",
    "world.cli",
    "hub.db_cli",
    "hub.pipeline_cli",
    "hub.bench_cli",
    "quality.cli",
    "licences.cli",
    "libraries.cli",
    "libraries.views_cli",
    "libraries.linkage_cli",
    "catalog.cli",
    "opendata.portal_cli",
    "opendata.cli",
    "hub.serve_cli",
    "hub.faults_cli",
)

DESCRIPTION = """政务数据共享与证照交换枢纽 — government data-sharing and licence-exchange hub.

一次采集、多方使用：从各部门系统采集数据，检查质量，汇入人口、法人、电子证照、信用四大基础库。
Collect once from departmental systems, check quality, merge into four base libraries, use many times."""


class HubError(Exception):
    """An error the user can act on: printed as one clear line, exit status 1, never a traceback."""


def iso_date(text: str) -> dt.date:
    """An argparse type for YYYY-MM-DD arguments, with a bilingual message for anything else."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"日期格式应为 YYYY-MM-DD expected YYYY-MM-DD, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered command."""
    parser = argparse.ArgumentParser(
        prog="hub", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="命令 commands")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hub` program; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except HubError as error:
        print(f"错误 error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("已中断 interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
