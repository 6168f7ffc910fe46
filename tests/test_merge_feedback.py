"""Merge feedback on SQLite and PostgreSQL: a merge conflict is a warning defect on the losing department's ticket
(resolved, and the ticket verified, when the sources agree again); a re-keyed source record withdraws its old claim."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from connectors.collect import collect
from connectors.connections import connection_json, env_var_name
from hub.crypto import get_cipher, mask_phone
from hub.db import engine_for, upgrade
from hub.models import LibraryClaim, Person, QualityConflict, QualityDefect, QualityTicket
from libraries.history import history
from libraries.load import load_pending
from libraries.merge import merge_claims
from libraries.spec import Claims
from quality.tickets import decide, list_tickets, ticket_detail, transition
from test_quality_rules import rid

UTC = dt.timezone.utc
T1 = dt.datetime(2026, 1, 1, tzinfo=UTC)
T2 = dt.datetime(2026, 1, 2, tzinfo=UTC)
T3 = dt.datetime(2026, 1, 3, tzinfo=UTC)
T4 = dt.datetime(2026, 1, 4, tzinfo=UTC)
NAME_RULE = "MERGE-population-name"


@pytest.fixture
def engine(hub_settings, hub_db_url):
    upgrade(hub_db_url)
    yield engine_for(hub_db_url)


def claims(*items: tuple[str, dict, str], valid_from: dt.datetime | None = None) -> Claims:
    """Claims from (resident ID, fields, source record key): the subject key is the ID's HMAC, as the adapter makes it."""
    out = Claims()
    for n, (number, fields, source_key) in enumerate(items):
        out.add(get_cipher().index_hash(number), {"id_number": number, **fields}, valid_from, n, source_key=source_key)
    return out


def merge(engine, source_id: str, batch: Claims, at: dt.datetime, run: str) -> dict:
    return merge_claims(engine, "population", batch, source_id=source_id, run_id=run, extracted_at=at, ruleset_version="rs1")


def defects(engine) -> list[QualityDefect]:
    with sa.orm.Session(engine) as session:
        return list(session.scalars(sa.select(QualityDefect).order_by(QualityDefect.id)))


def by_record(engine) -> dict[str, QualityDefect]:
    """Defects by the source's own record key (a defect's key is <record>|<subject>)."""
    return {d.source_key.split("|")[0]: d for d in defects(engine)}


def tickets(engine) -> list[QualityTicket]:
    with sa.orm.Session(engine) as session:
        return list(session.scalars(sa.select(QualityTicket).order_by(QualityTicket.id)))


def person(engine, number: str) -> Person | None:
    with sa.orm.Session(engine) as session:
        return session.get(Person, get_cipher().index_hash(number))


def test_conflict_opens_one_defect_for_the_losing_department_and_reruns_add_nothing(engine) -> None:
    a = rid("19850312", 1)
    merge(engine, "gongan_hjrk", claims((a, {"name": "王芳", "address": "武汉市江岸区一路1号"}, "g1")), T1, "g-1")
    assert defects(engine) == [] and tickets(engine) == []
    merge(engine, "renshe_sbcb", claims((a, {"name": "王方"}, "r1")), T2, "r-1")
    [defect] = defects(engine)
    [ticket] = tickets(engine)
    assert (defect.source_id, defect.source_key, defect.rule_id, defect.field, defect.severity, defect.dimension, defect.status) == (
        "renshe_sbcb", f"r1|{get_cipher().index_hash(a)}", NAME_RULE, "name", "warning", "一致性", "open")
    for text in ("姓名", "renshe_sbcb", "王方", "gongan_hjrk", "王芳", "省公安厅", "记录 r1"):
        assert text in defect.message
    assert (ticket.department_code, ticket.source_id, ticket.rule_id, ticket.rule_name, ticket.severity, ticket.status,
            ticket.defects_open, ticket.defects_total, ticket.opened_run_id) == (
        "renshe", "renshe_sbcb", NAME_RULE, "与权威来源比对不一致：姓名", "warning", "open", 1, 1, "r-1")
    assert defect.ticket_id == ticket.id and list_tickets(engine, "gongan") == []
    assert [d["field"] for d in ticket_detail(engine, ticket.id, "renshe")["defects"]] == ["name"]

    # the same claims again: nothing changes, nothing is recomputed
    merge(engine, "renshe_sbcb", claims((a, {"name": "王方"}, "r1")), T3, "r-2")
    merge(engine, "gongan_hjrk", claims((a, {"name": "王芳", "address": "武汉市江岸区一路1号"}, "g1")), T3, "g-2")
    # 公安 changes another field: the subject is recomputed, the conflict still holds — refreshed, not duplicated
    merge(engine, "gongan_hjrk", claims((a, {"name": "王芳", "address": "武汉市江岸区二路2号"}, "g1")), T4, "g-3")
    [again] = defects(engine)
    assert (again.id, again.status, again.ticket_id, again.first_run_id, again.last_run_id) == (
        defect.id, "open", ticket.id, "r-1", "g-3")
    assert [(t.id, t.status, t.defects_open, t.defects_total) for t in tickets(engine)] == [(ticket.id, "open", 1, 1)]


