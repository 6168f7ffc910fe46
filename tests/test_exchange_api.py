"""The exchange API over HTTP on SQLite and PostgreSQL: authorisation matrix, purposes and case numbers, masking,
verification without disclosure, hostile input, the audit guarantee and subject access."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from test_library_views import COMPANY, PERSON, STRANGER, build_dataset, insert, licence_record

from catalog import access
from catalog.audit import close_writers, verify
from catalog.resources import all_resources
from exchange.security import subject_token
from hub import db
from hub.crypto import get_cipher, new_keyring_document
from hub.models import AuditEntry, Licence
from libraries.licence import LIBRARY as LICENCE

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
DEPARTMENTS = ("renshe", "gongan", "minzheng", "scjg")
CASE = {"X-Purpose": "SHBZ", "X-Case-Number": "SB-2026-000123"}
HOUSEHOLD_ADDRESS = "武汉市江岸区一路1号"


@pytest.fixture
def hub(hub_db_url: str, hub_settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """A migrated database with the views' dataset, a licence of a real issuing source, four departments with keys."""
    monkeypatch.setenv("HUB_KEYRING", json.dumps(new_keyring_document()))
    get_cipher.cache_clear()
    access.reset_caches()
    db.upgrade(hub_db_url)
    engine = db.engine_for(hub_db_url)
    build_dataset(engine, get_cipher())
    key, record = licence_record("77", "武汉鑫达商贸有限公司", COMPANY, "001", date(2030, 1, 1), licence_name="食品经营许可证")
    rows = LICENCE.database_rows([key], [record])
    insert(engine, Licence.__table__, [{**rows[0], "source_id": "licence_scjg"}])
    keys = {}
    for code in (*DEPARTMENTS, "dsj"):
        access.register_consumer(engine, code, T0)
        keys[code] = access.issue_key(engine, code, T0)[1]
    from exchange.api import FastLookup, create_exchange_api
    from exchange.pages import add_pages

    app = create_exchange_api(engine)
    add_pages(app, engine)
    client = TestClient(FastLookup(app), raise_server_exceptions=False)  # as hub serve runs it: fast path in front
    yield {"engine": engine, "client": client, "keys": keys, "licence": key, "app": app}
    close_writers()
    access.reset_caches()
    get_cipher.cache_clear()
    db.dispose_engines()


def _h(hub: dict, dept: str, **extra: str) -> dict[str, str]:
    """Headers of a department's call."""
    return {"X-API-Key": hub["keys"][dept], **CASE, **extra}


def _person(hub: dict, dept: str, resource: str = "RK.basic", fields: list[str] | None = None, **headers: str):
    """POST /persons/query."""
    return hub["client"].post("/exchange/v1/persons/query", json={"resident_id": PERSON, "resource": resource, "fields": fields},
                              headers=_h(hub, dept, **headers))


def _audit_count(engine: sa.Engine) -> int:
    """Audit rows so far (after flushing)."""
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(AuditEntry.__table__)).scalar())


def test_authorisation_matrix_nothing_beyond_the_grant(hub: dict) -> None:
    """Every department × population/legal-entity resource × field: only granted fields come back, sensitive ones masked."""
    engine, client = hub["engine"], hub["client"]
    access.grant_access(engine, consumer_code="renshe", resource_code="RK.household", fields=["household_address"],
                        purpose_codes=["SHBZ"], granted_by="gongan", at=T0)
    calls = 0
    for resource in (r for r in all_resources() if r["code"].startswith(("RK.", "FR."))):
        for dept in DEPARTMENTS:
            for item in resource["items"]:
                field = item["name"]
                decision = access.authorise(dept, resource["code"], [field], "SHBZ", engine=engine)
                if resource["code"].startswith("RK."):
                    response = _person(hub, dept, resource["code"], [field])
                else:
                    response = client.get(f"/exchange/v1/companies/{COMPANY}", params={"resource": resource["code"], "fields": field},
                                          headers=_h(hub, dept))
                calls += 1
                assert response.status_code < 500
                body = response.json()
                if not decision.allowed:
                    assert response.status_code == 403, (dept, resource["code"], field, body)
                    assert "data" not in body
                    continue
                assert response.status_code == 200, (dept, resource["code"], field, body)
                assert set(body["data"]) <= set(decision.fields_granted)
                text = response.text
                if field not in decision.masked_fields:
                    continue
                assert PERSON not in text and "张伟" not in text and HOUSEHOLD_ADDRESS not in text
    # the clear household address only for the department with the grant
    assert _person(hub, "renshe", "RK.household", ["household_address"]).json()["data"]["household_address"] == HOUSEHOLD_ADDRESS
    assert _person(hub, "minzheng", "RK.household", ["household_address"]).status_code == 403
    # RK.basic without a grant: resident ID and name masked, clear never present
    full = _person(hub, "minzheng").json()
    assert full["data"]["resident_id"] != PERSON and full["data"]["name"] == "张*" and PERSON not in json.dumps(full)
    close_writers()
    assert _audit_count(engine) >= calls


