"""The closed loop end to end, on SQLite and PostgreSQL: collect with defects → quarantine and tickets → the department
corrects at source → next collection → defect resolved, ticket verified, row loaded; disputes and a steward's decision."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from connectors.collect import collect
from connectors.connections import connection_json, env_var_name
from hub.crypto import get_cipher
from hub.db import engine_for, upgrade
from hub.models import (Person, QualityDefect, QualityRun, QualityTicket, QualityTicketEvent, QuarantinedRow,
                        SourceRun)
from libraries.load import load_pending
from quality.tickets import TicketError, decide, list_tickets, ticket_detail, transition
from test_quality_rules import rid

HJRK = """CREATE TABLE hjrk (rkid INTEGER PRIMARY KEY, gmsfhm VARCHAR(18), xm TEXT, xb TEXT, mz TEXT, csrq TEXT,
  hjdz_xzqh TEXT, hjdz TEXT, lxdh TEXT, hyzk TEXT, swrq TEXT, gxsj TIMESTAMP)"""
GOOD_LI = rid("19881111", 31)
BAD_LI = GOOD_LI[:-1] + ("0" if GOOD_LI[-1] != "0" else "1")


@pytest.fixture(params=["lookup", "scan"])
def key_reads(request, monkeypatch) -> str:
    """How the stage reads a source's earlier defects, conflicts and held rows: by the run's keys, or one scan."""
    from quality import store

    monkeypatch.setattr(store, "SCAN_FROM", 0 if request.param == "lookup" else 10**9)
    return request.param


@pytest.fixture
def gongan(tmp_path, monkeypatch, hub_settings, hub_db_url, key_reads):
    """A 公安 source with two clean people, a bad check character, a bad ethnicity code and a duplicate; a fresh hub DB."""
    monkeypatch.setenv("HUB_DATABASE_URL", hub_db_url)
    from hub.settings import get_settings

    get_settings.cache_clear()
    upgrade(hub_db_url)
    source = sa.create_engine(f"sqlite:///{tmp_path / 'gongan.sqlite'}")
    with source.begin() as c:
        c.exec_driver_sql(HJRK)
        c.exec_driver_sql("INSERT INTO hjrk VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", [
            (1, rid("19900102", 11), "张伟", "1", "01", "1990-01-02", "420102", "武汉市江岸区一路1号", None, "10", None, "2026-01-01 08:00:00"),
            (2, rid("19851231", 22), "王芳", "2", "01", "19851231", "420102", "武汉市江岸区二路2号", None, "20", None, "2026-01-01 08:10:00"),
            (3, BAD_LI, "李四", "1", "01", "1988-11-11", "420102", "武汉市江岸区三路3号", None, "10", None, "2026-01-01 08:20:00"),
            (4, rid("19700101", 33), "赵六", "1", "66", "1970-01-01", "420102", "武汉市江岸区四路4号", None, "20", None, "2026-01-01 08:30:00"),
            (5, rid("19900102", 11), "张伟", "1", "01", "1990年1月2日", "420102", "武汉市江岸区一路1号", None, "10", None, "2026-01-01 08:40:00"),
        ])
    monkeypatch.setenv(env_var_name("gongan_hjrk"), connection_json(source.url))
    yield source, engine_for(hub_db_url)
    source.dispose()


def _ticket(engine, rule_id: str):
    """The latest ticket of a rule."""
    with sa.orm.Session(engine) as session:
        return session.scalars(sa.select(QualityTicket).where(QualityTicket.rule_id == rule_id).order_by(QualityTicket.id.desc())).first()


def test_corrected_record_closes_its_ticket_and_leaves_quarantine(gongan) -> None:
    source, hub = gongan
    collect("gongan_hjrk", "run-1")
    assert load_pending("population") == {"gongan_hjrk/run-1": {"rows": 5, "loaded": 2, "quarantined": 2, "merged": 1}}
    cipher = get_cipher()
    with sa.orm.Session(hub) as session:
        held = {q.source_key: q for q in session.scalars(sa.select(QuarantinedRow))}
        assert set(held) == {"3", "4"} and all(q.status == "quarantined" for q in held.values())
        assert held["3"].rule_ids == "POP-ID-resident_id" and "校验位错误" in held["3"].reasons
        assert json.loads(cipher.decrypt(held["3"].row_enc))["name"] == "李四"  # kept whole, encrypted
        assert held["4"].subject_key == cipher.index_hash(rid("19700101", 33))
        run = session.scalars(sa.select(SourceRun)).one()
        assert (run.rows_loaded, run.rows_rejected) == (3, 2)  # loaded + merged duplicate, quarantined
        checked = session.scalars(sa.select(QualityRun)).one()
        assert (checked.rows_in, checked.rows_loaded, checked.rows_quarantined, checked.rows_merged) == (5, 2, 2, 1)
        assert checked.status == "loaded" and 0 < checked.score < 100
    queue = {t["rule"]: t for t in list_tickets(hub, "gongan")}
    assert set(queue) == {"POP-ID-resident_id", "POP-CODE-ethnicity", "POP-DUP"}
    assert all(t["status"] == "open" and t["defects_open"] == 1 for t in queue.values())
    assert list_tickets(hub, "scjg") == []  # another department sees nothing of gongan's queue
    ticket = queue["POP-ID-resident_id"]["id"]
    with pytest.raises(TicketError, match="不存在或不属于本部门"):
        transition(hub, ticket, "scjg", "acknowledge", "someone", run.finished_at)
    transition(hub, ticket, "gongan", "acknowledge", "公安专员", run.finished_at)
    transition(hub, ticket, "gongan", "correct", "公安专员", run.finished_at, "已在户籍系统更正")
    with pytest.raises(TicketError, match="不能执行"):
        transition(hub, ticket, "gongan", "acknowledge", "公安专员", run.finished_at)

    # The department corrects the number at source; the next incremental collection brings the record back.
    with source.begin() as c:
        c.exec_driver_sql("UPDATE hjrk SET gmsfhm = ?, gxsj = '2026-01-02 09:00:00' WHERE rkid = 3", (GOOD_LI,))
    collect("gongan_hjrk", "run-2")
    assert load_pending("population") == {"gongan_hjrk/run-2": {"rows": 1, "loaded": 1, "quarantined": 0, "merged": 0}}
    verified = _ticket(hub, "POP-ID-resident_id")
    assert verified.id == ticket and verified.status == "verified" and verified.defects_open == 0 and verified.closed_at
    detail = ticket_detail(hub, ticket, "gongan")
    assert [e["to"] for e in detail["history"]] == ["open", "acknowledged", "corrected", "verified"]
    assert detail["history"][-1]["actor"] == "system" and detail["defects"][0]["resolved_run"] == "run-2"
    with sa.orm.Session(hub) as session:
        released = session.scalars(sa.select(QuarantinedRow).where(QuarantinedRow.source_key == "3")).one()
        assert released.status == "released" and released.released_run_id == "run-2"
        assert session.get(Person, cipher.index_hash(GOOD_LI)).name == "李四"
    assert _ticket(hub, "POP-CODE-ethnicity").status == "open"  # untouched records keep their defects
    collect("gongan_hjrk", "run-3")  # nothing new at source: an empty run is checked and loaded like any other
    assert load_pending("population") == {"gongan_hjrk/run-3": {"rows": 0, "loaded": 0, "quarantined": 0, "merged": 0}}
    assert _ticket(hub, "POP-CODE-ethnicity").defects_open == 1


def test_disputed_defect_is_kept_flagged_and_a_steward_decides(gongan) -> None:
    _, hub = gongan
    collect("gongan_hjrk", "run-1")
    load_pending("population")
    ticket = _ticket(hub, "POP-CODE-ethnicity")
    at = ticket.opened_at
    with pytest.raises(TicketError, match="理由"):
        transition(hub, ticket.id, "gongan", "dispute", "公安专员", at)
    transition(hub, ticket.id, "gongan", "dispute", "公安专员", at, "66 为本省试行的民族细分代码")
    with sa.orm.Session(hub) as session:
        defect = session.scalars(sa.select(QualityDefect).where(QualityDefect.ticket_id == ticket.id)).one()
        assert defect.disputed and defect.status == "open"
    outcome = decide(hub, ticket.id, accept=True, actor="枢纽数据专员", at=at, note="采纳，待标准修订")
    assert outcome["released_rows"] == 1
    assert load_pending("population") == {"released_from_quarantine": 1}
    cipher = get_cipher()
    with sa.orm.Session(hub) as session:
        assert session.get(Person, cipher.index_hash(rid("19700101", 33))).ethnicity == "66"
        defect = session.scalars(sa.select(QualityDefect).where(QualityDefect.ticket_id == ticket.id)).one()
        assert defect.status == "waived" and defect.disputed  # kept, flagged, decided
        closed = session.get(QualityTicket, ticket.id)
        assert closed.status == "verified" and closed.decision == "accepted" and closed.decided_by == "枢纽数据专员"
        assert session.scalars(sa.select(QuarantinedRow).where(QuarantinedRow.source_key == "4")).one().status == "released"
        events = session.scalar(sa.select(sa.func.count()).select_from(QualityTicketEvent).where(QualityTicketEvent.ticket_id == ticket.id))
        assert events >= 3
    assert load_pending("population") == {}  # nothing pending: a rerun changes nothing


def test_rejected_dispute_goes_back_to_the_department(gongan) -> None:
    _, hub = gongan
    collect("gongan_hjrk", "run-1")
    load_pending("population")
    ticket = _ticket(hub, "POP-DUP")
    transition(hub, ticket.id, "gongan", "dispute", "公安专员", ticket.opened_at, "不是重复")
    assert decide(hub, ticket.id, accept=False, actor="枢纽数据专员", at=ticket.opened_at)["decision"] == "rejected"
    assert _ticket(hub, "POP-DUP").status == "open"
    with pytest.raises(TicketError, match="只有"):
        decide(hub, ticket.id, accept=True, actor="枢纽数据专员", at=ticket.opened_at)


def test_steward_api_and_pages_show_only_the_own_department(gongan) -> None:
    from fastapi.testclient import TestClient

    from quality.api import create_app, steward_token

    _, hub = gongan
    collect("gongan_hjrk", "run-1")
    load_pending("population")
    client = TestClient(create_app(hub))
    mine = {"Authorization": f"Bearer {steward_token('gongan')}"}
    theirs = {"Authorization": f"Bearer {steward_token('scjg')}"}
    assert client.get("/api/quality/tickets").status_code == 401
    assert client.get("/api/quality/tickets", headers={"Authorization": "Bearer forged"}).status_code == 401
    queue = client.get("/api/quality/tickets", headers=mine).json()
    assert {t["rule"] for t in queue} == {"POP-ID-resident_id", "POP-CODE-ethnicity", "POP-DUP"}
    assert client.get("/api/quality/tickets", headers=theirs).json() == []
    ticket = queue[0]["id"]
    assert client.get(f"/api/quality/tickets/{ticket}", headers=theirs).status_code == 404
    assert client.post(f"/api/quality/tickets/{ticket}/acknowledge", headers=theirs).status_code == 404
    assert client.post(f"/api/quality/tickets/{ticket}/dispute", headers=mine, json={}).status_code == 409  # a reason is required
    assert client.post(f"/api/quality/tickets/{ticket}/acknowledge", headers=mine).json()["status"] == "acknowledged"
    login = client.post("/quality/login", content=f"token={steward_token('gongan')}",
                        headers={"Content-Type": "application/x-www-form-urlencoded"}, follow_redirects=True)
    assert login.status_code == 200 and "数据质量问题工单" in login.text and "已签收" in login.text
    page = client.get(f"/quality/tickets/{ticket}")
    assert "问题记录" in page.text and "处理记录" in page.text


def test_file_source_rerun_with_no_new_file_is_checked_and_loaded(tmp_path, monkeypatch, hub_settings) -> None:
    """A file drop with nothing new lands an empty run without the source's columns: still checked, still conserved."""
    import json as _json

    from test_quality_rules import uscc

    upgrade(hub_settings.database_url)
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "shzz.csv").write_text("序号,统一社会信用代码,社会组织名称,组织类型,法定代表人,成立登记日期,登记管理机关,住所\n"
                                     f"1,{uscc(7)},武汉市甲协会,社会团体,张三,2010-01-01,武汉市民政局,武汉市一路1号\n"
                                     f"2,{uscc(8)},武汉市乙协会,其他组织,李四,2011-01-01,武汉市民政局,武汉市二路2号\n", encoding="utf-8")
    monkeypatch.setenv(env_var_name("minzheng_shzz"), _json.dumps({"conn_type": "fs", "extra": {"path": str(folder)}}))
    collect("minzheng_shzz", "run-1")
    assert load_pending("legal_entity") == {"minzheng_shzz/run-1": {"rows": 2, "loaded": 1, "quarantined": 1, "merged": 0}}
    collect("minzheng_shzz", "run-2")
    assert load_pending("legal_entity") == {"minzheng_shzz/run-2": {"rows": 0, "loaded": 0, "quarantined": 0, "merged": 0}}
    assert [t["rule"] for t in list_tickets(engine_for(hub_settings.database_url), "minzheng")] == ["ENT-VALUES-enterprise_type"]


def test_timeliness_against_the_promised_update_frequency(gongan) -> None:
    import datetime as dt

    from quality.timeliness import check_timeliness

    source, hub = gongan
    collect("gongan_hjrk", "run-1")  # newest record 2026-01-01 08:40 (Beijing); 公安 promises daily updates
    late = dt.datetime(2026, 1, 5, 12, tzinfo=dt.timezone.utc)
    assert check_timeliness(hub, "population", late)["gongan_hjrk"]["stale"] is True
    ticket = _ticket(hub, "POP-TIMELY")
    assert ticket.status == "open" and ticket.defects_open == 1 and ticket.department_code == "gongan"
    with source.begin() as c:
        c.exec_driver_sql("UPDATE hjrk SET xm = '张伟', gxsj = '2026-01-05 18:00:00' WHERE rkid = 1")
    collect("gongan_hjrk", "run-2")
    assert check_timeliness(hub, "population", late)["gongan_hjrk"]["stale"] is False
    assert _ticket(hub, "POP-TIMELY").status == "verified"
