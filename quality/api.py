"""The department steward's queue over HTTP: a JSON API and Chinese pages (FastAPI), each steward sees only their own.

A steward signs in with their department's token (`hub quality steward-token --department D`, an HMAC of the
department under the hub's index key, so nothing is stored and another department's token cannot be
guessed). The token names the department; every query is filtered by it, and another department's ticket
answers 404 as if it did not exist.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import parse_qs

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.asgi import replay
from quality.tickets import STATUS_TEXT, TRANSITIONS, TicketError, list_tickets, ticket_detail, transition

COOKIE = "hub_steward"
ACTION_TEXT = {"acknowledge": "签收", "correct": "已在源系统更正", "dispute": "提出异议"}
STYLE = ("body{font-family:'Noto Sans CJK SC','Microsoft YaHei',sans-serif;margin:24px;color:#222}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}th{background:#f4f4f4}")


@dataclass(frozen=True)
class GuardConfig:
    """Protections of the steward app: a steward's queue is small, so are its requests."""

    rate: float = 5.0  # requests per second per client IP, on average
    burst: int = 60
    max_body_bytes: int = 16 * 1024  # a note on a ticket, a sign-in form
    max_url_bytes: int = 2048


# The pages carry their own small stylesheet inline; nothing else may load, frame or be sniffed.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                 b"base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),  # the queue names records of a department: no shared caches
)


class StewardGuard:
    """ASGI middleware: URL and body size limits, a per-IP rate limit, security headers on every answer."""

    def __init__(self, app: Any, config: GuardConfig = GuardConfig()) -> None:
        """Wrap an ASGI app."""
        from opendata.portal import TokenBuckets

        self.app, self.config = app, config
        self.buckets = TokenBuckets(config.rate, config.burst)

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        """Refuse what is too big or too frequent (413/414/429, in Chinese); pass the rest on with the headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.config.max_body_bytes
        url_bytes = len(scope.get("raw_path") or scope.get("path", "").encode()) + len(scope.get("query_string") or b"")
        if url_bytes > self.config.max_url_bytes:
            await _refuse(send, 414, "请求地址过长")
            return
        client = scope.get("client")
        wait = self.buckets.take(client[0] if client else "unknown")
        if wait > 0:
            retry = max(1, math.ceil(wait))
            await _refuse(send, 429, f"请求过于频繁，请 {retry} 秒后再试", [(b"retry-after", str(retry).encode())])
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _refuse(send, 413, f"请求体过大（上限 {limit} 字节）")
            return
        if scope.get("method") in {"POST", "PUT", "PATCH"}:
            body = await _read_limited(receive, limit)
            if body is None:
                await _refuse(send, 413, f"请求体过大（上限 {limit} 字节）")
                return
            receive = replay(body)
        await self.app(scope, receive, _with_headers(send))


async def _read_limited(receive: Callable, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it exceeds `limit` (chunked bodies too)."""
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(parts)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


def _with_headers(send: Callable) -> Callable:
    """A send callable that adds the security headers the app did not set itself."""

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            message["headers"] = list(message.get("headers", [])) + [h for h in SECURITY_HEADERS if h[0] not in present]
        await send(message)

    return wrapped


