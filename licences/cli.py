"""`hub licence …` — e-licence keys, sealing, verification, export, life cycle, 亮证 and reminders.

Every command prints JSON; messages are Chinese. A failed verification exits with status 1 and prints its reason.
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
    """The current moment (UTC); the CLI is the only place the licence commands read the clock."""
    return dt.datetime.now(dt.timezone.utc)


def _print(value: Any) -> None:
    """One JSON document on stdout (Chinese readable)."""
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `licence` command group."""
    parser = subparsers.add_parser("licence", help="电子证照 e-licences: keys, seal, verify, export, revoke, 亮证, reminders",
                                   description="电子证照：签章密钥、签章、验证、导出、吊销/注销/换发、亮证、到期提醒。")
    parser.add_argument("--url", help="枢纽数据库 URL（默认取设置）hub database URL")
    commands = parser.add_subparsers(dest="licence_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)

    keys_parser = commands.add_parser("keys", help="签章密钥 signing keys: list, rotate, jwks")
    keys_parser.add_argument("action", choices=("list", "rotate", "jwks"),
                             help="list 列出 / rotate 轮换某部门密钥 / jwks 导出公钥集")
    keys_parser.add_argument("--department", help="部门代码（颁发机构统一社会信用代码，或 HUB-PRESENTATION）")
    keys_parser.add_argument("--out", type=Path, help="jwks 另存为文件")
    keys_parser.set_defaults(handler=run_keys)

    seal = commands.add_parser("seal", help="为所有未签章证照签章 seal every unsealed licence")
    seal.add_argument("--workers", type=int, help="工作进程数（默认：大批量时用全部核心）")
    seal.set_defaults(handler=run_seal)

    verify = commands.add_parser("verify", help="验证证照（签章与当前状态）verify a licence: seal and current status")
    what = verify.add_mutually_exclusive_group(required=True)
    what.add_argument("--id", help="证照标识（查枢纽数据库）")
    what.add_argument("--file", type=Path, help="导出的证照 JSON（离线验证）")
    what.add_argument("--qr", help="二维码内容 HL1.…（离线验证）")
    what.add_argument("--all", action="store_true", help="验证库中全部已签章证照（汇总）")
    verify.add_argument("--jwks", type=Path, help="离线验证用公钥集 JSON（默认取枢纽数据库）")
    verify.add_argument("--offline", action="store_true", help="不查询当前状态（只验签章与有效期）")
    verify.add_argument("--date", type=iso_date, help="按该日期判断是否过期（默认今天）")
    verify.add_argument("--workers", type=int, default=1, help="--all 时的工作进程数")
    verify.set_defaults(handler=run_verify)

    export = commands.add_parser("export", help="导出可离线验证的证照 JSON（含二维码内容）export an offline-verifiable licence")
    export.add_argument("licence_id")
    export.add_argument("--out", type=Path, help="另存为文件")
    export.add_argument("--qr-image", type=Path, help="另存二维码图片 PNG（需安装 qrcode 包）")
    export.set_defaults(handler=run_export)

    for name, help_text in (("revoke", "吊销证照（并写入信用库行政处罚记录）"), ("cancel", "注销证照")):
        step = commands.add_parser(name, help=help_text)
        step.add_argument("licence_id")
        step.add_argument("--reason", required=True, help="原因")
        step.add_argument("--actor", required=True, help="操作人")
        if name == "revoke":
            step.add_argument("--decision-no", help="处罚决定书文号")
        step.set_defaults(handler=run_lifecycle, step=name)

    renew = commands.add_parser("renew", help="换发新版本证照（原证注销）renew as a new version")
    renew.add_argument("licence_id")
    renew.add_argument("--valid-from", type=iso_date, required=True)
    renew.add_argument("--valid-until", type=iso_date, help="有效期截止（空为长期）")
    renew.add_argument("--reason", default="换发新证")
    renew.add_argument("--actor", required=True)
    renew.set_defaults(handler=run_lifecycle, step="renew")

    present = commands.add_parser("present", help="亮证：生成短时有效的亮证码")
    present.add_argument("licence_id")
    present.add_argument("--minutes", type=int, default=5, help="有效分钟数（默认 5）")
    present.set_defaults(handler=run_present)

    check = commands.add_parser("check-presentation", help="核验亮证码（窗口人员）")
    check.add_argument("token")
    check.add_argument("--jwks", type=Path, help="离线核验用公钥集 JSON（此时不查询证照当前状态）")
    check.set_defaults(handler=run_check_presentation)

    remind = commands.add_parser("remind", help="到期提醒：标记过期证照，生成并发送 90/30/7 天提醒")
    remind.add_argument("--date", type=iso_date, help="基准日期（默认今天）")
    remind.add_argument("--out", type=Path, help="提醒文件目录（默认 <data_root>/licences/reminders）")
    remind.set_defaults(handler=run_remind)


def run_keys(args: argparse.Namespace) -> int:
    """List, rotate or publish signing keys."""
    from licences import keys

    engine = _engine(args)
    if args.action == "rotate":
        if not args.department:
            raise HubError("轮换密钥需要 --department")
        key_id = keys.rotate_key(engine, args.department, _now())
        _print({"department_code": args.department, "key_id": key_id, "message": "已轮换：旧密钥停用但保留，用于验证旧签章"})
    elif args.action == "jwks":
        document = keys.jwks(engine, args.department)
        if args.out:
            args.out.write_text(json.dumps(document, ensure_ascii=False, indent=2), encoding="utf-8")
            print(f"已导出公钥集 wrote {args.out} ({len(document['keys'])} keys)")
        else:
            _print(document)
    else:
        for row in keys.list_keys(engine, args.department):
            row.pop("public_key")
            print(json.dumps(row, ensure_ascii=False, default=str))
    return 0


def run_seal(args: argparse.Namespace) -> int:
    """Seal the unsealed licences."""
    from licences.seal import seal_pending

    _print(seal_pending(_engine(args), _now(), workers=args.workers))
    return 0


def _public_keys(args: argparse.Namespace) -> Any:
    """Verification keys from --jwks, or from the hub database."""
    from licences import keys

    if getattr(args, "jwks", None):
        try:
            return keys.public_keys_from_jwks(json.loads(args.jwks.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError) as error:
            raise HubError(f"公钥集无法读取 cannot read JWKS {args.jwks}: {error}") from error
    return keys.public_keys_from_jwks(keys.jwks(_engine(args)))


def run_verify(args: argparse.Namespace) -> int:
    """Verify one licence (by id, export file or QR text), or all stored ones."""
    from licences import verify

    today = args.date or _now().date()
    if args.all:
        result = verify.verify_stored(_engine(args), today, workers=args.workers)
        _print(result)
        return 0 if result["seal_failed"] == 0 else 1
    if args.id:
        verdict = verify.verify_licence(_engine(args), args.id, today)
    else:
        if args.file:
            try:
                subject: Any = json.loads(args.file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise HubError(f"无法读取证照文件 cannot read {args.file}: {error}") from error
        else:
            subject = args.qr
        status_of = None if args.offline else verify.status_lookup(_engine(args))
        verdict = verify.verify_export(subject, _public_keys(args), today, status_of)
    _print(verdict.as_dict())
    return 0 if verdict.ok else 1


def run_export(args: argparse.Namespace) -> int:
    """Write an offline-verifiable export (and optionally a QR image)."""
    from licences import verify

    try:
        export = verify.export_licence(_engine(args), args.licence_id)
    except LookupError as error:
        raise HubError(str(error)) from error
    if args.qr_image:
        try:
            import qrcode  # optional
        except ImportError as error:
            raise HubError("生成二维码图片需要安装 qrcode 包；二维码内容见导出的 qr 字段") from error
        qrcode.make(export["qr"]).save(args.qr_image)
    if args.out:
        args.out.write_text(json.dumps(export, ensure_ascii=False, indent=2), encoding="utf-8")
        print(f"已导出 wrote {args.out}")
    else:
        _print(export)
    return 0


def run_lifecycle(args: argparse.Namespace) -> int:
    """Revoke, cancel or renew a licence."""
    from licences import lifecycle

    engine, now = _engine(args), _now()
    try:
        if args.step == "revoke":
            result = lifecycle.revoke(engine, args.licence_id, args.reason, args.actor, now, args.decision_no)
        elif args.step == "cancel":
            result = lifecycle.cancel(engine, args.licence_id, args.reason, args.actor, now)
        else:
            result = lifecycle.renew(engine, args.licence_id, args.valid_from, args.valid_until, args.reason, args.actor, now)
    except lifecycle.LifecycleError as error:
        raise HubError(str(error)) from error
    _print(result)
    return 0


def run_present(args: argparse.Namespace) -> int:
    """Issue a presentation token."""
    from licences import presentation

    try:
        token = presentation.present(_engine(args), args.licence_id, _now(), args.minutes)
    except presentation.PresentationError as error:
        raise HubError(str(error)) from error
    print(token)
    return 0


def run_check_presentation(args: argparse.Namespace) -> int:
    """Verify a presentation token (with the licence's current status unless --jwks is given)."""
    from licences import presentation

    engine = None if args.jwks else _engine(args)
    result = presentation.check_presentation(args.token, _public_keys(args), _now(), engine)
    _print(result.as_dict())
    return 0 if result.ok else 1


def run_remind(args: argparse.Namespace) -> int:
    """Mark expired licences, raise and deliver reminders."""
    from licences import reminders

    now = _now()
    channel = reminders.JsonLinesChannel(args.out) if args.out else None
    _print(reminders.run_daily(_engine(args), args.date or now.date(), now, channel))
    return 0


