"""Chinese pages of the exchange (Jinja2): catalogue, resource, access requests and answers, subject access, usage.

Sign-in: a department enters its API key once; the page session is a signed cookie `s1.<key id>.<expiry>.<mac>`
(HMAC under the hub's index key) — it never holds the key's secret, and a revoked key or disabled department ends
the session at once. Cookies are HttpOnly, SameSite=Strict (Secure when served over HTTPS); every form carries a
CSRF token bound to the session. Data subjects use their subject-access token (posted, never in a URL).
"""

from __future__ import annotations

import hmac
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from catalog import access
from catalog import resources as catalogue
from exchange.security import csrf_ok, csrf_token, subject_of_token

COOKIE = "hub_exchange"
SESSION_SECONDS = 8 * 3600
MAX_FORM_BYTES = 16 * 1024
TEMPLATES = Path(__file__).with_name("templates")


def _templates() -> Environment:
    """The Jinja2 environment (autoescaped)."""
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), trim_blocks=True,
                       lstrip_blocks=True)


def _mac(text: str) -> str:
    """HMAC under the hub's index key."""
    from hub.crypto import get_cipher

    return get_cipher().index_hash(text)


def session_cookie(key_id: str, now: float | None = None) -> str:
    """A signed session for an API key id."""
    expires = int((now or time.time()) + SESSION_SECONDS)
    return f"s1.{key_id}.{expires}.{_mac(f'exchange-session|{key_id}|{expires}')}"


def consumer_of_session(engine: sa.Engine, cookie: str | None) -> tuple[str, str] | None:
    """(consumer code, session) of a valid session cookie whose key is still live; None otherwise."""
    if not cookie or len(cookie) > 200:
        return None
    parts = cookie.split(".")
    if len(parts) != 4 or parts[0] != "s1" or not parts[2].isdigit() or int(parts[2]) < time.time():
        return None
    if not hmac.compare_digest(_mac(f"exchange-session|{parts[1]}|{parts[2]}"), parts[3]):
        return None
    snapshot = access.authoriser_for(engine).snapshot()
    found = snapshot.keys.get(parts[1])
    if found is None or found[0] not in snapshot.consumers:
        return None
    return found[0], cookie


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (first value of each field)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True).items()}


