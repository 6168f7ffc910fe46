"""`hub library …` — golden records as known at a time, their history, steward overrides, the audit chain.

基础库命令：查询标准记录（可按记录时间、有效时间回溯）、版本历史、人工修正、审计链校验。
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from hub.cli import HubError
from hub.lazy import lazy_import

# Loaded on first use: registering the commands must stay cheap for every other `hub` command.
db = lazy_import("hub.db")
history = lazy_import("libraries.history")
overrides = lazy_import("libraries.overrides")
registry = lazy_import("libraries.registry")


def iso_time(text: str) -> dt.datetime:
    """An argparse type: YYYY-MM-DD or an ISO timestamp; without a zone it is Beijing time."""
    from libraries.adapt import LOCAL_ZONE

    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"时间格式应为 ISO 8601（如 2026-01-02 或 2026-01-02T08:00:00+08:00） got {text!r}") from None
    return (value if value.tzinfo else value.replace(tzinfo=LOCAL_ZONE)).astimezone(dt.timezone.utc)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `library` command group."""
    parser = subparsers.add_parser("library", help="基础库 golden records: show, history, overrides, audit-verify")
    actions = parser.add_subparsers(dest="library_action", metavar="ACTION", title="操作 actions")

    show = actions.add_parser("show", help="查询标准记录 show a golden record (as known at / valid at a time)")
    _subject(show)
    show.add_argument("--known-at", type=iso_time, help="记录时间：枢纽当时所知 as known by the hub at this time")
    show.add_argument("--valid-at", type=iso_time, help="有效时间：在源端此时有效 as valid at the source at this time")
    show.add_argument("--reveal", action="store_true", help="显示未脱敏的个人信息 show personal data unmasked")
    show.set_defaults(handler=run_show)

    hist = actions.add_parser("history", help="版本历史 every version of a golden record, tombstones included")
    _subject(hist)
    hist.add_argument("--reveal", action="store_true", help="显示未脱敏的个人信息 show personal data unmasked")
    hist.set_defaults(handler=run_history)

    override = actions.add_parser("override", help="人工修正 steward overrides: set | revoke | list")
    steps = override.add_subparsers(dest="override_action", metavar="STEP")
    put = steps.add_parser("set", help="设置修正 override one field")
    _subject(put)
    put.add_argument("field", help="字段 golden field, e.g. name")
    put.add_argument("value", help="修正值 the corrected value (JSON null clears the field: --null)")
    put.add_argument("--null", action="store_true", help="修正为空值 set the field to null")
    put.add_argument("--steward", required=True, help="数据专员 steward name")
    put.add_argument("--department", required=True, help="部门代码 department code, e.g. gongan")
    put.add_argument("--reason", required=True, help="修正理由 reason")
    put.set_defaults(handler=run_override_set)
    revoke = steps.add_parser("revoke", help="撤销修正 revoke an override")
    revoke.add_argument("override_id", type=int, help="修正编号 override id")
    revoke.add_argument("--steward", required=True, help="撤销人 steward name")
    revoke.add_argument("--reason", required=True, help="撤销理由 reason")
    revoke.add_argument("--url", help="数据库 URL database URL (default: HUB_DATABASE_URL / settings)")
    revoke.set_defaults(handler=run_override_revoke)
    listing = steps.add_parser("list", help="列出修正 list overrides")
    listing.add_argument("library", help="基础库 population | legal_entity | licence | credit")
    listing.add_argument("key", nargs="?", help="主体（人口库为公民身份号码）subject; population: resident ID number")
    listing.add_argument("--all", action="store_true", help="含已撤销的 include revoked ones")
    listing.add_argument("--reveal", action="store_true", help="显示未脱敏的修正值 show values unmasked")
    listing.add_argument("--url", help="数据库 URL database URL (default: HUB_DATABASE_URL / settings)")
    listing.set_defaults(handler=run_override_list)
    override.set_defaults(handler=lambda args: override.print_help() or 2)

    audit = actions.add_parser("audit-verify", help="校验人工修正审计链 verify the steward audit hash chain")
    audit.add_argument("--url", help="数据库 URL database URL (default: HUB_DATABASE_URL / settings)")
    audit.set_defaults(handler=run_audit_verify)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def _subject(parser: argparse.ArgumentParser) -> None:
    """library, key, --url."""
    parser.add_argument("library", help="基础库 population | legal_entity | licence | credit")
    parser.add_argument("key", help="主体（人口库为公民身份号码，法人库为统一社会信用代码）subject key; population: resident ID number")
    parser.add_argument("--url", help="数据库 URL database URL (default: HUB_DATABASE_URL / settings)")