async def _refuse(send: Callable, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer from the middleware with FastAPI's error shape ({"detail": "…"}) in Chinese."""
    body = json.dumps({"detail": message}, ensure_ascii=False).encode("utf-8")
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())] + (headers or [])
    await _with_headers(send)({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object ({} when empty); 400 in Chinese for anything else (never a 500)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(status_code=400, detail="请求体不是有效的 JSON body is not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("note", ""), (str, type(None))):
        raise HTTPException(status_code=400, detail='请求体应为 {"note": "文字说明"} body must be {"note": "…"}')
    return body


async def _form_field(request: Request, name: str) -> str:
    """One field of a submitted form ('' when absent); 400 in Chinese when the form is not UTF-8."""
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(status_code=400, detail="表单编码应为 UTF-8 form must be UTF-8") from None
    return parse_qs(text).get(name, [""])[0].strip()


def steward_token(department: str) -> str:
    """The sign-in token of a department's data steward."""
    from hub.crypto import get_cipher

    return get_cipher().index_hash(f"quality-steward:{department}")


def department_of(token: str | None) -> str | None:
    """The department a token belongs to (None if it is nobody's)."""
    if not token:
        return None
    from schemas.code_tables import load_table

    for code in load_table("departments").codes:
        if hmac.compare_digest(steward_token(code), token):
            return code
    return None


def _token(request: Request) -> str | None:
    """The token from 'Authorization: Bearer …' or the sign-in cookie."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def _page(title: str, body: str) -> HTMLResponse:
    """A Chinese HTML page."""
    return HTMLResponse(f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{escape(title)}</title>'
                        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>")


def create_app(engine: sa.Engine | None = None, guard: GuardConfig = GuardConfig()) -> FastAPI:
    """The steward app over the hub database (the settings' database unless an engine is given)."""
    if engine is None:
        from hub.db import engine_for
        from hub.settings import get_settings

        engine = engine_for(get_settings().database_url)
    app = FastAPI(title="数据质量问题工单 · 部门数据专员", description="本部门的数据质量问题工单：查看、签收、更正、异议。")

    def steward(request: Request) -> str:
        """The signed-in department, or 401."""
        department = department_of(_token(request))
        if department is None:
            raise HTTPException(status_code=401, detail="未登录或令牌无效 sign in with your department's steward token")
        return department

    def act(ticket_id: int, department: str, action: str, note: str | None) -> dict[str, Any]:
        """One steward action; ticket errors become 404/409 with the Chinese reason."""
        if action not in TRANSITIONS:
            raise HTTPException(status_code=404, detail=f"未知操作 {action}")
        try:
            return transition(engine, ticket_id, department, action, f"{department}数据专员", dt.datetime.now(dt.timezone.utc), note)
        except TicketError as error:
            raise HTTPException(status_code=404 if "不存在" in str(error) else 409, detail=str(error)) from error

    @app.get("/api/quality/tickets")
    def api_tickets(request: Request, status: str | None = None, include_closed: bool = False) -> list[dict[str, Any]]:
        """The signed-in department's tickets."""
        return list_tickets(engine, steward(request), status, include_closed)

    @app.get("/api/quality/tickets/{ticket_id}")
    def api_ticket(ticket_id: int, request: Request) -> dict[str, Any]:
        """One of the department's tickets with its defects and history."""
        try:
            return ticket_detail(engine, ticket_id, steward(request))
        except TicketError as error:
            raise HTTPException(status_code=404, detail=str(error)) from error

    @app.post("/api/quality/tickets/{ticket_id}/{action}")
    async def api_act(ticket_id: int, action: str, request: Request) -> dict[str, Any]:
        """acknowledge / correct / dispute (body: {"note": "…"}; a dispute needs a note)."""
        body = await _json_body(request)
        return act(ticket_id, steward(request), action, body.get("note"))

    @app.get("/quality/login", response_class=HTMLResponse)
    def login_page() -> HTMLResponse:
        """The sign-in form."""
        return _page("部门数据专员登录", '<form method="post" action="/quality/login"><p>令牌 <input name="token" size="70"></p>'
                                      '<p><button>登录</button></p></form>')

    @app.post("/quality/login")
    async def login(request: Request):
        """Check the token and keep it in a cookie."""
        token = await _form_field(request, "token")
        if department_of(token) is None:
            return _page("部门数据专员登录", "<p>令牌无效，请向枢纽管理员索取本部门的令牌。</p>")
        response = RedirectResponse("/quality/queue", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/quality/queue", response_class=HTMLResponse)
    def queue_page(request: Request) -> HTMLResponse:
        """The department's queue as a page."""
        department = department_of(_token(request))
        if department is None:
            return RedirectResponse("/quality/login", status_code=303)
        rows = "".join(
            f'<tr><td><a href="/quality/tickets/{t["id"]}">{t["id"]}</a></td><td>{escape(t["source"])}</td>'
            f'<td>{escape(t["rule_name"])}（{escape(t["rule"])}）</td><td>{"错误" if t["severity"] == "error" else "警告"}</td>'
            f'<td>{escape(t["status_text"])}</td><td>{t["defects_open"]}/{t["defects_total"]}</td><td>{escape(t["opened_at"][:10])}</td></tr>'
            for t in list_tickets(engine, department, include_closed=True))
        return _page(f"{department} 数据质量问题工单",
                     "<table><tr><th>工单</th><th>数据源</th><th>规则</th><th>级别</th><th>状态</th><th>未解决/总数</th><th>开单日期</th></tr>"
                     f"{rows or '<tr><td colspan=7>暂无工单</td></tr>'}</table>")

    @app.get("/quality/tickets/{ticket_id}", response_class=HTMLResponse)
    def ticket_page(ticket_id: int, request: Request) -> HTMLResponse:
        """One ticket with its defects, history and the actions its status allows."""
        department = department_of(_token(request))
        if department is None:
            return RedirectResponse("/quality/login", status_code=303)
        try:
            ticket = ticket_detail(engine, ticket_id, department)
        except TicketError as error:
            raise HTTPException(status_code=404, detail=str(error)) from error
        defects = "".join(f"<tr><td>{escape(d['record'])}</td><td>{escape(d['field'])}</td><td>{escape(d['message'])}</td>"
                          f"<td>{escape(d['status'])}{'（有异议）' if d['disputed'] else ''}</td></tr>" for d in ticket["defects"])
        history = "".join(f"<li>{escape(h['at'][:19])} {escape(h['actor'])}：{escape(STATUS_TEXT.get(h['to'], h['to']))}"
                          f"{'，' + escape(h['note']) if h['note'] else ''}</li>" for h in ticket["history"])
        actions = "".join(f'<form method="post" action="/quality/tickets/{ticket_id}/{a}"><input name="note" placeholder="说明">'
                          f"<button>{ACTION_TEXT[a]}</button></form>"
                          for a, (allowed, _, _) in TRANSITIONS.items() if ticket["status"] in allowed)
        return _page(f"工单 {ticket_id}：{ticket['rule_name']}",
                     f"<p>数据源 {escape(ticket['source'])} · 状态 {escape(ticket['status_text'])} · 未解决 {ticket['defects_open']} / {ticket['defects_total']}</p>"
                     f"{actions}<h2>问题记录</h2><table><tr><th>记录</th><th>字段</th><th>说明</th><th>状态</th></tr>{defects}</table>"
                     f"<h2>处理记录</h2><ul>{history}</ul>")

    @app.post("/quality/tickets/{ticket_id}/{action}")
    async def ticket_action(ticket_id: int, action: str, request: Request):
        """A form action from the ticket page."""
        department = department_of(_token(request))
        if department is None:
            return RedirectResponse("/quality/login", status_code=303)
        note = await _form_field(request, "note") or None
        act(ticket_id, department, action, note)
        return RedirectResponse(f"/quality/tickets/{ticket_id}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        """Starlette's own English answers (unknown page, wrong method) in Chinese; the app's own details as they are."""
        defaults = {"Not Found": "页面或工单不存在 not found", "Method Not Allowed": "不支持该请求方法 method not allowed"}
        detail = defaults.get(str(error.detail), error.detail)
        return JSONResponse({"detail": detail}, status_code=error.status_code, headers=getattr(error, "headers", None))

    app.add_middleware(StewardGuard, config=guard)
    return app