def add_pages(app: FastAPI, engine: sa.Engine) -> None:
    """Add the pages under /exchange/ to the exchange app."""
    env = _templates()

    def page(name: str, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
        """Render a template with the signed-in department and its CSRF token."""
        who = getattr(request.state, "page_user", None)
        html = env.get_template(name).render(user=who[0] if who else None,
                                             user_name=catalogue.department_name(who[0]) if who else None,
                                             csrf=csrf_token(who[1]) if who else "", **context)
        return HTMLResponse(html, status_code=status)

    def signed_in(request: Request) -> tuple[str, str] | None:
        """The session's department, remembered on the request."""
        who = consumer_of_session(engine, request.cookies.get(COOKIE))
        request.state.page_user = who
        return who

    def login_first(request: Request) -> RedirectResponse:
        """Send an anonymous visitor to the sign-in page."""
        return RedirectResponse(f"/exchange/login?next={quote(request.url.path)}", status_code=303)

    def refuse(request: Request, message: str, status: int = 400) -> HTMLResponse:
        """A Chinese error page."""
        return page("error.html", request, status, message=message)

    async def checked_form(request: Request) -> tuple[tuple[str, str] | None, dict[str, str]]:
        """The session and the form, only if the form's CSRF token matches the session."""
        who = signed_in(request)
        form = await _form(request)
        if who is None or not csrf_ok(who[1], form.get("csrf")):
            return None, form
        return who, form

    @app.get("/exchange", include_in_schema=False)
    @app.get("/exchange/", include_in_schema=False)
    def home() -> RedirectResponse:
        """The exchange's pages start at the catalogue."""
        return RedirectResponse("/exchange/catalogue", status_code=303)

    @app.get("/exchange/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/exchange/catalogue") -> HTMLResponse:
        """The sign-in form."""
        signed_in(request)
        return page("login.html", request, next=next if next.startswith("/exchange/") else "/exchange/catalogue")

    @app.post("/exchange/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        """Check the API key, set the session cookie."""
        form = await _form(request)
        key = (form.get("api_key") or "").strip()
        consumer = access.authoriser_for(engine).authenticate(key)
        if consumer is None:
            request.state.page_user = None
            return page("login.html", request, 401, next="/exchange/catalogue", message="接口密钥无效、已吊销或部门已停用")
        key_id = key[len(access.KEY_PREFIX):].split(".", 1)[0]
        target = form.get("next") or "/exchange/catalogue"
        response = RedirectResponse(target if target.startswith("/exchange/") else "/exchange/catalogue", status_code=303)
        response.set_cookie(COOKIE, session_cookie(key_id), max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/exchange")
        return response

    @app.post("/exchange/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        """End the session."""
        response = RedirectResponse("/exchange/login", status_code=303)
        response.delete_cookie(COOKIE, path="/exchange")
        return response

    @app.get("/exchange/catalogue", include_in_schema=False)
    def catalogue_page(request: Request, q: str = "", sharing_type: str = "") -> Response:
        """Browse and search the catalogue."""
        from catalog.search import search

        if signed_in(request) is None:
            return login_first(request)
        hits = search(q[:100], {"sharing_type": sharing_type[:16] or None}, limit=100)
        return page("catalogue.html", request, q=q[:100], sharing_type=sharing_type[:16], hits=hits,
                    sharing_types=catalogue.SHARING_TYPES)

    @app.get("/exchange/catalogue/{code}", include_in_schema=False)
    def resource_page(request: Request, code: str) -> Response:
        """One resource: metadata, items, and the request form."""
        if signed_in(request) is None:
            return login_first(request)
        resource = catalogue.resource_index().get(code)
        if resource is None:
            return refuse(request, "目录中没有此资源", 404)
        return page("resource.html", request, r=resource, purposes=catalogue.purposes())

    @app.post("/exchange/requests", include_in_schema=False)
    async def submit(request: Request) -> Response:
        """File a request for a resource's items (consumer)."""
        who, form = await checked_form(request)
        if who is None:
            return refuse(request, "会话已失效或表单校验失败，请重新登录后提交", 403)
        fields = [f for f in form.get("fields", "").replace("，", ",").split(",") if f.strip()]
        try:
            request_id = access.submit_request(
                engine, consumer_code=who[0], resource_code=form.get("resource", ""), fields=[f.strip() for f in fields],
                purpose_codes=[form.get("purpose_code", "")], purpose=form.get("purpose", ""),
                requested_by=(form.get("requested_by") or who[0])[:100], at=datetime.now(timezone.utc),
                verification_only=form.get("verification_only") == "1")
        except (access.AccessError, catalogue.CatalogueError) as error:
            return refuse(request, str(error), 422)
        return RedirectResponse(f"/exchange/requests?submitted={request_id}", status_code=303)

    @app.get("/exchange/requests", include_in_schema=False)
    def requests_page(request: Request, submitted: int | None = None) -> Response:
        """My requests (with deadlines), and requests to my resources awaiting my answer."""
        who = signed_in(request)
        if who is None:
            return login_first(request)
        index = catalogue.resource_index()
        mine = access.list_requests(engine, consumer_code=who[0])
        pending = [r for r in access.list_requests(engine, status="pending")
                   if who[0] == "dsj" or who[0] in {p["code"] for p in index.get(r["resource_code"], {}).get("providers", [])}]
        today = date.today()
        return page("requests.html", request, mine=mine, pending=pending, index=index, today=today, submitted=submitted,
                    default_expiry=(today + timedelta(days=365)).isoformat())

    @app.post("/exchange/requests/{request_id}/answer", include_in_schema=False)
    async def answer(request: Request, request_id: int) -> Response:
        """Approve (optionally fewer fields, with an expiry) or refuse with a reason (provider)."""
        who, form = await checked_form(request)
        if who is None:
            return refuse(request, "会话已失效或表单校验失败，请重新登录后提交", 403)
        now = datetime.now(timezone.utc)
        try:
            if form.get("decision") == "approve":
                expiry = form.get("expires") or ""
                expires = datetime.fromisoformat(expiry).replace(tzinfo=timezone.utc) if expiry else None
                fields = [f.strip() for f in form.get("fields", "").split(",") if f.strip()] or None
                access.approve_request(engine, request_id, decided_by=who[0], at=now, expires_at=expires, fields=fields,
                                       provider_code=who[0])
            elif form.get("decision") == "refuse":
                access.refuse_request(engine, request_id, decided_by=who[0], reason=form.get("reason", ""), at=now,
                                      provider_code=who[0])
            else:
                return refuse(request, "请选择同意或拒绝", 422)
        except (access.AccessError, ValueError) as error:
            return refuse(request, str(error), 422)
        return RedirectResponse("/exchange/requests", status_code=303)

    @app.get("/exchange/subject-access", include_in_schema=False)
    def subject_form(request: Request) -> HTMLResponse:
        """The data subject's form: paste the subject-access token."""
        signed_in(request)
        return page("subject_access.html", request, rows=None)

    @app.post("/exchange/subject-access", include_in_schema=False)
    async def subject_access(request: Request) -> HTMLResponse:
        """Who looked at my data, when and why (token posted, never in a URL)."""
        from catalog.audit import who_looked_at

        signed_in(request)
        form = await _form(request)
        key = subject_of_token(form.get("token"))
        if key is None:
            return page("subject_access.html", request, 401, rows=None, message="本人凭证无效或已过期")
        rows = [r for r in who_looked_at(engine, key) if r["operation"] != "subject_access"]
        return page("subject_access.html", request, rows=rows)

    @app.get("/exchange/usage", include_in_schema=False)
    def usage_page(request: Request, days: int = 30) -> Response:
        """Calls per resource and department, with the chart."""
        from catalog.usage import usage, usage_chart

        if signed_in(request) is None:
            return login_first(request)
        days = max(1, min(days, 3650))
        end = datetime.now(timezone.utc) + timedelta(days=1)
        result = usage(engine, end - timedelta(days=days + 1), end)
        chart = usage_chart(result["by_resource"], f"近 {days} 天共享调用（按资源）")
        return page("usage.html", request, result=result, chart=chart, days=days)


__all__ = ["COOKIE", "add_pages", "consumer_of_session", "session_cookie"]
