"""`hub library-view …` — 一人一档, 一企一档, credit summary and the licence expiry calendar, as JSON (or an HTML page).

基础库视图命令：一人一档、一企一档、信用概览、证照到期日历。
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date, datetime
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any

from hub.cli import HubError, iso_date
from hub.lazy import lazy_import

# Loaded on first use: registering the commands must stay cheap for every other `hub` command.
sa = lazy_import("sqlalchemy")
db = lazy_import("hub.db")
views = lazy_import("libraries.views")

FONT = "'Noto Sans CJK SC','Source Han Sans SC','Microsoft YaHei','PingFang SC',sans-serif"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `library-view` command group."""
    parser = subparsers.add_parser("library-view", help="基础库视图 library views: 一人一档、一企一档、信用概览、证照到期日历")
    actions = parser.add_subparsers(dest="view", metavar="VIEW", title="视图 views")

    person = actions.add_parser("person", help="一人一档 person profile (by resident ID)")
    person.add_argument("resident_id", help="公民身份号码 resident ID number")
    _common(person, reveal=True)
    person.set_defaults(handler=run_person)

    company = actions.add_parser("company", help="一企一档 company profile (by USCC)")
    company.add_argument("uscc", help="统一社会信用代码 USCC")
    _common(company, reveal=True)
    company.set_defaults(handler=run_company)

    credit = actions.add_parser("credit", help="信用概览 credit summary (by USCC or resident ID)")
    credit.add_argument("subject", help="统一社会信用代码或公民身份号码 USCC or resident ID")
    _common(credit, reveal=False)
    credit.set_defaults(handler=run_credit)

    expiry = actions.add_parser("expiry", help="证照到期日历 licence expiry calendar")
    expiry.add_argument("--from", dest="start", type=iso_date, required=True, help="起始日期 first day (YYYY-MM-DD)")
    expiry.add_argument("--to", dest="end", type=iso_date, required=True, help="截止日期 last day (YYYY-MM-DD), inclusive")
    expiry.add_argument("--issuer-code", help="颁发机构代码 issuer USCC")
    expiry.add_argument("--type-code", help="证照类型代码 licence type code")
    expiry.add_argument("--html", type=Path, help="另存为中文 HTML 页面（每月柱状图）write an HTML page here")
    _common(expiry, reveal=True)
    expiry.set_defaults(handler=run_expiry)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def _common(parser: argparse.ArgumentParser, reveal: bool) -> None:
    """--url, --as-of and (for views showing personal data) --reveal."""
    parser.add_argument("--url", help="数据库 URL database URL (default: HUB_DATABASE_URL / settings)")
    parser.add_argument("--as-of", type=iso_date, help="基准日期 reference day (default: today)")
    if reveal:
        parser.add_argument("--reveal", action="store_true", help="显示未脱敏的个人信息 show personal data unmasked")


