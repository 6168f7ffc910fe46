"""The exchange API (FastAPI, OpenAPI at /openapi.json, routes under /exchange/v1).

Every data route: API key (`X-API-Key: hubk_…` or `Authorization: Bearer hubk_…`) → purpose code (`X-Purpose`,
a code of catalog purposes) and case number (`X-Case-Number`, 事项编码/办件编号; percent-encode non-ASCII) →
authorise per resource and field → read the one subject → shape (only granted fields, masked per the decision,
verify-only fields never disclosed) → audit entry durable (catalog.audit group commit) → answer. Refusals and
failures are audited the same way; if the audit cannot be made durable the answer is 503 without data.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Annotated, Any
from urllib.parse import unquote

import orjson
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from catalog import access
from catalog import resources as catalogue
from catalog.audit import AuditEvent, AuditUnavailable, AuditWriter, who_looked_at, writer_for
from exchange import subjects as subj
from exchange.security import subject_of_token

log = logging.getLogger(__name__)

PREFIX = "/exchange/v1"
MAX_BATCH = 100
STEWARD = "dsj"  # the hub operator (省大数据管理局) may read any subject's access log on the subject's request
CASE = re.compile(r"^[0-9A-Za-z\u3400-\u9fff\uff08\uff09()\-_/.:#〔〕\[\]]{1,64}$")
USER = re.compile(r"^[0-9A-Za-z\u3400-\u9fff\-_.@]{1,64}$")
LICENCE_FIELDS = ("licence_name", "licence_number", "licence_id", "issuer", "valid_to", "status")
CREDIT_SECTIONS = {"black_list": "XY.red_black_list", "red_list": "XY.red_black_list",
                   "dishonest_debtor": "XY.dishonest_debtor", "abnormal_operations": "XY.abnormal_operation",
                   "penalties_3y": "XY.admin_penalty"}
SECURITY = [{"ApiKey": []}, {"Bearer": []}]
CALL_HEADERS = [
    {"name": "X-Purpose", "in": "header", "required": True, "schema": {"type": "string", "maxLength": 32},
     "description": "用途代码（事项用途），见目录 purposes，如 XZXK"},
    {"name": "X-Case-Number", "in": "header", "required": True, "schema": {"type": "string", "maxLength": 200},
     "description": "事项编码/办件编号（非 ASCII 字符须百分号编码）"},
    {"name": "X-User", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 200},
     "description": "经办人标识（缺省为密钥所属部门）"},
]


# ---------------------------------------------------------------------------------------------
# Bodies
# ---------------------------------------------------------------------------------------------


class _Body(BaseModel):
    """Request bodies refuse unknown members and oversized values."""

    model_config = ConfigDict(extra="forbid")


FieldList = Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)]


class PersonQuery(_Body):
    """Look up one person: the resident ID goes in the body, never in a URL (logs, proxies, history)."""

    resident_id: str = Field(max_length=32, description="公民身份号码（18位）")
    resource: str = Field("RK.basic", max_length=64, description="资源代码，如 RK.basic、RK.household")
    fields: FieldList | None = Field(None, description="信息项；缺省为资源的全部信息项")


class PersonBatch(_Body):
    """Look up several persons in one call (at most MAX_BATCH)."""

    resident_ids: Annotated[list[Annotated[str, Field(max_length=32)]], Field(min_length=1, max_length=MAX_BATCH)]
    resource: str = Field("RK.basic", max_length=64)
    fields: FieldList | None = None


class SubjectBody(_Body):
    """A subject: an 18-character resident ID or USCC."""

    subject: str = Field(max_length=32, description="公民身份号码或统一社会信用代码")


class VerifyBody(_Body):
    """Declared facts about a subject to verify (核验): answers match / mismatch / unknown, never values."""

    subject: str = Field(max_length=32)
    facts: Annotated[dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=200)]],
                     Field(min_length=1, max_length=20)]


# ---------------------------------------------------------------------------------------------
# Calls, errors, audit
# ---------------------------------------------------------------------------------------------


class Refused(Exception):
    """A call refused or failed: status, Chinese message, and what to audit."""

    def __init__(self, status: int, message: str, *, resource: str | None = None, subjects: tuple[str, ...] = (),
                 outcome: str = "refused") -> None:
        super().__init__(message)
        self.status, self.message, self.resource, self.subjects, self.outcome = status, message, resource, subjects, outcome


@dataclass(slots=True)
class Call:
    """Who calls, why, for which case (from the headers)."""

    consumer: str
    user: str
    purpose: str | None
    case: str | None
    operation: str


def _json(payload: Any, status: int = 200) -> Response:
    """A JSON response (orjson: dates ISO, Chinese unescaped)."""
    return Response(orjson.dumps(payload, default=str), status_code=status, media_type="application/json")


def _error(status: int, message: str, extra: dict[str, Any] | None = None) -> Response:
    """The error envelope."""
    return _json({"error": {"status": status, "message": message, **(extra or {})}}, status)


def _header(request: Request, name: str) -> str | None:
    """A header, percent-decoded (non-ASCII case numbers arrive encoded), NFKC, stripped; None if empty."""
    raw = request.headers.get(name)
    if raw is None:
        return None
    try:
        text = unicodedata.normalize("NFKC", unquote(raw, errors="strict")).strip()
    except UnicodeDecodeError:
        return "\x00"  # undecodable: fails validation below
    return text or None


def api_key(request: Request) -> str | None:
    """The API key from X-API-Key or Authorization: Bearer."""
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None


CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def _clean(text: str, limit: int) -> str:
    """Text safe to audit: no control characters or lone surrogates (PostgreSQL refuses NUL, and one refused entry
    would block its whole batch), bounded length."""
    return CONTROL.sub("\ufffd", text)[:limit]


def _now() -> datetime:
    """The call time (UTC)."""
    return datetime.now(timezone.utc)


class Exchange:
    """The exchange's state for one database: reader, authoriser, audit writer."""

    def __init__(self, engine: sa.Engine) -> None:
        """Bind to a database (the audit writer and authoriser are per process)."""
        self.engine = engine
        self.reader = subj.Reader(engine)
        self.authoriser = access.authoriser_for(engine)
        self._writer: AuditWriter | None = None

    async def audit(self, call: Call | None, outcome: str, *, resource: str | None = None,
                    subjects: tuple[str, ...] | list[str] = (), fields: list[str] | tuple[str, ...] = (),
                    reason: str | None = None, operation: str | None = None) -> None:
        """Log one call and wait until it is durable (AuditUnavailable propagates → 503)."""
        event = AuditEvent(consumer_code=call.consumer if call else "anonymous", user_id=_clean(call.user if call else "anonymous", 100),
                           operation=_clean(call.operation if call else operation or "unknown", 64), outcome=outcome, at=_now(),
                           purpose_code=_clean(call.purpose, 32) if call and call.purpose else None,
                           case_number=_clean(call.case, 100) if call and call.case else None,
                           resource_code=_clean(resource, 64) if resource else None, subjects=tuple(subjects),
                           fields=tuple(_clean(f, 100) for f in fields), reason=_clean(reason, 2000) if reason else None)
        writer = self._writer
        if writer is None or writer.closed or writer.pid != os.getpid():
            writer = self._writer = writer_for(self.engine)  # per process (a forked worker gets its own chain)
        await writer.log_async(event)

    def authenticate(self, request: Request, operation: str, need_purpose: bool = True) -> Call:
        """The call's consumer, user, purpose and case number; Refused (401/400) when missing or malformed."""
        consumer = self.authoriser.authenticate(api_key(request))
        if consumer is None:
            raise Refused(401, "未认证：请在 X-API-Key 或 Authorization: Bearer 中提供有效的接口密钥")
        user = _header(request, "x-user") or consumer
        call = Call(consumer, user if USER.match(user) else consumer, None, None, operation)
        request.state.call = call
        if not USER.match(user):
            raise Refused(400, "经办人标识（X-User）格式错误：仅限字母、数字、汉字及 -_.@，不超过64个字符")
        if not need_purpose:
            return call
        purpose, case = _header(request, "x-purpose"), _header(request, "x-case-number")
        # The authoriser's snapshot holds the purpose codes: catalogue.purposes() re-reads resources.yaml per call.
        if purpose is not None and len(purpose) <= 32 and purpose in self.authoriser.snapshot().purposes:
            call.purpose = purpose
        if case is not None and CASE.match(case):
            call.case = case
        if purpose is None:
            raise Refused(400, "未声明用途代码（X-Purpose），拒绝调用：每次调用须说明事项用途")
        if call.purpose is None:
            raise Refused(400, f"未知用途代码；可用：{'、'.join(catalogue.purposes())}")
        if case is None:
            raise Refused(400, "未提供事项编码/办件编号（X-Case-Number），拒绝调用")
        if call.case is None:
            raise Refused(400, "事项编码/办件编号格式错误：1–64个字母、数字、汉字或 -_/.:#（）")
        return call

    def decide(self, call: Call, resource: str, fields: list[str] | tuple[str, ...] | None) -> access.Decision:
        """The authorisation decision for one resource."""
        return self.authoriser.authorise(call.consumer, resource, fields, call.purpose)

    async def answer(self, call: Call, payload: dict[str, Any], *, resource: str | None, subjects: tuple[str, ...] | list[str],
                     fields: list[str] | tuple[str, ...], reason: str | None = None) -> Response:
        """Audit an allowed call durably, then answer it."""
        await self.audit(call, "allowed", resource=resource, subjects=subjects, fields=fields, reason=reason)
        return _json(payload)