def test_expired_and_revoked_grants_are_refused(hub: dict) -> None:
    engine = hub["engine"]
    grant = access.grant_access(engine, consumer_code="renshe", resource_code="RK.marriage", fields=["marital_status"],
                                purpose_codes=["SHBZ"], granted_by="gongan", at=T0)
    assert _person(hub, "renshe", "RK.marriage", ["marital_status"]).json()["data"] == {"marital_status": "20"}
    access.revoke_grant(engine, grant, revoked_by="gongan", reason="办件结束", at=T0)
    assert _person(hub, "renshe", "RK.marriage", ["marital_status"]).status_code == 403
    access.grant_access(engine, consumer_code="renshe", resource_code="RK.marriage", fields=["marital_status"],
                        purpose_codes=["SHBZ"], granted_by="gongan", at=T0, expires_at=datetime.now(timezone.utc) - timedelta(days=1))
    assert _person(hub, "renshe", "RK.marriage", ["marital_status"]).status_code == 403
    # a grant for another purpose does not cover this one
    access.grant_access(engine, consumer_code="renshe", resource_code="RK.marriage", fields=["marital_status"],
                        purpose_codes=["XZXK"], granted_by="gongan", at=T0)
    assert _person(hub, "renshe", "RK.marriage", ["marital_status"]).status_code == 403


def test_purpose_and_case_number_required_and_audited(hub: dict) -> None:
    client, engine = hub["client"], hub["engine"]
    body = {"resident_id": PERSON}
    cases = [({"X-API-Key": hub["keys"]["renshe"], "X-Case-Number": "A-1"}, 400, "用途"),
             ({"X-API-Key": hub["keys"]["renshe"], "X-Purpose": "SHBZ"}, 400, "办件编号"),
             ({"X-API-Key": hub["keys"]["renshe"], "X-Purpose": "NOPE", "X-Case-Number": "A-1"}, 400, "未知用途"),
             ({"X-Purpose": "SHBZ", "X-Case-Number": "A-1"}, 401, "未认证"),
             ({"X-API-Key": "hubk_x.y", "X-Purpose": "SHBZ", "X-Case-Number": "A-1"}, 401, "未认证")]
    for headers, status, words in cases:
        response = client.post("/exchange/v1/persons/query", json=body, headers=headers)
        assert response.status_code == status and words in response.json()["error"]["message"]
        assert PERSON not in response.text
    close_writers()
    with engine.connect() as connection:
        rows = connection.execute(sa.select(AuditEntry.outcome, AuditEntry.consumer_code)).all()
    assert len(rows) == len(cases) and {r.outcome for r in rows} == {"refused"}
    # a Chinese case number, percent-encoded, is accepted and logged as written
    response = client.post("/exchange/v1/persons/query", json=body, headers={
        "X-API-Key": hub["keys"]["renshe"], "X-Purpose": "SHBZ", "X-Case-Number": "%EF%BC%882026%EF%BC%89%E9%84%82%E7%A4%BE123"})
    assert response.status_code == 200
    close_writers()
    with engine.connect() as connection:
        assert connection.execute(sa.select(AuditEntry.case_number).where(AuditEntry.outcome == "allowed")).scalar() == "(2026)鄂社123"


HOSTILE = ["' OR 1=1 --", "1; DROP TABLE person;--", "../../etc/passwd", "..%2F..%2Fetc", "x" * 5000, "\x00", "a\x00b",
           "\u202e\u200b\ufeff", "𠜎𠜱", "11010519491231002X\x00", "%00", "<script>alert(1)</script>", "${jndi:ldap://x}", "\ud800"]