def test_personal_values_are_masked_in_the_defect(engine) -> None:
    a = rid("19850312", 2)
    merge(engine, "gongan_hjrk", claims((a, {"name": "李娜", "phone": "13800000003"}, "g1"), valid_from=T1), T1, "g-1")
    # phone: recency only — 人社's newer number wins, so 公安's value is the one that lost
    merge(engine, "renshe_sbcb", claims((a, {"name": "李娜", "phone": "13911112222"}, "r1"), valid_from=T2), T2, "r-1")
    [defect] = defects(engine)
    with sa.orm.Session(engine) as session:
        conflict = session.scalars(sa.select(QualityConflict)).one()
    assert (defect.source_id, defect.rule_id) == ("gongan_hjrk", "MERGE-population-phone")
    assert "联系电话" in defect.message and mask_phone("13800000003") in defect.message and mask_phone("13911112222") in defect.message
    assert conflict.value in defect.message and conflict.reference_value in defect.message
    assert "13800000003" not in defect.message and "13911112222" not in defect.message and a not in defect.message
    assert tickets(engine)[0].department_code == "gongan"


def test_agreement_resolves_the_defect_and_verifies_the_ticket_a_relapse_reopens(engine) -> None:
    a, b = rid("19850312", 3), rid("19850312", 4)
    merge(engine, "gongan_hjrk", claims((a, {"name": "王芳"}, "g1"), (b, {"name": "赵六"}, "g2")), T1, "g-1")
    merge(engine, "renshe_sbcb", claims((a, {"name": "王方"}, "r1"), (b, {"name": "赵陆"}, "r2")), T2, "r-1")
    [ticket] = tickets(engine)
    assert (ticket.defects_open, ticket.defects_total) == (2, 2)  # one ticket per source and rule
    transition(engine, ticket.id, "renshe", "acknowledge", "人社专员", T2)
    merge(engine, "renshe_sbcb", claims((a, {"name": "王芳"}, "r1")), T3, "r-2")  # one corrected: ticket stays open
    assert {k: d.status for k, d in by_record(engine).items()} == {"r1": "resolved", "r2": "open"}
    assert tickets(engine)[0].status == "acknowledged" and tickets(engine)[0].defects_open == 1
    merge(engine, "renshe_sbcb", claims((b, {"name": "赵六"}, "r2")), T4, "r-3")
    with sa.orm.Session(engine) as session:
        assert session.scalars(sa.select(QualityConflict.status)).all() == ["resolved", "resolved"]
    assert {k: (d.status, d.resolved_run_id) for k, d in by_record(engine).items()} == {
        "r1": ("resolved", "r-2"), "r2": ("resolved", "r-3")}
    [verified] = tickets(engine)
    assert (verified.status, verified.defects_open, verified.closed_at is not None) == ("verified", 0, True)
    history_ = ticket_detail(engine, ticket.id, "renshe")["history"]
    assert [e["to"] for e in history_] == ["open", "acknowledged", "verified"] and history_[-1]["actor"] == "system"
    # 人社 sends the wrong name again: the same defect reopens, on a new ticket (the old one stays closed)
    merge(engine, "renshe_sbcb", claims((a, {"name": "王方"}, "r1")), T4 + dt.timedelta(days=1), "r-4")
    first = by_record(engine)["r1"]
    assert (first.status, first.resolved_run_id) == ("open", None) and len(defects(engine)) == 2
    assert [(t.status, t.defects_open) for t in tickets(engine)] == [("verified", 0), ("open", 1)]
    assert first.ticket_id == tickets(engine)[1].id


def test_waived_conflict_is_not_raised_again(engine) -> None:
    a = rid("19850312", 5)
    merge(engine, "gongan_hjrk", claims((a, {"name": "王芳", "address": "一路1号"}, "g1")), T1, "g-1")
    merge(engine, "renshe_sbcb", claims((a, {"name": "王方"}, "r1")), T2, "r-1")
    [ticket] = tickets(engine)
    transition(engine, ticket.id, "renshe", "dispute", "人社专员", T2, "参保登记以本人签字为准")
    decide(engine, ticket.id, accept=True, actor="枢纽数据专员", at=T2)
    merge(engine, "gongan_hjrk", claims((a, {"name": "王芳", "address": "二路2号"}, "g1")), T3, "g-2")  # recomputed
    assert [d.status for d in defects(engine)] == ["waived"]
    assert [t.status for t in tickets(engine)] == ["verified"]