def freshness_note(exchange: Exchange, library: str) -> dict[str, Any]:
    """How fresh the answer is: the library's newest data and last successful collection (last good state)."""
    try:
        fresh = exchange.reader.freshness().get(library, {})
    except sa.exc.DBAPIError:
        fresh = {}
    return {"library": library, **fresh}


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------


def create_exchange_api(engine: sa.Engine | None = None, app: FastAPI | None = None) -> FastAPI:
    """The exchange API routes (on `app` if given, e.g. the one that also serves the pages)."""
    if engine is None:
        from hub.db import engine_for

        engine = engine_for()
    app = app or FastAPI(title="政务数据共享交换接口", version="1.0", openapi_url="/openapi.json", docs_url="/docs", redoc_url=None)
    exchange = Exchange(engine)
    app.state.exchange = exchange
    extra = {"parameters": CALL_HEADERS, "security": SECURITY}
    meta = {"security": SECURITY}
    responses = {400: {"description": "缺少或错误的用途代码、办件编号"}, 401: {"description": "未认证"},
                 403: {"description": "未授权"}, 404: {"description": "未找到"}, 422: {"description": "参数不合法"},
                 503: {"description": "审计不可用，不予答复"}}

    async def refused(request: Request, error: Refused) -> Response:
        """Audit a refusal (or failure), then answer it."""
        call = getattr(request.state, "call", None)
        try:
            await exchange.audit(call, error.outcome, resource=error.resource, subjects=error.subjects, reason=error.message,
                                 operation=request.url.path[len(PREFIX):][:64])
        except AuditUnavailable:
            return _error(503, "审计服务暂不可用，调用不予答复，请稍后重试")
        return _error(error.status, error.message)

    app.add_exception_handler(Refused, refused)  # type: ignore[arg-type]

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        """Bad input: 422 in Chinese (audited like every call on the API)."""
        problems = [{"location": ".".join(str(p) for p in e.get("loc", ()))[:100], "problem": _problem_zh(e)}
                    for e in error.errors()[:10]]
        message = "请求参数不合法：" + "；".join(f"{p['location']} {p['problem']}" for p in problems)
        if request.url.path.startswith(PREFIX):
            call = getattr(request.state, "call", None) or _quiet_call(exchange, request)
            try:
                await exchange.audit(call, "refused", reason=message, operation=request.url.path[len(PREFIX):][:64])
            except AuditUnavailable:
                return _error(503, "审计服务暂不可用，调用不予答复，请稍后重试")
        return _error(422, message, {"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        """404/405 and friends in Chinese."""
        messages = {404: "接口不存在", 405: "不支持该请求方法"}
        message = messages.get(error.status_code, str(error.detail)) if error.detail in (None, "Not Found", "Method Not Allowed") else str(error.detail)
        if request.url.path.startswith(PREFIX):
            try:
                await exchange.audit(_quiet_call(exchange, request), "refused", reason=message,
                                     operation=request.url.path[len(PREFIX):][:64])
            except AuditUnavailable:
                return _error(503, "审计服务暂不可用，调用不予答复，请稍后重试")
        return _error(error.status_code, message)

    @app.exception_handler(AuditUnavailable)
    async def audit_down(request: Request, error: AuditUnavailable) -> Response:
        """The audit could not be made durable: never answer with data."""
        return _error(503, "审计服务暂不可用，调用不予答复，请稍后重试")

    @app.exception_handler(Exception)
    async def crashed(request: Request, error: Exception) -> Response:
        """An unexpected failure: audited as an error, answered 500 without a traceback."""
        log.exception("交换接口内部错误 exchange internal error")
        call = getattr(request.state, "call", None)
        try:
            await exchange.audit(call, "error", reason=f"内部错误：{type(error).__name__}", operation=request.url.path[len(PREFIX):][:64])
        except AuditUnavailable:
            return _error(503, "审计服务暂不可用，调用不予答复，请稍后重试")
        return _error(500, "服务内部错误，已记录，请稍后重试")

    # -- persons and companies ------------------------------------------------------------------

    @app.post(f"{PREFIX}/persons/query", tags=["查询"], summary="按公民身份号码查询自然人（仅返回授权信息项）",
              openapi_extra=extra, responses=responses)
    async def person_query(request: Request, body: PersonQuery) -> Response:
        """One person's granted fields of one population resource, masked as the grant says."""
        call = exchange.authenticate(request, "person_query")
        payload, key, returned = person_lookup(exchange, call, body.resident_id, body.resource, body.fields)
        return await exchange.answer(call, payload, resource=body.resource, subjects=(key,), fields=returned)

    @app.post(f"{PREFIX}/persons/batch", tags=["查询"], summary=f"批量查询自然人（每次至多 {MAX_BATCH} 人）",
              openapi_extra=extra, responses=responses)
    async def person_batch(request: Request, body: PersonBatch) -> Response:
        """Several persons, one resource; malformed IDs are answered per item."""
        call = exchange.authenticate(request, "person_batch")
        decision = _allowed(exchange, call, body.resource, body.fields, None, "RK.")
        if decision.verification_only:
            raise Refused(403, "该授权仅限核验，请使用核验接口 /verify", resource=body.resource)
        results, keys, returned = [], [], set()
        for text in body.resident_ids:
            try:
                rid, key = subj.person_key(text)
            except subj.BadSubject as error:
                results.append({"found": False, "error": str(error)})
                continue
            keys.append(key)
            row = exchange.reader.person(key)
            if row is None:
                results.append({"resident_id_masked": rid[:6] + "*" * 8 + rid[-4:], "found": False})
                continue
            data, names = subj.shape(row, decision, subj.PERSON_ITEMS)
            returned.update(names)
            results.append({"resident_id_masked": rid[:6] + "*" * 8 + rid[-4:], "found": True, "data": data})
        payload = {"resource": body.resource, "results": results, "masked_fields": list(decision.masked_fields),
                   "denied_fields": list(decision.fields_denied), "freshness": freshness_note(exchange, "population")}
        return await exchange.answer(call, payload, resource=body.resource, subjects=keys,
                                     fields=[f for f in decision.fields_granted if f in returned])

    @app.get(f"{PREFIX}/companies/{{uscc}}", tags=["查询"], summary="按统一社会信用代码查询法人（仅返回授权信息项）",
             openapi_extra=extra, responses=responses)
    async def company(request: Request, uscc: str, resource: str = "FR.registration", fields: str | None = None) -> Response:
        """One legal entity's granted fields of one legal-entity resource (`fields` comma-separated)."""
        call = exchange.authenticate(request, "company_query")
        try:
            code = subj.uscc(uscc)
        except subj.BadSubject as error:
            raise Refused(422, str(error), resource=resource[:64]) from None
        asked = _field_list(fields)
        decision = _allowed(exchange, call, resource, asked, code, "FR.")
        if decision.verification_only:
            raise Refused(403, "该授权仅限核验，请使用核验接口 /verify", resource=resource, subjects=(code,))
        row = exchange.reader.entity(code)
        if row is None:
            raise Refused(404, "法人库中没有此主体", resource=resource, subjects=(code,))
        data, returned = subj.shape(row, decision, subj.ENTITY_ITEMS)
        payload = {"resource": resource, "subject": {"kind": "法人和其他组织", "uscc": code}, "data": data,
                   "masked_fields": list(decision.masked_fields), "verify_only_fields": list(decision.verify_fields),
                   "denied_fields": list(decision.fields_denied), "decision": decision.reason_zh,
                   "freshness": freshness_note(exchange, "legal_entity")}
        return await exchange.answer(call, payload, resource=resource, subjects=(code,), fields=returned)

    # -- materials, licences, credit ------------------------------------------------------------

    @app.post(f"{PREFIX}/materials", tags=["免于提交材料"], summary="申请人免于提交的证照与材料（库中已有）",
              openapi_extra=extra, responses=responses)
    async def materials(request: Request, body: SubjectBody) -> Response:
        """Everything the libraries hold for the subject that the counter may rely on instead of paper."""
        call = exchange.authenticate(request, "materials")
        kind, shown, key = _subject(body.subject)
        found: list[dict[str, Any]] = []
        used: list[str] = []
        if kind == "person":
            row = exchange.reader.person(key)
            for resource, name, present in (("RK.basic", "居民身份证信息（身份证明）", row is not None),
                                            ("RK.household", "户口簿信息（户籍证明）", row is not None and row["region_code"] is not None),
                                            ("RK.marriage", "婚姻状况证明", row is not None and row["marital_status"] is not None)):
                if present and exchange.decide(call, resource, None).allowed:
                    found.append({"material": name, "kind": "基础库信息", "resource": resource})
                    used.append(f"{resource}:*")
        else:
            row = exchange.reader.entity(key)
            if row is not None and exchange.decide(call, "FR.registration", None).allowed:
                found.append({"material": "营业执照（法人登记信息）", "kind": "基础库信息", "resource": "FR.registration",
                              "name": row["name"], "status": row["status"]})
                used.append("FR.registration:*")
        today = date.today()
        for lic in exchange.reader.licences(kind, key):
            resource = f"DZZZ.{lic['source_id']}"
            decision = exchange.decide(call, resource, LICENCE_FIELDS)
            if not decision.allowed or decision.verification_only:
                continue
            until = lic.get("valid_until")
            in_force = str(lic.get("status")) in ("1", "有效") and (until is None or until >= today)
            found.append({"material": lic["licence_name"], "kind": "电子证照", "resource": resource,
                          "licence_id": lic["licence_id"], "licence_number": lic["licence_number"], "issuer": lic["issuer"],
                          "valid_to": until, "status": subj_status(lic.get("status")), "usable": in_force})
            used.append(f"{resource}:licence_id")
        credit = exchange.reader.credit(kind, key)
        if credit and exchange.decide(call, "XY.admin_licence", ("record_type",)).allowed:
            found.append({"material": "信用记录（信用库，可替代信用报告）", "kind": "基础库信息", "resource": "XY.*",
                          "records": len(credit)})
        usable = [m["material"] for m in found if m.get("usable", True)]
        payload = {"subject": shown, "need_not_bring": usable, "materials": found,
                   "notice": ("申请人无需提交：" + "、".join(usable)) if usable else "库中暂无可替代的材料，请申请人按告知承诺或提交材料办理",
                   "freshness": [freshness_note(exchange, lib) for lib in ("population" if kind == "person" else "legal_entity", "licence", "credit")]}
        return await exchange.answer(call, payload, resource="DZZZ.*", subjects=(key,), fields=used)

    @app.get(f"{PREFIX}/licences/{{licence_id}}/verify", tags=["证照"], summary="验证电子证照（状态与签章）",
             openapi_extra=extra, responses=responses)
    async def licence_verify(request: Request, licence_id: str) -> Response:
        """Status and seal of one licence (licences.verify)."""
        from hub.models import Licence
        from licences.verify import verify_licence

        call = exchange.authenticate(request, "licence_verify")
        text = unicodedata.normalize("NFKC", licence_id).strip().upper()
        if not re.fullmatch(r"[0-9A-Z.]{10,200}", text):
            raise Refused(422, "证照标识格式错误（GB/T 36904：1.2.156.3005.2.…）")
        table = Licence.__table__
        rows = exchange.reader.rows(sa.select(table.c.source_id, table.c.holder_person_id, table.c.holder_code)
                                    .where(table.c.licence_id == text))
        if not rows:
            raise Refused(404, "电子证照库中没有此证照", subjects=(text,))
        resource = f"DZZZ.{rows[0]['source_id']}"
        holder = rows[0]["holder_person_id"] or rows[0]["holder_code"]
        subjects = (text, holder) if holder else (text,)
        decision = exchange.decide(call, resource, ("licence_id", "status"))
        if not decision.allowed:
            raise Refused(403, decision.reason_zh, resource=resource, subjects=subjects)
        verdict = verify_licence(exchange.engine, text, date.today())
        payload = {"licence_id": text, "valid": verdict.ok, "status": verdict.status, "reason": verdict.reason,
                   "seal_key_id": verdict.key_id, "freshness": freshness_note(exchange, "licence")}
        return await exchange.answer(call, payload, resource=resource, subjects=subjects, fields=("licence_id", "status"))

    @app.post(f"{PREFIX}/credit/check", tags=["信用"], summary="审批用信用核查（红黑名单、失信被执行人、经营异常、三年内处罚）",
              openapi_extra=extra, responses=responses)
    async def credit_check(request: Request, body: SubjectBody) -> Response:
        """The credit summary of a subject, each section only where the consumer may read that resource."""
        from libraries.views import SubjectNotFound, ViewError, credit_summary

        call = exchange.authenticate(request, "credit_check")
        kind, shown, key = _subject(body.subject)
        allowed = {section: exchange.decide(call, code, ("record_type",)).allowed for section, code in CREDIT_SECTIONS.items()}
        if not any(allowed.values()):
            raise Refused(403, "无权查询信用库", resource="XY.*", subjects=(key,))
        try:
            summary = credit_summary(exchange.engine, body.subject.strip())
        except SubjectNotFound:
            raise Refused(404, "各基础库中均没有此主体", resource="XY.*", subjects=(key,)) from None
        except ViewError as error:
            raise Refused(422, str(error), resource="XY.*", subjects=(key,)) from None
        out = {section: summary[section] for section, ok in allowed.items() if ok}
        flags = {"black_list": out.get("black_list", {}).get("active"), "red_list": out.get("red_list", {}).get("active"),
                 "dishonest_debtor": out.get("dishonest_debtor", {}).get("active"),
                 "abnormal_operations": out.get("abnormal_operations", {}).get("listed"),
                 "penalties_3y": (out.get("penalties_3y") or {}).get("count")}
        payload = {"subject": summary["subject"], "as_of": summary["as_of"], "flags": flags, **out,
                   "freshness": freshness_note(exchange, "credit")}
        return await exchange.answer(call, payload, resource="XY.*", subjects=(key,),
                                     fields=[f"{CREDIT_SECTIONS[s]}:{s}" for s in out])

    # -- verification without disclosure ----------------------------------------------------------

    @app.post(f"{PREFIX}/verify", tags=["核验"], summary="核验申报事项（只回答一致/不一致/未知，不返回库中数值）",
              openapi_extra=extra, responses=responses)
    async def verify_facts(request: Request, body: VerifyBody) -> Response:
        """Per declared fact: match / mismatch / unknown, or denied without a grant; stored values never leave."""
        call = exchange.authenticate(request, "verify")
        kind, shown, key = _subject(body.subject)
        table = subj.PERSON_FACTS if kind == "person" else subj.ENTITY_FACTS
        row = exchange.reader.person(key) if kind == "person" else exchange.reader.entity(key)
        getters = subj.PERSON_ITEMS if kind == "person" else subj.ENTITY_ITEMS
        results: dict[str, str] = {}
        checked: list[str] = []
        for fact, declared in body.facts.items():
            if fact == subj.LICENCE_FACT:
                results[fact] = _verify_licence_number(exchange, call, kind, key, declared)
            elif fact not in table:
                results[fact] = "unsupported"
            else:
                resource, item = table[fact]
                decision = exchange.decide(call, resource, (item,))
                if not decision.allowed:
                    results[fact] = "denied"
                    continue
                results[fact] = "unknown" if row is None else subj.compare(item, declared, getters[item][0](row))
            if results[fact] in ("match", "mismatch", "unknown"):
                checked.append(fact)
        if not checked:
            raise Refused(403, "所申报的事项均无核验授权或不受支持：" + "、".join(f"{k}={v}" for k, v in results.items()),
                          subjects=(key,))
        payload = {"subject": shown if kind == "entity" else shown[:6] + "*" * 8 + shown[-4:], "results": results,
                   "notice": "核验只回答一致（match）、不一致（mismatch）或未知（unknown），不返回库中数值",
                   "freshness": freshness_note(exchange, "population" if kind == "person" else "legal_entity")}
        return await exchange.answer(call, payload, resource="RK.*" if kind == "person" else "FR.*", subjects=(key,),
                                     fields=[f"verify:{f}" for f in checked])

    # -- subject access, usage, catalogue ---------------------------------------------------------

    @app.get(f"{PREFIX}/subject-access", tags=["本人查询"], summary="谁在何时为何查看了我的数据",
             openapi_extra={"parameters": [
                 {"name": "X-Subject-Token", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 300},
                  "description": "本人凭证（sat1.…，经实名核验后签发）"},
                 {"name": "X-Subject", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 32},
                  "description": "数据专员代本人查询时的主体代码（须使用省大数据管理局的密钥）"}]},
             responses=responses)
    async def subject_access(request: Request) -> Response:
        """Authenticated as the subject (X-Subject-Token) or as the hub's steward (dsj key + X-Subject)."""
        token = request.headers.get("x-subject-token")
        if token:
            key = subject_of_token(token)
            if key is None:
                raise Refused(401, "本人凭证无效或已过期")
            call = Call("data-subject", "本人", None, None, "subject_access")
            request.state.call = call
        else:
            call = exchange.authenticate(request, "subject_access", need_purpose=False)
            if call.consumer != STEWARD:
                raise Refused(403, "仅本人（持本人凭证）或省大数据管理局数据专员可查询访问记录")
            _, _, key = _subject(request.headers.get("x-subject") or "")
        rows = who_looked_at(exchange.engine, key, limit=1000)
        payload = {"subject": key, "count": len(rows), "accesses": [
            {"at": r["at"], "department": r["consumer_name"], "department_code": r["consumer_code"], "user": r["user_id"],
             "purpose": r["purpose"], "case_number": r["case_number"], "resource": r["resource_name"],
             "fields": r["fields"], "outcome": r["outcome"]} for r in rows if r["operation"] != "subject_access"]}
        return await exchange.answer(call, payload, resource=None, subjects=(key,), fields=())

    @app.get(f"{PREFIX}/usage", tags=["统计"], summary="按资源、部门的调用统计", openapi_extra=meta, responses=responses)
    async def usage_stats(request: Request, start: date | None = None, end: date | None = None) -> Response:
        """Calls per resource and department in [start, end] (default: the last 30 days)."""
        from catalog.usage import usage

        call = exchange.authenticate(request, "usage", need_purpose=False)
        first, last = _period(start, end)
        result = usage(exchange.engine, first, last)
        return await exchange.answer(call, result, resource=None, subjects=(), fields=())

    @app.get(f"{PREFIX}/usage/chart.svg", tags=["统计"], summary="调用统计图（SVG）", openapi_extra=meta, responses=responses)
    async def usage_svg(request: Request, start: date | None = None, end: date | None = None, by: str = "resource") -> Response:
        """The usage bars as SVG (by resource or by department)."""
        from catalog.usage import usage, usage_chart

        call = exchange.authenticate(request, "usage", need_purpose=False)
        first, last = _period(start, end)
        result = usage(exchange.engine, first, last)
        rows, label = (result["by_consumer"], "consumer_name") if by == "department" else (result["by_resource"], "resource_name")
        svg = usage_chart(rows, f"共享调用统计 {first:%Y-%m-%d} 至 {(last - timedelta(days=1)):%Y-%m-%d}", label)
        await exchange.audit(call, "allowed")
        return Response(svg, media_type="image/svg+xml")

    @app.get(f"{PREFIX}/catalogue", tags=["目录"], summary="检索共享目录", openapi_extra=meta, responses=responses)
    async def catalogue_search(request: Request, q: str = "", sharing_type: str | None = None,
                               provider_code: str | None = None) -> Response:
        """Resources matching a query (metadata only: no subject data)."""
        from catalog.search import search

        call = exchange.authenticate(request, "catalogue", need_purpose=False)
        hits = search(q[:100], {"sharing_type": sharing_type, "provider_code": provider_code}, limit=50)
        payload = {"query": q[:100], "results": [{"code": h["code"], "name": h["name"], "score": h["score"],
                                                  "sharing_type": h["resource"]["sharing_type"],
                                                  "provider": h["resource"]["provider_name"]} for h in hits]}
        return await exchange.answer(call, payload, resource=None, subjects=(), fields=())

    @app.get(f"{PREFIX}/catalogue/{{code}}", tags=["目录"], summary="共享目录中的一个资源", openapi_extra=meta,
             responses=responses)
    async def catalogue_resource(request: Request, code: str) -> Response:
        """One resource's metadata."""
        call = exchange.authenticate(request, "catalogue", need_purpose=False)
        resource = catalogue.resource_index().get(code)
        if resource is None:
            raise Refused(404, "目录中没有此资源")
        return await exchange.answer(call, resource, resource=code, subjects=(), fields=())

    return app