def test_hostile_input_never_causes_a_server_error(hub: dict) -> None:
    """SQL, traversal, huge, NUL and odd unicode in every parameter: 4xx, never 5xx, never a traceback."""
    client = hub["client"]
    for text in HOSTILE:
        safe = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        responses = [
            client.post("/exchange/v1/persons/query", json={"resident_id": safe}, headers=_h(hub, "renshe")),
            client.post("/exchange/v1/persons/query", json={"resident_id": PERSON, "resource": safe}, headers=_h(hub, "renshe")),
            client.post("/exchange/v1/persons/query", json={"resident_id": PERSON, "fields": [safe]}, headers=_h(hub, "renshe")),
            client.post("/exchange/v1/persons/batch", json={"resident_ids": [safe, PERSON]}, headers=_h(hub, "renshe")),
            client.get(f"/exchange/v1/companies/{quote(safe, safe='')}", headers=_h(hub, "renshe")),
            client.get(f"/exchange/v1/companies/{COMPANY}", params={"resource": safe, "fields": safe}, headers=_h(hub, "renshe")),
            client.get(f"/exchange/v1/licences/{quote(safe, safe='')}/verify", headers=_h(hub, "renshe")),
            client.post("/exchange/v1/verify", json={"subject": safe, "facts": {"name": safe}}, headers=_h(hub, "renshe")),
            client.post("/exchange/v1/verify", json={"subject": PERSON, "facts": {safe: safe}}, headers=_h(hub, "renshe")),
            client.post("/exchange/v1/credit/check", json={"subject": safe}, headers=_h(hub, "renshe")),
            client.post("/exchange/v1/materials", json={"subject": safe}, headers=_h(hub, "renshe")),
            client.get("/exchange/v1/catalogue", params={"q": safe}, headers=_h(hub, "renshe")),
            client.get("/exchange/v1/usage", params={"start": safe}, headers=_h(hub, "renshe")),
            client.get("/exchange/v1/subject-access", headers={"X-Subject-Token": safe.encode("utf-8")[:200]}),
        ]
        for header in ("X-Purpose", "X-Case-Number", "X-User", "X-API-Key"):
            value = safe.encode("utf-8")[:3000].replace(b"\x00", b"%00")
            responses.append(client.post("/exchange/v1/persons/query", json={"resident_id": PERSON},
                                         headers={**_h(hub, "renshe"), header: value}))
        for response in responses:
            assert 200 <= response.status_code < 500, (text[:30], response.request.url, response.text[:200])
            assert "Traceback" not in response.text
    big = hub["client"].post("/exchange/v1/persons/batch", json={"resident_ids": [PERSON] * 101}, headers=_h(hub, "renshe"))
    assert big.status_code == 422


def test_verification_only_grant_never_discloses(hub: dict) -> None:
    engine, client = hub["engine"], hub["client"]
    access.grant_access(engine, consumer_code="renshe", resource_code="RK.marriage", fields=["marital_status"],
                        purpose_codes=["SHBZ"], granted_by="gongan", at=T0, verification_only=True)
    lookup = _person(hub, "renshe", "RK.marriage", ["marital_status"])
    assert lookup.status_code == 403 and "核验" in lookup.json()["error"]["message"]
    answer = client.post("/exchange/v1/verify", headers=_h(hub, "renshe"), json={
        "subject": PERSON, "facts": {"marital_status": "已婚", "name": "张伟", "birth_date": "1990-01-03", "household_region": "420102"}})
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert results == {"marital_status": "match", "name": "match", "birth_date": "mismatch", "household_region": "denied"}
    assert "20" not in json.dumps(answer.json()["results"]) and "1990-01-02" not in answer.text and PERSON not in answer.text
    assert client.post("/exchange/v1/verify", headers=_h(hub, "renshe"),
                       json={"subject": STRANGER, "facts": {"name": "李四"}}).json()["results"] == {"name": "unknown"}
    company = client.post("/exchange/v1/verify", headers=_h(hub, "renshe"), json={
        "subject": COMPANY, "facts": {"legal_representative": "张伟", "status": "注销", "licence_number": "JY77"}}).json()
    assert company["results"] == {"legal_representative": "match", "status": "mismatch", "licence_number": "match"}


def test_materials_licence_verification_and_credit(hub: dict) -> None:
    client = hub["client"]
    materials = client.post("/exchange/v1/materials", json={"subject": COMPANY}, headers=_h(hub, "scjg")).json()
    assert "营业执照（法人登记信息）" in materials["need_not_bring"] and "食品经营许可证" in materials["need_not_bring"]
    assert materials["notice"].startswith("申请人无需提交")
    verdict = client.get(f"/exchange/v1/licences/{hub['licence']}/verify", headers=_h(hub, "scjg")).json()
    assert verdict["licence_id"] == hub["licence"] and verdict["valid"] is False and "签章" in verdict["reason"]  # unsealed
    credit = client.post("/exchange/v1/credit/check", json={"subject": COMPANY}, headers=_h(hub, "scjg")).json()
    assert set(credit["flags"]) == {"black_list", "red_list", "dishonest_debtor", "abnormal_operations", "penalties_3y"}
    assert credit["freshness"]["library"] == "credit"
    assert client.post("/exchange/v1/credit/check", json={"subject": STRANGER}, headers=_h(hub, "scjg")).status_code == 404


