"""`hub catalog …` (sharing catalogue, three lists, access) and `hub audit …` (exchange audit log).

Every command prints JSON except `list` (a table); messages are Chinese. The CLI is the only place that reads the clock.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from hub.cli import HubError, iso_date


def _engine(args: argparse.Namespace) -> Any:
    """The hub database engine (settings, or --url)."""
    from hub.db import engine_for

    return engine_for(getattr(args, "url", None))


def _now() -> dt.datetime:
    """The current moment (UTC)."""
    return dt.datetime.now(dt.timezone.utc)


def _print(value: Any) -> None:
    """One JSON document on stdout (Chinese readable)."""
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def _csv(text: str | None) -> list[str]:
    """A comma-separated argument as a list."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `catalog` and `audit` command groups."""
    parser = subparsers.add_parser("catalog", help="共享目录 sharing catalogue: list, show, search, lists, access",
                                   description="共享目录：资源、三个清单（责任/需求/负面）、使用方密钥、共享申请与授权、使用统计。")
    parser.add_argument("--url", help="枢纽数据库 URL（默认取设置）hub database URL")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    commands = parser.add_subparsers(dest="catalog_command", metavar="SUBCOMMAND")

    listing = commands.add_parser("list", help="列出资源 list resources")
    listing.add_argument("--sharing-type", choices=("无条件共享", "有条件共享", "不予共享"))
    listing.add_argument("--provider", help="提供方部门代码")
    listing.add_argument("--json", action="store_true", help="输出 JSON")
    listing.set_defaults(handler=run_list)

    show = commands.add_parser("show", help="资源详情 show one resource")
    show.add_argument("code", help="资源代码，如 RK.basic")
    show.set_defaults(handler=run_show)

    search = commands.add_parser("search", help="中文检索 search the catalogue")
    search.add_argument("query", help="检索词，如 婚姻、户籍地址、行政处罚")
    search.add_argument("--sharing-type")
    search.add_argument("--open-attribute")
    search.add_argument("--provider")
    search.add_argument("--limit", type=int, default=10)
    search.set_defaults(handler=run_search)

    lists = commands.add_parser("lists", help="三个清单 responsibility / demand / negative lists")
    lists.add_argument("which", choices=("responsibility", "demand", "negative", "all"), nargs="?", default="all",
                       help="responsibility 责任清单 / demand 需求清单 / negative 负面清单 / all 全部")
    lists.add_argument("--date", type=iso_date, help="基准日期（默认今天）")
    lists.set_defaults(handler=run_lists)

    consumer = commands.add_parser("consumer", help="登记使用方部门 register a consumer department")
    consumer.add_argument("code", help="部门代码（departments 代码表）；all 登记全部部门")
    consumer.set_defaults(handler=run_consumer)

    key = commands.add_parser("key", help="接口密钥 API keys: issue, revoke, list")
    key.add_argument("action", choices=("issue", "revoke", "list"))
    key.add_argument("target", nargs="?", help="issue：部门代码；revoke：密钥标识")
    key.add_argument("--label", help="用途说明")
    key.set_defaults(handler=run_key)

    request = commands.add_parser("request", help="共享申请 requests: submit, approve, refuse, list")
    request.add_argument("action", choices=("submit", "approve", "refuse", "list"))
    request.add_argument("--id", type=int, help="申请编号（approve/refuse）")
    request.add_argument("--consumer", help="使用方部门代码（submit）")
    request.add_argument("--resource", help="资源代码（submit）")
    request.add_argument("--fields", help="信息项，逗号分隔")
    request.add_argument("--purposes", help="用途代码，逗号分隔")
    request.add_argument("--purpose", help="用途说明")
    request.add_argument("--by", default="catalog-admin", help="经办人")
    request.add_argument("--provider", help="答复的提供方部门代码")
    request.add_argument("--reason", help="理由（拒绝必填）")
    request.add_argument("--expires", type=iso_date, help="授权到期日（approve）")
    request.add_argument("--verification-only", action="store_true", help="仅核验")
    request.set_defaults(handler=run_request)

    grant = commands.add_parser("grant", help="授权 grants: list, revoke")
    grant.add_argument("action", choices=("list", "revoke"))
    grant.add_argument("--id", type=int, help="授权编号（revoke）")
    grant.add_argument("--consumer", help="使用方部门代码")
    grant.add_argument("--by", default="catalog-admin")
    grant.add_argument("--reason", help="撤销理由")
    grant.set_defaults(handler=run_grant)

    use = commands.add_parser("usage", help="共享使用统计 usage statistics from the audit log")
    use.add_argument("--from", dest="start", type=iso_date, required=True)
    use.add_argument("--to", dest="end", type=iso_date, required=True, help="截止日期（含）")
    use.add_argument("--svg", type=Path, help="另存按资源统计的 SVG 图")
    use.set_defaults(handler=run_usage)

    audit = subparsers.add_parser("audit", help="共享调用审计 exchange audit log: verify, who, checkpoint",
                                  description="共享调用审计：校验哈希链与签名检查点、本人查询谁查看了其数据、签署检查点。")
    audit.add_argument("--url", help="枢纽数据库 URL（默认取设置）hub database URL")
    audit.set_defaults(handler=lambda args: audit.print_help() or 2)
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    verify = audit_commands.add_parser("verify", help="校验审计链（发现修改、插入、删除）verify every chain")
    verify.set_defaults(handler=run_audit_verify)
    who = audit_commands.add_parser("who", help="谁查看了该主体 who looked at a subject")
    who.add_argument("subject", help="公民身份号码、统一社会信用代码、证照标识或其 HMAC")
    who.add_argument("--limit", type=int, default=100)
    who.set_defaults(handler=run_audit_who)
    checkpoint = audit_commands.add_parser("checkpoint", help="为每条链的链头签署检查点 sign every chain head")
    checkpoint.set_defaults(handler=run_audit_checkpoint)