# ---------------------------------------------------------------------------------------------
# Helpers of the routes
# ---------------------------------------------------------------------------------------------


def person_lookup(exchange: Exchange, call: Call, resident_id: str, resource: str,
                  fields: list[str] | None) -> tuple[dict[str, Any], str, list[str]]:
    """The answer of POST /persons/query for an authenticated call: (payload, subject key, fields returned);
    Refused (audited by the caller's handler) when the ID is malformed, nothing may be returned or no one is found."""
    try:
        rid, key = subj.person_key(resident_id)
    except subj.BadSubject as error:
        raise Refused(422, str(error), resource=resource) from None
    decision = _allowed(exchange, call, resource, fields, key, "RK.")
    if decision.verification_only:
        raise Refused(403, "该授权仅限核验（只回答一致/不一致），请使用核验接口 /verify", resource=resource, subjects=(key,))
    row = exchange.reader.person(key)
    if row is None:
        raise Refused(404, "人口库中没有此人", resource=resource, subjects=(key,))
    data, returned = subj.shape(row, decision, subj.PERSON_ITEMS)
    payload = {"resource": resource, "subject": {"kind": "自然人", "resident_id_masked": rid[:6] + "*" * 8 + rid[-4:]},
               "data": data, "masked_fields": list(decision.masked_fields),
               "verify_only_fields": list(decision.verify_fields), "denied_fields": list(decision.fields_denied),
               "decision": decision.reason_zh, "freshness": freshness_note(exchange, "population")}
    return payload, key, returned


