"""`hub settings` — print every setting, its environment variable and its current value."""

from __future__ import annotations

import argparse
import json

from hub.settings import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `settings` command."""
    parser = subparsers.add_parser("settings", help="显示全部设置 show every setting (HUB_* variables)")
    parser.add_argument("--json", action="store_true", help="以 JSON 输出 print as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the settings table."""
    rows = get_settings().described()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for row in rows:
        print(f"{row['env']:<28} {row['value']}\n{'':<28} {row['description']}")
    return 0
