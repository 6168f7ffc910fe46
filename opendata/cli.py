"""`hub opendata …` — build releases, list the open catalogue, verify a release (checksums and signature).

Every command prints JSON; messages are Chinese. A failed release or verification exits with status 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from hub.cli import HubError


def _print(value: Any) -> None:
    """One JSON document on stdout (Chinese readable)."""
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def _root(args: argparse.Namespace) -> Path:
    """The data root (settings, or --data-root)."""
    from hub.settings import get_settings

    return Path(args.data_root) if getattr(args, "data_root", None) else get_settings().data_root


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `opendata` command group."""
    parser = subparsers.add_parser("opendata", help="开放数据 open data: build releases, list, verify",
                                   description="开放数据：生成去标识化、版本化、签名的发布，列出开放目录，验证发布。")
    parser.add_argument("--url", help="枢纽数据库 URL（默认取设置）hub database URL")
    parser.add_argument("--data-root", help="数据根目录（默认取设置）data root holding opendata/")
    commands = parser.add_subparsers(dest="opendata_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)

    build = commands.add_parser("release", help="生成发布（数据未变化则不产生新版本）build releases")
    build.add_argument("--dataset", action="append", metavar="ID", help="只发布该数据集（可重复；默认全部）")
    build.add_argument("--workers", type=int, default=default_workers(), metavar="N",
                       help=f"并行发布的进程数（默认 {default_workers()}，即 CPU 核数，至多 4）worker processes")
    build.set_defaults(handler=run_release)

    listing = commands.add_parser("list", help="列出开放目录及各数据集的版本 list the open catalogue")
    listing.set_defaults(handler=run_list)

    verify = commands.add_parser("verify", help="验证发布的校验和与签名 verify checksums and signature")
    verify.add_argument("dataset", metavar="ID", help="数据集标识")
    verify.add_argument("version", nargs="?", default="latest", help="版本（默认 latest）")
    verify.set_defaults(handler=run_verify)


def default_workers() -> int:
    """Worker processes of a release run: one per core, at most 4 (each holds one dataset's build in memory)."""
    return max(1, min(os.cpu_count() or 1, 4))


def run_release(args: argparse.Namespace) -> int:
    """hub opendata release [--dataset ID] [--workers N]."""
    from hub.db import engine_for
    from opendata.datasets import DatasetError
    from opendata.release import release

    if args.workers < 1:
        raise HubError(f"--workers 须为正整数 must be at least 1, not {args.workers}")
    try:
        out = release(args.dataset, engine=engine_for(args.url), data_root=_root(args), at=dt.datetime.now(dt.timezone.utc),
                      workers=args.workers)
    except DatasetError as error:
        raise HubError(str(error)) from None
    _print(out)
    return 1 if out["failed"] else 0


def run_list(args: argparse.Namespace) -> int:
    """hub opendata list."""
    from opendata import store

    _print([{k: d[k] for k in ("id", "title", "open_attribute", "latest_version")} | {"versions": [v["version"] for v in d["versions"]]}
            for d in store.list_datasets(_root(args))])
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """hub opendata verify ID [VERSION]."""
    from opendata import store

    try:
        result = store.verify_release(_root(args), args.dataset, args.version)
    except store.ReleaseNotFound as error:
        raise HubError(str(error)) from None
    _print(result)
    return 0 if result["ok"] else 1