class FastLookup:
    """Pure-ASGI fast path for the hot route, POST /exchange/v1/persons/query, in front of the FastAPI app.

    It takes only the plain case — a small JSON body of exactly the documented shape, a valid key, purpose and case
    number, a well-formed ID, an allowed decision and a person found — and answers it through the same code as the
    FastAPI route (person_lookup, Exchange.answer: audited durably before the answer; 503 if the audit fails).
    Everything else (any refusal, bad input, an unexpected error) is handed to the FastAPI app with the body replayed,
    which answers and audits it exactly as before: nothing is audited twice because the fast path audits only the
    answer it sends. Saves Starlette routing, FastAPI's dependency solving and pydantic per lookup.
    """

    PATH = f"{PREFIX}/persons/query"

    def __init__(self, app: Any) -> None:
        """Wrap the exchange FastAPI app (its `state.exchange` is used)."""
        self.app = app
        self.exchange: Exchange = app.state.exchange
        self.state = app.state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Answer the plain lookup here, anything else in the FastAPI app."""
        if scope["type"] != "http" or scope["path"] != self.PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # disconnect: let the app see it
                await self.app(scope, _replay(b"".join(chunks), message), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        response = await self._fast(scope, body)
        if response is None:
            await self.app(scope, _replay(body), send)
        else:
            await response(scope, receive, send)

    async def _fast(self, scope: dict[str, Any], body: bytes) -> Response | None:
        """The answer of a plain lookup, or None to let the FastAPI route handle (and audit) the call."""
        try:
            parsed = orjson.loads(body) if 2 <= len(body) <= 4096 else None
        except orjson.JSONDecodeError:
            return None
        if type(parsed) is not dict or not parsed.keys() <= {"resident_id", "resource", "fields"}:
            return None
        resident_id, resource, fields = parsed.get("resident_id"), parsed.get("resource", "RK.basic"), parsed.get("fields")
        if type(resident_id) is not str or len(resident_id) > 32 or type(resource) is not str or len(resource) > 64:
            return None
        if fields is not None and (type(fields) is not list or len(fields) > 64
                                   or any(type(f) is not str or len(f) > 64 for f in fields)):
            return None
        # Only JSON bodies (FastAPI decides on other content types); a scope copy, so nothing the attempt stores on
        # request.state reaches the FastAPI app when it takes over.
        for name, value in scope["headers"]:
            if name == b"content-type":
                if value.split(b";", 1)[0].strip().lower() != b"application/json":
                    return None
                break
        else:
            return None
        request = Request({**scope, "state": {}})
        exchange = self.exchange
        try:
            call = exchange.authenticate(request, "person_query")
            payload, key, returned = person_lookup(exchange, call, resident_id, resource, fields)
        except Exception:  # noqa: BLE001 — refused or failed: the FastAPI route answers and audits it
            return None
        try:
            return await exchange.answer(call, payload, resource=resource, subjects=(key,), fields=returned)
        except AuditUnavailable:
            return _error(503, "审计服务暂不可用，调用不予答复，请稍后重试")


def _replay(body: bytes, then: dict[str, Any] | None = None) -> Any:
    """A receive that gives the buffered body once, then waits for (or returns) what came after."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if then is not None:
            return then
        import asyncio

        await asyncio.Event().wait()  # like a client that sends nothing more (the app only looks for a disconnect)
        return {"type": "http.disconnect"}

    return receive


