"""`hub portal serve` — serve the open-data portal (pages, downloads, CKAN Action API). 开放数据门户命令。"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `hub portal …` to the hub's command line."""
    parser = subparsers.add_parser("portal", help="开放数据门户 open-data portal: pages, downloads, CKAN API")
    commands = parser.add_subparsers(dest="portal_command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="启动开放数据门户 serve the portal and the CKAN Action API")
    serve.add_argument("--host", default="127.0.0.1", help="监听地址 host; default 127.0.0.1")
    serve.add_argument("--port", type=int, default=8092, help="端口 port; default 8092")
    serve.add_argument("--rate", type=float, default=10.0, help="每个匿名客户端每秒请求数 requests per second per anonymous IP")
    serve.add_argument("--burst", type=int, default=60, help="突发请求数 burst size of the token bucket")
    serve.add_argument("--trust-forwarded-for", action="store_true",
                       help="按 X-Forwarded-For 识别客户端（仅在反向代理之后使用）client IP from X-Forwarded-For (behind a proxy only)")
    serve.set_defaults(handler=run_serve)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def run_serve(args: argparse.Namespace) -> int:
    """Migrate the hub database (the download counter lives there), then serve until interrupted."""
    import uvicorn

    from hub import db
    from hub.settings import get_settings
    from opendata.portal import PortalConfig, create_portal

    settings = get_settings()
    db.upgrade(settings.database_url)
    config = PortalConfig(rate=args.rate, burst=args.burst, trust_forwarded_for=args.trust_forwarded_for)
    app = create_portal(settings.data_root, db.engine_for(settings.database_url), config)
    print(f"开放数据门户：http://{args.host}:{args.port}/opendata/ · CKAN 接口：http://{args.host}:{args.port}/api/3/action/package_list",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", proxy_headers=False)
    return 0