def _guard(call: Any) -> Any:
    """Turn the catalogue's and access's own errors into one-line CLI errors."""
    from catalog.access import AccessError
    from catalog.resources import CatalogueError

    try:
        return call()
    except (AccessError, CatalogueError) as error:
        raise HubError(str(error)) from None


def run_list(args: argparse.Namespace) -> int:
    """hub catalog list."""
    from catalog.resources import all_resources

    rows = [r for r in all_resources() if (not args.sharing_type or r["sharing_type"] == args.sharing_type)
            and (not args.provider or r["provider_code"] == args.provider)]
    if args.json:
        _print(rows)
        return 0
    for r in rows:
        print(f"{r['code']:<22}\t{r['name']}\t{r['provider_name']}\t{r['sharing_type']}\t{r['open_attribute']}\t"
              f"{r['update_frequency']}\t{len(r['items'])}项")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """hub catalog show CODE."""
    from catalog.resources import get_resource

    _print(_guard(lambda: get_resource(args.code)))
    return 0


def run_search(args: argparse.Namespace) -> int:
    """hub catalog search QUERY."""
    from catalog.search import search

    filters = {"sharing_type": args.sharing_type, "open_attribute": args.open_attribute, "provider_code": args.provider}
    _print([{k: hit[k] for k in ("code", "name", "score")} | {"provider": hit["resource"]["provider_name"],
            "sharing_type": hit["resource"]["sharing_type"]} for hit in search(args.query, filters, args.limit)])
    return 0


def run_lists(args: argparse.Namespace) -> int:
    """hub catalog lists [responsibility|demand|negative|all]."""
    from catalog import lists

    now = _now()
    today = args.date or now.astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    out: dict[str, Any] = {}
    if args.which in ("responsibility", "all"):
        out["责任清单"] = lists.responsibility_list(_engine(args), now)
    if args.which in ("demand", "all"):
        out["需求清单"] = lists.demand_list(_engine(args), today)
    if args.which in ("negative", "all"):
        out["负面清单"] = lists.negative_list()
    _print(out)
    return 0


def run_consumer(args: argparse.Namespace) -> int:
    """hub catalog consumer CODE|all."""
    from catalog import access
    from schemas.code_tables import load_table

    codes = [row["code"] for row in load_table("departments").rows] if args.code == "all" else [args.code]
    for code in codes:
        access.register_consumer(_engine(args), code, _now())
    _print({"registered": codes})
    return 0