def _quiet_call(exchange: Exchange, request: Request) -> Call | None:
    """The caller of a request that failed before its route ran (for the audit), if the key is valid."""
    consumer = exchange.authoriser.authenticate(api_key(request))
    if consumer is None:
        return None
    purpose, case = _header(request, "x-purpose"), _header(request, "x-case-number")
    return Call(consumer, consumer, purpose if purpose in exchange.authoriser.snapshot().purposes else None,
                case if case and CASE.match(case) else None, request.url.path[len(PREFIX):][:64])


def _problem_zh(error: dict[str, Any]) -> str:
    """A Chinese description of a pydantic validation error."""
    kind = str(error.get("type", ""))
    known = {"missing": "缺少必填项", "string_too_long": "过长", "too_long": "项数过多", "too_short": "项数不足",
             "extra_forbidden": "不允许的字段", "string_type": "应为字符串", "date_from_datetime_parsing": "应为 YYYY-MM-DD 日期",
             "date_parsing": "应为 YYYY-MM-DD 日期", "json_invalid": "JSON 格式错误", "model_attributes_type": "应为 JSON 对象",
             "list_type": "应为列表", "dict_type": "应为对象", "date_from_datetime_inexact": "应为 YYYY-MM-DD 日期"}
    return known.get(kind, "格式不正确")