def _json_default(value: Any) -> Any:
    """JSON for dates, amounts and anything else the views return."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (bytes, memoryview)):
        return None  # ciphertext never leaves as such
    return str(value)


def emit(result: dict[str, Any]) -> int:
    """Print a view as JSON on stdout (a reader that stops early, like `| head`, is not an error)."""
    try:
        json.dump(result, sys.stdout, ensure_ascii=False, indent=2, default=_json_default)
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
    return 0


def _run(args: argparse.Namespace, view: Any, *positional: Any, **options: Any) -> dict[str, Any]:
    """Call a view with the engine, turning bad input and database trouble into one-line Chinese errors."""
    try:
        engine = db.engine_for(args.url)
        return view(engine, *positional, today=args.as_of, **options)
    except views.ViewError as error:
        raise HubError(str(error)) from None
    except sa.exc.SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
        raise HubError(f"数据库不可用 {db.display_url(args.url)}：{first}") from None


def run_person(args: argparse.Namespace) -> int:
    """一人一档."""
    return emit(_run(args, views.person_profile, args.resident_id, reveal=args.reveal))


def run_company(args: argparse.Namespace) -> int:
    """一企一档."""
    return emit(_run(args, views.company_profile, args.uscc, reveal=args.reveal))


def run_credit(args: argparse.Namespace) -> int:
    """信用概览."""
    return emit(_run(args, views.credit_summary, args.subject))


def run_expiry(args: argparse.Namespace) -> int:
    """证照到期日历: JSON on stdout, or an HTML page with --html."""
    result = _run(args, views.licence_expiry_calendar, args.start, args.end, issuer_code=args.issuer_code,
                  licence_type_code=args.type_code, reveal=args.reveal)
    if args.html is None:
        return emit(result)
    try:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(expiry_html(result), encoding="utf-8")
    except OSError as error:
        raise HubError(f"无法写入 {args.html}：{error.strerror or error}") from None
    print(f"证照到期日历已生成 written: {args.html}（{result['total']} 个证照）")
    return 0


# ---------------------------------------------------------------------------------------------
# HTML page
# ---------------------------------------------------------------------------------------------


def month_chart(months: list[dict[str, Any]]) -> str:
    """Vertical SVG bars, one per month: licences expiring, the expired-but-still-valid share in red."""
    width, height, left, bottom, top = max(360, 60 + 48 * len(months)), 300, 50, 60, 40
    span = height - top - bottom
    step = max(1, -(-max([m["count"] for m in months] + [1]) // 4))  # whole-licence ticks: never "2, 2"
    peak = step * 4
    body = [f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#999"/>',
            f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#999"/>']
    for tick in range(0, 5):
        value = step * tick
        y = height - bottom - span * tick / 4
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#666">{value:.0f}</text>')
    for i, month in enumerate(months):
        x = left + 10 + 48 * i
        bar = span * month["count"] / peak
        stale = span * month["expired_still_valid"] / peak
        base = height - bottom
        body.append(f'<rect x="{x}" y="{base - bar:.1f}" width="32" height="{bar:.1f}" fill="#1f77b4">'
                    f'<title>{escape(month["month"])}：{month["count"]} 个</title></rect>')
        if stale:
            body.append(f'<rect x="{x}" y="{base - stale:.1f}" width="32" height="{stale:.1f}" fill="#d62728"/>')
        body.append(f'<text x="{x + 16}" y="{base - bar - 4:.1f}" text-anchor="middle">{month["count"]}</text>')
        body.append(f'<text x="{x + 16}" y="{base + 16}" text-anchor="middle" fill="#333">{escape(month["month"][:4])}</text>')
        body.append(f'<text x="{x + 16}" y="{base + 30}" text-anchor="middle" fill="#333">{escape(month["month"][5:])}月</text>')
    title = "每月到期证照数（红色：已过期仍标记有效）"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'font-family="{FONT}" font-size="12" role="img"><title>{escape(title)}</title>'
            f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{escape(title)}</text>'
            + "".join(body) + "</svg>")


def expiry_html(result: dict[str, Any]) -> str:
    """The expiry calendar as a Chinese HTML page: summary, monthly chart, one table per day."""
    def cell(value: Any) -> str:
        return escape("" if value is None else str(value))

    filters = "，".join(f"{label}：{cell(result['filters'][key])}" for key, label in
                       (("issuer_code", "颁发机构代码"), ("licence_type_code", "证照类型代码")) if result["filters"][key]) or "无"
    parts = [
        "<!DOCTYPE html>", '<html lang="zh-CN"><head><meta charset="utf-8"><title>证照到期日历</title>',
        f"<style>body{{font-family:{FONT};margin:2em;color:#222}}table{{border-collapse:collapse;margin:0.5em 0 1.5em}}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#f3f3f3}"
        "tr.stale td{background:#fde8e8}</style></head><body>",
        f"<h1>证照到期日历 {cell(result['from'])} 至 {cell(result['to'])}</h1>",
        f"<p>基准日期：{cell(result['as_of'])}；筛选条件：{filters}；到期证照共 {result['total']} 个，"
        f"其中已过期仍标记为有效 {result['expired_still_valid']} 个。</p>",
        month_chart(result["months"]),
        "<h2>按月统计</h2><table><tr><th>月份</th><th>到期证照数</th><th>已过期仍有效</th></tr>",
        *(f"<tr><td>{cell(m['month'])}</td><td>{m['count']}</td><td>{m['expired_still_valid']}</td></tr>" for m in result["months"]),
        "</table><h2>按日明细</h2>",
    ]
    for day in result["days"]:
        parts.append(f"<h3>{cell(day['date'])}（{day['count']} 个）</h3><table><tr><th>证照名称</th><th>证照编号</th>"
                     "<th>持证主体</th><th>颁发机构</th><th>状态</th><th>提示</th></tr>")
        for item in day["licences"]:
            stale = item["expired_still_valid"]
            row_class = ' class="stale"' if stale else ""
            parts.append(f"<tr{row_class}><td>{cell(item['licence_name'])}</td>"
                         f"<td>{cell(item['licence_number'])}</td><td>{cell(item['holder_name'])}</td>"
                         f"<td>{cell(item['issuer'])}</td><td>{cell(item['status_label'])}</td>"
                         f"<td>{'已过期仍标记为有效' if stale else ''}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