def _engine(args: argparse.Namespace):
    """The hub database engine."""
    return db.engine_for(args.url)


def _database_errors(handler):
    """Turn database errors (not migrated, unreachable) into one clear line instead of a traceback."""
    import functools

    @functools.wraps(handler)
    def wrapped(args: argparse.Namespace) -> int:
        import sqlalchemy as sa

        try:
            return handler(args)
        except sa.exc.DBAPIError as error:
            raise HubError(f"数据库不可用或未迁移（先运行 hub db upgrade）database unavailable or not migrated: "
                           f"{type(error.orig).__name__}") from None
    return wrapped


def _spec(library: str) -> Any:
    """The library's spec, or a clear error."""
    try:
        return registry.get_library(library)
    except registry.UnknownLibrary as error:
        raise HubError(str(error)) from None


def _spec_and_key(library: str, key: str) -> tuple[Any, str]:
    """The library's spec and the stored key of what the user typed (population: HMAC of the ID number)."""
    spec = _spec(library)
    lookup = getattr(spec, "lookup_key", None)
    try:
        return spec, (lookup(key) if lookup else key.strip())
    except ValueError as error:
        raise HubError(str(error)) from None


def _masked(spec: Any, version: dict[str, Any] | None, reveal: bool) -> dict[str, Any] | None:
    """Personal fields of a version's record masked unless reveal."""
    if version is None or reveal or not version.get("record"):
        return version
    masks = getattr(spec, "masks", {})
    record = {k: (masks[k](str(v)) if k in masks and v is not None else v) for k, v in version["record"].items()}
    return {**version, "record": record}


def emit(result: Any) -> int:
    """Print JSON on stdout."""
    json.dump(result, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


@_database_errors
def run_show(args: argparse.Namespace) -> int:
    """hub library show."""
    spec, key = _spec_and_key(args.library, args.key)
    found = history.as_of(_engine(args), spec.name, key, known_at=args.known_at, valid_at=args.valid_at)
    if found is None:
        raise HubError(f"{spec.name} 在所给时间没有该主体的记录 no record of this subject (as known / valid at the given time)")
    return emit({"library": spec.name, "key": key, **_masked(spec, found, args.reveal)})


@_database_errors
def run_history(args: argparse.Namespace) -> int:
    """hub library history."""
    spec, key = _spec_and_key(args.library, args.key)
    versions = history.history(_engine(args), spec.name, key)
    if not versions:
        raise HubError(f"{spec.name} 中没有该主体 no such subject in the library")
    return emit({"library": spec.name, "key": key, "versions": [_masked(spec, v, args.reveal) for v in versions]})


@_database_errors
def run_override_set(args: argparse.Namespace) -> int:
    """hub library override set."""
    spec, key = _spec_and_key(args.library, args.key)
    try:
        result = overrides.set_override(_engine(args), spec.name, key, args.field, None if args.null else args.value,
                                        steward=args.steward, department=args.department, reason=args.reason)
    except overrides.OverrideError as error:
        raise HubError(str(error)) from None
    return emit(result)


@_database_errors
def run_override_revoke(args: argparse.Namespace) -> int:
    """hub library override revoke."""
    try:
        result = overrides.revoke_override(_engine(args), args.override_id, steward=args.steward, reason=args.reason)
    except overrides.OverrideError as error:
        raise HubError(str(error)) from None
    return emit(result)


@_database_errors
def run_override_list(args: argparse.Namespace) -> int:
    """hub library override list."""
    spec, key = _spec_and_key(args.library, args.key) if args.key else (_spec(args.library), None)
    return emit(overrides.list_overrides(_engine(args), spec.name, key, include_revoked=args.all, reveal=args.reveal))


@_database_errors
def run_audit_verify(args: argparse.Namespace) -> int:
    """hub library audit-verify: exit status 1 when the chain is broken."""
    result = overrides.verify_audit(_engine(args))
    emit(result)
    if not result["ok"]:
        raise HubError(f"审计链在第 {result['first_bad_id']} 条断裂 audit chain broken at entry {result['first_bad_id']}")
    return 0
