"""The court's 失信被执行人 API of a world: paginated JSON, Bearer token, rate limit (429), optional faults (500).

`hub world serve --world DIR` runs it in the foreground; `start(world_dir)` / `start_in_thread(world_dir)`
run it in a background thread on a free port (tests, the pipeline).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

ENDPOINT = "/api/v1/sxbzxr"
DEFAULT_RATE = 50.0  # requests per second per token, on average
DEFAULT_BURST = 100  # requests allowed at once
MAX_PAGE_SIZE = 1000


class WorldServerError(Exception):
    """The world cannot be served (no world.json, no court data)."""


@dataclass
class ServerOptions:
    """Behaviour of the API: token, rate limit and fault injection."""

    token: str
    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    fault_rate: float = 0.0  # share of pages whose first request(s) answer 500
    fault_attempts: int = 1  # how many requests of such a page fail before it is served
    fault_seed: int = 0


@dataclass
class _Bucket:
    """Token bucket of the rate limit (monotonic clock)."""

    rate: float
    burst: int
    tokens: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        """Start full."""
        self.tokens = float(self.burst)

    def take(self) -> float:
        """0 if a request may pass now, else the seconds to wait."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate if self.rate > 0 else 60.0


def load_records(world_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The court records (ordered by updatedAt, then id) and the world description."""
    description_path = world_dir / "world.json"
    if not description_path.exists():
        raise WorldServerError(f"不是模拟省目录（缺少 world.json）not a world directory: {world_dir}")
    description = json.loads(description_path.read_text(encoding="utf-8"))
    source = next((s for s in description["sources"] if s.get("kind") == "http"), None)
    if source is None:
        raise WorldServerError("world.json 中没有 HTTP 数据源 no HTTP source in world.json")
    data = world_dir / source["data_file"]
    records = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    records.sort(key=lambda r: (r.get("updatedAt") or "", r.get("id") or 0))
    return records, description


def _parse_since(text: str) -> dt.datetime:
    """An ISO 8601 date or date-time (a zone, if any, is dropped: the data is in local time)."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.replace(tzinfo=None)


def create_app(world_dir: Path | str, options: ServerOptions | None = None) -> FastAPI:
    """The FastAPI application serving one world's court list."""
    world_dir = Path(world_dir)
    records, description = load_records(world_dir)
    opts = options or ServerOptions(token=description.get("court_token", ""))
    stamps = [_parse_since(r["updatedAt"]) if r.get("updatedAt") else dt.datetime.min for r in records]
    bucket = _Bucket(opts.rate, opts.burst)
    attempts: dict[tuple[int, int, str], int] = {}
    attempts_lock = threading.Lock()
    app = FastAPI(title="湖北省失信被执行人名单接口（模拟）", version="1.0")

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        """A JSON error answer."""
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness, without authentication."""
        return {"status": "ok", "records": len(records)}

    @app.get(ENDPOINT)
    def sxbzxr(
        request: Request,
        page: int = Query(1),
        page_size: int = Query(100),
        updated_since: str | None = Query(None),
    ) -> JSONResponse:
        """One page of the list, oldest update first."""
        if request.headers.get("authorization", "") != f"Bearer {opts.token}":
            return error(401, "未授权：缺少或错误的访问令牌 unauthorized", {"WWW-Authenticate": "Bearer"})
        wait = bucket.take()
        if wait > 0:
            return error(429, "请求过于频繁 too many requests", {"Retry-After": str(max(1, math.ceil(wait)))})
        if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            return error(400, f"参数错误：page ≥ 1，1 ≤ page_size ≤ {MAX_PAGE_SIZE} bad paging parameters")
        since = None
        if updated_since:
            try:
                since = _parse_since(updated_since)
            except ValueError:
                return error(400, f"参数错误：updated_since 须为 ISO 8601 时间 bad updated_since: {updated_since}")
        if opts.fault_rate > 0:
            key = (page, page_size, updated_since or "")
            with attempts_lock:
                attempts[key] = attempts.get(key, 0) + 1
                attempt = attempts[key]
            digest = hashlib.blake2b(f"{opts.fault_seed}/{page}/{page_size}".encode(), digest_size=8).digest()
            draw = int.from_bytes(digest, "big") / 2**64
            if draw < opts.fault_rate and attempt <= opts.fault_attempts:
                return error(500, "服务内部错误（模拟故障）simulated server error")
        selected = records if since is None else [r for r, s in zip(records, stamps) if s >= since]
        start = (page - 1) * page_size
        return JSONResponse({"total": len(selected), "page": page, "page_size": page_size,
                             "data": selected[start:start + page_size]})

    return app


@dataclass
class ServerHandle:
    """A server running in a background thread: `handle.url`, `handle.stop()`, or `url, stop = handle`."""

    url: str
    stop: Callable[[], None]

    def __iter__(self) -> Iterator[Any]:
        """Unpack as (base URL, stop function)."""
        return iter((self.url, self.stop))


def start(world_dir: Path | str, host: str = "127.0.0.1", port: int = 0, **options: Any) -> ServerHandle:
    """Serve a world in a background thread (port 0 = a free port); returns its base URL and a stop function."""
    import uvicorn

    world_dir = Path(world_dir)
    _, description = load_records(world_dir)
    opts = ServerOptions(token=options.pop("token", None) or description.get("court_token", ""), **options)
    app = create_app(world_dir, opts)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="world-court-api")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        server.should_exit = True
        raise WorldServerError("模拟接口未能启动 the API did not start")

    def stop() -> None:
        """Stop the server and wait for its thread."""
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    return ServerHandle(url=f"http://{host}:{bound_port}", stop=stop)


def start_in_thread(world_dir: Path | str, host: str = "127.0.0.1", port: int = 0, **options: Any) -> ServerHandle:
    """Like start(); the handle also unpacks as the pair (base URL, stop function)."""
    return start(world_dir, host=host, port=port, **options)


def serve(world_dir: Path | str, host: str = "127.0.0.1", port: int = 8765, **options: Any) -> None:
    """Serve a world in the foreground until interrupted."""
    import uvicorn

    world_dir = Path(world_dir)
    _, description = load_records(world_dir)
    opts = ServerOptions(token=options.pop("token", None) or description.get("court_token", ""), **options)
    uvicorn.run(create_app(world_dir, opts), host=host, port=port, log_level="warning")
