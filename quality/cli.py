"""`hub quality …` — rules, file checks, the evaluation against the simulated province, tickets, scorecards.

Every command prints JSON (one object per line where it lists things) so scripts can read it; messages are
Chinese. Bad input is a clear one-line error (HubError), never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from hub.cli import iso_date

LIBRARIES = ("population", "legal_entity", "licence", "credit")
STEWARD_ACTIONS = ("acknowledge", "correct", "dispute")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `quality` command group."""
    parser = subparsers.add_parser("quality", help="数据质量 quality rules, file checks, tickets, scorecards",
                                   description="数据质量：规则目录、文件检查、与模拟省份清单比对、问题工单、质量评分。")
    commands = parser.add_subparsers(dest="quality_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)

    rules = commands.add_parser("rules", help="列出规则目录 list the rule catalogue (JSON lines)")
    rules.add_argument("--library", choices=LIBRARIES, help="只列出一个基础库 one library only")
    rules.set_defaults(handler=run_rules)

    check = commands.add_parser(
        "check", help="用规则检查部门文件（不入库） check a department's file against a library's rules, loading nothing",
        description="对部门文件（CSV 任意编码、Excel、JSON/JSONL）运行基础库的行级规则，不写入任何地方。\n"
                    "每个问题输出一行 JSON（row, field, rule, severity, message），最后一行为汇总。\n"
                    "表头可以是标准数据元名（resident_id）或中文名称（公民身份号码）。",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("--library", required=True, choices=LIBRARIES, help="基础库 library whose rules apply")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE", help="待检查文件 files to check")
    check.add_argument("--reference-date", type=iso_date, metavar="YYYY-MM-DD", help="基准日期（默认今天）reference date (default: today)")
    check.set_defaults(handler=run_check)

    evaluate = commands.add_parser("evaluate", help="规则查出的问题与模拟省份缺陷清单比对 recall/precision against a world's manifest")
    evaluate.add_argument("--world", required=True, type=Path, metavar="DIR", help="模拟省份目录 generated world folder")
    evaluate.add_argument("--out", type=Path, metavar="FILE", help="另存 JSON 结果 also write the JSON here")
    evaluate.set_defaults(handler=run_evaluate)

    tickets = commands.add_parser("tickets", help="本部门的问题工单队列 a department's ticket queue",
                                  description="列出某部门的问题工单（只能看到本部门的工单）。")
    tickets.add_argument("--department", required=True, help="部门代码 department code (e.g. gongan, scjg)")
    tickets.add_argument("--status", choices=("open", "acknowledged", "corrected", "disputed", "verified"), help="只看某状态")
    tickets.add_argument("--all", action="store_true", help="包括已关闭的工单 include closed tickets")
    tickets.set_defaults(handler=run_tickets)

    ticket = commands.add_parser("ticket", help="查看或处理一张工单 show or work one ticket")
    ticket.add_argument("action", choices=("show", *STEWARD_ACTIONS, "decide"),
                        help="show 查看 / acknowledge 签收 / correct 已更正 / dispute 异议 / decide 裁定（枢纽数据专员）")
    ticket.add_argument("ticket_id", type=int, metavar="ID")
    ticket.add_argument("--department", help="部门代码（部门数据专员必填）department code (department stewards)")
    ticket.add_argument("--actor", default="steward", help="操作人 who acts (recorded in the history)")
    ticket.add_argument("--note", help="说明（异议须说明理由）note (required for a dispute)")
    decision = ticket.add_mutually_exclusive_group()
    decision.add_argument("--accept", action="store_true", help="裁定：异议成立，豁免问题 accept the dispute")
    decision.add_argument("--reject", action="store_true", help="裁定：驳回异议 reject the dispute")
    ticket.set_defaults(handler=run_ticket)

    scorecard = commands.add_parser("scorecard", help="质量评分卡（部门、数据源、基础库，随时间） quality scorecards with charts")
    scorecard.add_argument("--out", type=Path, metavar="DIR", help="输出目录 (default <data_root>/quality/scorecard)")
    scorecard.set_defaults(handler=run_scorecard)

    token = commands.add_parser("steward-token", help="部门数据专员登录令牌 a department steward's sign-in token")
    token.add_argument("--department", required=True, help="部门代码 department code")
    token.set_defaults(handler=run_steward_token)

    serve = commands.add_parser("serve", help="启动部门数据专员工单页面与接口 serve the stewards' queue (pages and JSON API)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8091)
    serve.set_defaults(handler=run_serve)

    suite = commands.add_parser("suite", help="导出由规则目录生成的 Great Expectations 期望套件 export the generated GX suite (JSON)")
    suite.add_argument("--library", required=True, choices=LIBRARIES)
    suite.set_defaults(handler=run_suite)


def _print(value: Any) -> None:
    """One JSON line (a reader that stops early, like `head`, ends the output quietly)."""
    try:
        print(json.dumps(value, ensure_ascii=False, default=str), flush=True)
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        raise SystemExit(0) from None


def _engine():
    """The hub database, migrated (a steward's first command may come before any run)."""
    from hub.db import engine_for, upgrade
    from hub.settings import get_settings

    url = get_settings().database_url
    upgrade(url)
    return engine_for(url)


def run_rules(args: argparse.Namespace) -> int:
    """Print every rule of the catalogue."""
    from quality.catalogue import load_catalogue

    for library in ([args.library] if args.library else LIBRARIES):
        for rule in load_catalogue(library).rules:
            _print({"id": rule.id, "name": rule.name, "library": library, "dimension": rule.dimension, "severity": rule.severity,
                    "check": rule.check, "fields": list(rule.fields), "standard": rule.standard,
                    "sources": list(rule.sources) if rule.sources is not None else "all", "derived_from_elements": rule.derived})
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Check files; exit 0 when they could be read (findings or not), 1 when a file could not be read."""
    from quality.filecheck import iter_lines

    reference = args.reference_date or dt.date.today()  # the CLI is the boundary where "today" is decided
    unreadable = False
    for line in iter_lines(args.files, args.library, reference):
        unreadable |= "error" in line
        _print(line)
    return 1 if unreadable else 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Compare the rules' findings with a world's manifest."""
    from hub.cli import HubError
    from quality.world_eval import WorldError, evaluate_world, kind_rows

    try:
        result = evaluate_world(args.world)
    except WorldError as error:
        raise HubError(str(error)) from error
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False, indent=2))
    print("\n".join(kind_rows(result)), file=sys.stderr)
    return 0


def _department(code: str) -> str:
    """A department code (or its Chinese name) checked against the departments code table."""
    from hub.cli import HubError
    from schemas.code_tables import load_table

    table = load_table("departments")
    if code in table:
        return code
    by_label = table.code_for_label(code)
    if by_label:
        return by_label
    raise HubError(f"未知部门 unknown department {code!r}; 例如 e.g. {', '.join(table.codes[:6])}")


def run_tickets(args: argparse.Namespace) -> int:
    """Print a department's tickets, one JSON line each."""
    from quality.tickets import list_tickets

    for ticket in list_tickets(_engine(), _department(args.department), args.status, include_closed=args.all):
        _print(ticket)
    return 0


def run_ticket(args: argparse.Namespace) -> int:
    """Show, or act on, one ticket."""
    from hub.cli import HubError
    from quality.tickets import TicketError, decide, ticket_detail, transition

    engine = _engine()
    now = dt.datetime.now(dt.timezone.utc)  # the moment of a human action, decided here at the boundary
    try:
        if args.action == "show":
            _print(ticket_detail(engine, args.ticket_id, _department(args.department) if args.department else None))
        elif args.action == "decide":
            if not (args.accept or args.reject):
                raise HubError("裁定须给出 --accept 或 --reject")
            _print(decide(engine, args.ticket_id, args.accept, args.actor, now, args.note))
        else:
            if not args.department:
                raise HubError("部门数据专员操作须给出 --department")
            _print(transition(engine, args.ticket_id, _department(args.department), args.action, args.actor, now, args.note))
    except TicketError as error:
        raise HubError(str(error)) from error
    return 0


def run_scorecard(args: argparse.Namespace) -> int:
    """Write the scorecards (HTML page and SVG charts) and print the figures."""
    from hub.settings import get_settings
    from quality.scorecard import write_scorecards

    out = args.out or get_settings().data_root / "quality" / "scorecard"
    result = write_scorecards(_engine(), out)
    _print(result)
    return 0


def run_suite(args: argparse.Namespace) -> int:
    """Print the GX suite generated for a library's rules."""
    from quality import gx_suite
    from quality.catalogue import load_catalogue
    from quality.checks import SOURCE_LEVEL_CHECKS

    rules = [r for r in load_catalogue(args.library).rules if r.check not in SOURCE_LEVEL_CHECKS]
    suite = gx_suite.build_suite(f"{args.library}", rules)
    print(json.dumps(suite.to_json_dict(), ensure_ascii=False, indent=2, default=str))
    return 0


def run_steward_token(args: argparse.Namespace) -> int:
    """Print a department's steward token (hand it to that department only)."""
    from quality.api import steward_token

    department = _department(args.department)
    _print({"department": department, "token": steward_token(department)})
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Serve the stewards' pages and API until interrupted."""
    import uvicorn

    from quality.api import create_app

    _engine()
    print(f"部门数据专员工单：http://{args.host}:{args.port}/quality/login", file=sys.stderr)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")
    return 0
