"""`hub library linkage list|confirm|reject|run|evaluate`: the steward's review queue of record linkage."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from libraries.linkage import LIBRARIES


def _library_group(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The `library` command group's subcommands, created here unless another module made the group first."""
    parser = subparsers.choices.get("library")
    if parser is None:
        parser = subparsers.add_parser("library", help="基础库 base libraries", description="基础库：合并、记录关联与复核。")
        parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    for action in parser._actions:  # noqa: SLF001 - argparse exposes no public accessor for a parser's subcommands
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="library_command", metavar="SUBCOMMAND")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `library linkage`."""
    parser = _library_group(subparsers).add_parser(
        "linkage", help="记录关联 record linkage of rows without a usable key",
        description="记录关联：无可用身份号码/统一社会信用代码的隔离记录按姓名+出生日期+地区、名称+地址匹配；复核队列。")
    commands = parser.add_subparsers(dest="linkage_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)

    listing = commands.add_parser("list", help="列出判定（默认待复核）list decisions (review queue by default)")
    listing.add_argument("--library", choices=LIBRARIES)
    listing.add_argument("--status", default="review", help="linked|review|no_match|confirmed|rejected|all")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(handler=run_list)

    for action, text in (("confirm", "确认关联（记录并入候选主体）confirm: link and merge"),
                         ("reject", "否决关联（记录留在隔离区）reject: the row stays quarantined")):
        command = commands.add_parser(action, help=text)
        command.add_argument("decision_id", type=int, help="判定编号 decision id")
        command.add_argument("--steward", required=True, help="数据专员 steward (recorded)")
        if action == "confirm":
            command.add_argument("--candidate", help="改为关联到此主体键 link to this key instead")
        command.set_defaults(handler=run_decide, action=action)

    run = commands.add_parser("run", help="对隔离记录做关联判定 decide pending rows now")
    run.add_argument("--library", choices=LIBRARIES, action="append")
    run.set_defaults(handler=run_link)

    evaluate = commands.add_parser("evaluate", help="与模拟省份的关联真值比对 precision/recall against a world")
    evaluate.add_argument("--world", required=True, type=Path, help="模拟省份目录 generated world folder")
    evaluate.set_defaults(handler=run_evaluate)


def _engine():
    """The hub database engine."""
    from hub.db import engine_for
    from hub.settings import get_settings

    return engine_for(get_settings().database_url)


def _print(value: object) -> None:
    """JSON to stdout (Chinese kept readable)."""
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def run_list(args: argparse.Namespace) -> int:
    """Print decisions as JSON lines."""
    from libraries.linkage import list_decisions

    status = None if args.status == "all" else args.status
    for row in list_decisions(_engine(), args.library, status, args.limit):
        print(json.dumps(row, ensure_ascii=False, default=str))
    return 0


def run_decide(args: argparse.Namespace) -> int:
    """Confirm or reject one decision."""
    from libraries.linkage import steward_decide

    try:
        _print(steward_decide(_engine(), args.decision_id, args.action, args.steward, getattr(args, "candidate", None)))
    except (LookupError, ValueError) as error:
        print(f"错误 error: {error}")
        return 1
    return 0


def run_link(args: argparse.Namespace) -> int:
    """Decide pending rows of the libraries."""
    from libraries.linkage import link_pending

    engine = _engine()
    _print({library: link_pending(library, engine) for library in (args.library or LIBRARIES)})
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Precision and recall against linkage_truth.parquet."""
    from libraries.linkage import evaluate

    _print(evaluate(_engine(), args.world))
    return 0
