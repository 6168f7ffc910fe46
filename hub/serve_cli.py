"""`hub serve` — the hub's web application (exchange API and pages, open-data portal, stewards' queue) on uvicorn."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `hub serve` to the hub's command line."""
    parser = subparsers.add_parser("serve", help="启动枢纽网站：共享交换接口与页面、开放数据门户、数据专员工单 serve the hub web app")
    parser.add_argument("--host", default="127.0.0.1", help="监听地址 host; default 127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="端口 port; default 8090")
    parser.add_argument("--workers", type=int, default=1, help="工作进程数 worker processes (each has its own audit chain)")
    parser.add_argument("--db", help="枢纽数据库 URL（缺省取设置）hub database URL (default: settings)")
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Run uvicorn with N worker processes; access logs are off (URLs must not end up in logs with subjects)."""
    import uvicorn

    from hub.cli import HubError

    if args.workers < 1:
        raise HubError("工作进程数至少为 1")
    if args.db:
        os.environ["HUB_DATABASE_URL"] = args.db  # workers read the settings from the environment
    from hub.settings import get_settings

    get_settings.cache_clear()
    print(f"枢纽网站 hub web app: http://{args.host}:{args.port}/exchange/  (OpenAPI /openapi.json, 门户 /opendata/)")
    uvicorn.run("hub.web:app_factory", factory=True, host=args.host, port=args.port, workers=args.workers,
                log_level="warning", access_log=False, proxy_headers=False, server_header=False,
                loop="uvloop", http="httptools", backlog=4096, timeout_keep_alive=30)
    return 0