def _field_list(text: str | None) -> list[str] | None:
    """Comma-separated fields (None for all); bounded."""
    if text is None or not text.strip():
        return None
    names = [f.strip() for f in text.split(",") if f.strip()]
    if len(names) > 64 or any(len(n) > 64 for n in names):
        raise Refused(422, "信息项过多或名称过长")
    return names


def _allowed(exchange: Exchange, call: Call, resource: str, fields: list[str] | None, subject: str | None,
             prefix: str) -> access.Decision:
    """The decision for a lookup; Refused 403 when nothing may be returned, 422 for a resource of another library."""
    subjects = (subject,) if subject else ()
    if not resource.startswith(prefix) or len(resource) > 64:
        raise Refused(422, f"此接口只查询 {prefix}* 资源", resource=resource[:64], subjects=subjects)
    decision = exchange.decide(call, resource, fields)
    if not decision.allowed:
        raise Refused(403, decision.reason_zh, resource=resource, subjects=subjects)
    return decision


def _subject(text: str) -> tuple[str, str, str]:
    """(kind, code, key) of a subject; Refused 422 when malformed."""
    try:
        return subj.subject_of(text)
    except subj.BadSubject as error:
        raise Refused(422, str(error)) from None


def subj_status(code: Any) -> str | None:
    """The Chinese label of a licence status code."""
    from libraries.views import code_label

    return None if code is None else code_label("licence_status", str(code))


