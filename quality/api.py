"""The department steward's queue over HTTP: a JSON API and Chinese pages (FastAPI), each steward sees only their own.

A steward signs in with their department's token (`hub quality steward-token --department D`, an HMAC of the
department under the hub's index key, so nothing is stored and another department's token cannot be
guessed). The token names the department; every query is filtered by it, and another department's ticket
answers 404 as if it did not exist.
"""

from __future__ import annotations

import datetime as dt
import hmac
from html import escape
from typing import Any
from urllib.parse import parse_qs

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from quality.tickets import STATUS_TEXT, TRANSITIONS, TicketError, list_tickets, ticket_detail, transition

COOKIE = "hub_steward"
ACTION_TEXT = {"acknowledge": "签收", "correct": "已在源系统更正", "dispute": "提出异议"}
STYLE = ("body{font-family:'Noto Sans CJK SC','Microsoft YaHei',sans-serif;margin:24px;color:#222}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}th{background:#f4f4f4}")


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


def create_app(engine: sa.Engine | None = None) -> FastAPI:
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
        body = await request.json() if await request.body() else {}
        return act(ticket_id, steward(request), action, (body or {}).get("note"))

    @app.get("/quality/login", response_class=HTMLResponse)
    def login_page() -> HTMLResponse:
        """The sign-in form."""
        return _page("部门数据专员登录", '<form method="post" action="/quality/login"><p>令牌 <input name="token" size="70"></p>'
                                      '<p><button>登录</button></p></form>')

    @app.post("/quality/login")
    async def login(request: Request):
        """Check the token and keep it in a cookie."""
        token = parse_qs((await request.body()).decode("utf-8")).get("token", [""])[0].strip()
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
        note = parse_qs((await request.body()).decode("utf-8")).get("note", [""])[0].strip() or None
        act(ticket_id, department, action, note)
        return RedirectResponse(f"/quality/tickets/{ticket_id}", status_code=303)

    return app