def run_key(args: argparse.Namespace) -> int:
    """hub catalog key issue DEPT | revoke KEY_ID | list [DEPT]."""
    from catalog import access

    engine = _engine(args)
    if args.action == "list":
        _print(access.list_keys(engine, args.target))
    elif args.action == "issue":
        if not args.target:
            raise HubError("须给出部门代码")
        key_id, key = _guard(lambda: access.issue_key(engine, args.target, _now(), args.label))
        _print({"key_id": key_id, "api_key": key, "注意": "密钥只显示这一次，枢纽只保存其摘要，请妥善保管"})
    else:
        if not args.target:
            raise HubError("须给出密钥标识")
        _guard(lambda: access.revoke_key(engine, args.target, _now()))
        _print({"revoked": args.target})
    return 0


def run_request(args: argparse.Namespace) -> int:
    """hub catalog request submit|approve|refuse|list."""
    from catalog import access

    engine = _engine(args)
    if args.action == "list":
        _print(access.list_requests(engine, consumer_code=args.consumer, resource_code=args.resource))
    elif args.action == "submit":
        request_id = _guard(lambda: access.submit_request(
            engine, consumer_code=args.consumer or "", resource_code=args.resource or "", fields=_csv(args.fields),
            purpose_codes=_csv(args.purposes), purpose=args.purpose or "", requested_by=args.by, at=_now(),
            verification_only=args.verification_only))
        _print({"request_id": request_id})
    elif args.action == "approve":
        expires = (dt.datetime.combine(args.expires, dt.time(23, 59, 59), dt.timezone(dt.timedelta(hours=8)))
                   if args.expires else None)
        grant_id = _guard(lambda: access.approve_request(engine, args.id, decided_by=args.by, at=_now(), expires_at=expires,
                                                         fields=_csv(args.fields) or None, provider_code=args.provider))
        _print({"request_id": args.id, "grant_id": grant_id})
    else:
        _guard(lambda: access.refuse_request(engine, args.id, decided_by=args.by, reason=args.reason or "", at=_now(),
                                             provider_code=args.provider))
        _print({"request_id": args.id, "status": "refused"})
    return 0


def run_grant(args: argparse.Namespace) -> int:
    """hub catalog grant list|revoke."""
    from catalog import access

    engine = _engine(args)
    if args.action == "list":
        _print(access.list_grants(engine, consumer_code=args.consumer))
    else:
        _guard(lambda: access.revoke_grant(engine, args.id, revoked_by=args.by, reason=args.reason or "", at=_now()))
        _print({"grant_id": args.id, "status": "revoked"})
    return 0


def run_usage(args: argparse.Namespace) -> int:
    """hub catalog usage --from D --to D [--svg FILE]."""
    from catalog.usage import usage, usage_chart

    local = dt.timezone(dt.timedelta(hours=8))
    start = dt.datetime.combine(args.start, dt.time(), local)
    end = dt.datetime.combine(args.end + dt.timedelta(days=1), dt.time(), local)
    result = usage(_engine(args), start, end)
    if args.svg:
        args.svg.write_text(usage_chart(result["by_resource"], f"共享资源调用次数 {args.start}～{args.end}"), encoding="utf-8")
    _print({k: v for k, v in result.items() if k != "matrix"})
    return 0


def run_audit_verify(args: argparse.Namespace) -> int:
    """hub audit verify: exit status 1 when any chain or checkpoint is broken."""
    from catalog.audit import verify

    result = verify(_engine(args))
    _print(result)
    if not result["ok"]:
        raise HubError(f"审计日志校验未通过：发现 {len(result['problems'])} 处问题 audit log verification failed")
    return 0


def run_audit_who(args: argparse.Namespace) -> int:
    """hub audit who SUBJECT."""
    from catalog.audit import who_looked_at

    _print(who_looked_at(_engine(args), args.subject, limit=args.limit))
    return 0


def run_audit_checkpoint(args: argparse.Namespace) -> int:
    """hub audit checkpoint."""
    from catalog.audit import checkpoint_all

    _print({"signed": checkpoint_all(_engine(args), _now())})
    return 0