def _verify_licence_number(exchange: Exchange, call: Call, kind: str, key: str, declared: str) -> str:
    """Whether the subject holds a licence with this number (only among licences the consumer may verify)."""
    wanted = subj.normalised(declared)
    licences = exchange.reader.licences(kind, key)
    visible = [lic for lic in licences if exchange.decide(call, f"DZZZ.{lic['source_id']}", ("licence_number",)).allowed]
    if not visible:
        return "unknown" if not licences else "denied"
    return "match" if any(subj.normalised(lic["licence_number"] or "") == wanted for lic in visible) else "mismatch"


def _period(start: date | None, end: date | None) -> tuple[datetime, datetime]:
    """[start, end + 1 day) in UTC; default the last 30 days; Refused when reversed or too long."""
    last = end or datetime.now(timezone.utc).date()
    try:
        first = start or last - timedelta(days=30)
    except OverflowError:
        raise Refused(422, "日期超出范围") from None
    if first > last:
        raise Refused(422, "起始日期晚于截止日期")
    if (last - first).days > 3660:
        raise Refused(422, "统计区间过长（至多十年）")
    try:
        return (datetime(first.year, first.month, first.day, tzinfo=timezone.utc),
                datetime(last.year, last.month, last.day, tzinfo=timezone.utc) + timedelta(days=1))
    except (OverflowError, ValueError):
        raise Refused(422, "日期超出范围") from None


__all__ = ["MAX_BATCH", "PREFIX", "Call", "Exchange", "FastLookup", "Refused", "create_exchange_api", "person_lookup"]