def test_rekeyed_record_withdraws_its_old_claim_and_the_subject_is_tombstoned(engine) -> None:
    wrong, right = rid("19850312", 6), rid("19850312", 7)
    merge(engine, "gongan_hjrk", claims((wrong, {"name": "孙七"}, "g1"), (rid("19850312", 8), {"name": "周八"}, "g2")), T1, "g-1")
    assert person(engine, wrong).name == "孙七"
    counts = merge(engine, "gongan_hjrk", claims((right, {"name": "孙七"}, "g1")), T2, "g-2")  # ID number corrected at source
    assert (counts["claims_changed"], counts["claims_unchanged"], counts["tombstones"], counts["versions"]) == (2, 0, 1, 1)
    assert person(engine, wrong) is None and person(engine, right).name == "孙七"
    assert person(engine, rid("19850312", 8)).name == "周八"  # other records of the source are not touched
    assert history(engine, "population", get_cipher().index_hash(wrong))[-1]["tombstone"] is True
    with sa.orm.Session(engine) as session:
        old = session.scalars(sa.select(LibraryClaim).where(LibraryClaim.entity_key == get_cipher().index_hash(wrong))).one()
    assert (old.deleted, old.source_key, old.run_id) == (True, "g1", "g-2")
    # the corrected record arriving again changes nothing
    again = merge(engine, "gongan_hjrk", claims((right, {"name": "孙七"}, "g1")), T3, "g-3")
    assert (again["claims_changed"], again["tombstones"], again["versions"]) == (0, 0, 0)


def test_rekeyed_record_leaves_the_other_sources_claim(engine) -> None:
    wrong, right = rid("19850312", 9), rid("19850312", 10)
    merge(engine, "gongan_hjrk", claims((wrong, {"name": "吴九", "address": "一路1号"}, "g1")), T1, "g-1")
    merge(engine, "renshe_sbcb", claims((wrong, {"name": "吴玖"}, "r1")), T2, "r-1")
    assert [(d.source_id, d.status) for d in defects(engine)] == [("renshe_sbcb", "open")]
    counts = merge(engine, "gongan_hjrk", claims((right, {"name": "吴九", "address": "一路1号"}, "g1")), T3, "g-2")
    assert counts["tombstones"] == 0
    kept = person(engine, wrong)
    assert (kept.name, kept.address_enc, kept.lineage["name"]["source_id"]) == ("吴玖", None, "renshe_sbcb")
    # 公安 no longer claims the old subject: nothing to disagree with, the defect resolves and the ticket is verified
    assert [d.status for d in defects(engine)] == ["resolved"] and [t.status for t in tickets(engine)] == ["verified"]


def test_registration_keeps_the_party_it_still_names(engine) -> None:
    husband, wife, corrected = rid("19800101", 11), rid("19820202", 12), rid("19820202", 13)
    married = {"marital_status": "20"}
    merge(engine, "minzheng_hydj", claims((husband, {"name": "郑十", **married}, "m1"), (wife, {"name": "冯丽", **married}, "m1")),
          T1, "m-1")
    merge(engine, "minzheng_hydj", claims((husband, {"name": "郑十", **married}, "m1"),
                                          (corrected, {"name": "冯丽", **married}, "m1")), T2, "m-2")
    assert person(engine, husband).name == "郑十" and person(engine, corrected).name == "冯丽"
    assert person(engine, wife) is None


HJRK = """CREATE TABLE hjrk (rkid INTEGER PRIMARY KEY, gmsfhm VARCHAR(18), xm TEXT, xb TEXT, mz TEXT, csrq TEXT,
  hjdz_xzqh TEXT, hjdz TEXT, lxdh TEXT, hyzk TEXT, swrq TEXT, gxsj TIMESTAMP)"""


def test_corrected_id_number_at_source_through_collect_and_load(tmp_path, monkeypatch, hub_settings, hub_db_url) -> None:
    """The department fixes a mistyped ID number; the next collection re-sends the record: the old person is withdrawn."""
    from hub.settings import get_settings

    monkeypatch.setenv("HUB_DATABASE_URL", hub_db_url)
    get_settings.cache_clear()
    upgrade(hub_db_url)
    hub = engine_for(hub_db_url)
    wrong, right = rid("19900102", 13), rid("19900102", 15)  # odd sequence: male, as 张伟
    source = sa.create_engine(f"sqlite:///{tmp_path / 'gongan.sqlite'}")
    with source.begin() as c:
        c.exec_driver_sql(HJRK)
        c.exec_driver_sql("INSERT INTO hjrk VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", [
            (1, wrong, "张伟", "1", "01", "1990-01-02", "420102", "武汉市江岸区一路1号", None, "10", None, "2026-01-01 08:00:00"),
            (2, rid("19851231", 16), "王芳", "2", "01", "1985-12-31", "420102", "武汉市江岸区二路2号", None, "20", None,
             "2026-01-01 08:10:00")])
    monkeypatch.setenv(env_var_name("gongan_hjrk"), connection_json(source.url))
    try:
        collect("gongan_hjrk", "run-1")
        load_pending("population")
        assert person(hub, wrong).name == "张伟"
        with source.begin() as c:
            c.exec_driver_sql("UPDATE hjrk SET gmsfhm = ?, gxsj = '2026-01-02 09:00:00' WHERE rkid = 1", (right,))
        collect("gongan_hjrk", "run-2")
        assert load_pending("population") == {"gongan_hjrk/run-2": {"rows": 1, "loaded": 1, "quarantined": 0, "merged": 0}}
        assert person(hub, wrong) is None and person(hub, right).name == "张伟"
        assert person(hub, rid("19851231", 16)).name == "王芳"
    finally:
        source.dispose()