def test_every_answer_is_audited_chain_verifies_and_tampering_is_caught(hub: dict) -> None:
    engine, client = hub["engine"], hub["client"]
    answered = 0
    for dept in DEPARTMENTS:
        for resource in ("RK.basic", "RK.household", "RK.contact"):
            assert _person(hub, dept, resource).status_code in (200, 403)
            answered += 1
    for _ in range(5):
        client.post("/exchange/v1/persons/query", json={"resident_id": "bad"}, headers=_h(hub, "renshe"))
        answered += 1
    close_writers()
    assert _audit_count(engine) == answered
    assert verify(engine)["ok"] is True
    with engine.begin() as connection:
        connection.execute(sa.update(AuditEntry).where(AuditEntry.seq == 2).values(case_number="改过的"))
    report = verify(engine)
    assert report["ok"] is False and any("修改" in p["problem"] for p in report["problems"])


def test_subject_access_shows_the_calls(hub: dict) -> None:
    client = hub["client"]
    _person(hub, "renshe", **{"X-User": "wang5"})
    _person(hub, "minzheng", "RK.contact")  # refused: no grant; still visible to the subject
    token = subject_token(PERSON)
    seen = client.get("/exchange/v1/subject-access", headers={"X-Subject-Token": token}).json()
    assert [(a["department_code"], a["outcome"]) for a in seen["accesses"]] == [("minzheng", "refused"), ("renshe", "allowed")]
    assert seen["accesses"][1]["user"] == "wang5" and seen["accesses"][1]["case_number"] == CASE["X-Case-Number"]
    assert seen["accesses"][1]["purpose"] == "社会保障经办"
    forged = token[:-1] + ("1" if token.endswith("0") else "0")  # the signature's last hex digit changed
    assert client.get("/exchange/v1/subject-access", headers={"X-Subject-Token": forged}).status_code == 401
    assert client.get("/exchange/v1/subject-access", headers={"X-API-Key": hub["keys"]["renshe"], "X-Subject": PERSON}).status_code == 403
    steward = client.get("/exchange/v1/subject-access", headers={"X-API-Key": hub["keys"]["dsj"], "X-Subject": PERSON}).json()
    assert steward["count"] >= 2
    page = client.post("/exchange/subject-access", data={"token": token})
    assert page.status_code == 200 and "省人力资源和社会保障厅" in page.text and "wang5" in page.text


def test_usage_chart_and_openapi(hub: dict) -> None:
    client = hub["client"]
    _person(hub, "renshe")
    close_writers()
    stats = client.get("/exchange/v1/usage", headers={"X-API-Key": hub["keys"]["renshe"]}).json()
    assert any(r["resource_code"] == "RK.basic" for r in stats["by_resource"])
    svg = client.get("/exchange/v1/usage/chart.svg", headers={"X-API-Key": hub["keys"]["renshe"]})
    assert svg.status_code == 200 and svg.text.startswith("<svg")
    spec = client.get("/openapi.json").json()
    assert "/exchange/v1/persons/query" in spec["paths"] and "/exchange/v1/verify" in spec["paths"]


def test_fast_path_answers_exactly_as_the_route(hub: dict) -> None:
    """FastLookup (what hub serve runs) and the FastAPI route give the same answers, each audited once."""
    engine = hub["engine"]
    route = TestClient(hub["app"], raise_server_exceptions=False)
    access.grant_access(engine, consumer_code="renshe", resource_code="RK.household", fields=["household_address"],
                        purpose_codes=["SHBZ"], granted_by="gongan", at=T0)
    bodies = [{"resident_id": PERSON}, {"resident_id": PERSON, "resource": "RK.household", "fields": ["household_address"]},
              {"resident_id": PERSON, "resource": "RK.household"}, {"resident_id": STRANGER},
              {"resident_id": PERSON, "fields": ["name", "nope"]}, {"resident_id": "12345"}, {"resident_id": 1},
              {"resident_id": PERSON, "extra": 1}, {"resident_id": PERSON, "resource": "FR.registration"}]
    for dept in ("renshe", "minzheng"):
        for body in bodies:
            before = _audit_count(engine)
            fast = hub["client"].post("/exchange/v1/persons/query", json=body, headers=_h(hub, dept))
            slow = route.post("/exchange/v1/persons/query", json=body, headers=_h(hub, dept))
            assert fast.status_code == slow.status_code, (dept, body, fast.text, slow.text)
            fast_body, slow_body = fast.json(), slow.json()
            for answer in (fast_body, slow_body):
                if "freshness" in answer:
                    answer.pop("freshness")
            assert fast_body == slow_body, (dept, body)
            assert fast.headers["content-type"] == slow.headers["content-type"]
            close_writers()
            assert _audit_count(engine) == before + 2  # one entry per call, on either path
