"""Library views (一人一档, 一企一档, credit summary, expiry calendar) and `hub library-view`, on SQLite and PostgreSQL.

The dataset is written through the libraries' own database_rows plus a plain insert, as the merge would write it.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.cli import main
from hub.crypto import get_cipher, mask_resident_id, new_keyring_document
from hub.db import dispose_engines, engine_for, upgrade
from hub.models import Base, CreditRecord, LegalEntity, Licence, Person
from libraries import views
from libraries.credit import LIBRARY as CREDIT
from libraries.licence import LIBRARY as LICENCE
from schemas.identifiers import licence_id, org_code_check_char, resident_id_check_char, uscc_check_char

TODAY = date(2026, 11, 1)
LEARNT = datetime(2026, 10, 31, 8, 0, tzinfo=timezone.utc)
TYPE_CODE = "11100000008273417J001"
OTHER_TYPE = "11100000008273417J002"


def resident_id(birth: str, sequence: int) -> str:
    """A valid 18-digit resident ID."""
    body = f"420102{birth}{sequence:03d}"
    return body + resident_id_check_char(body)


def uscc(serial: int, category: str = "91") -> str:
    """A valid USCC."""
    org = f"{serial:08d}"
    body = f"{category}420102{org}{org_code_check_char(org)}"
    return body + uscc_check_char(body)


PERSON = resident_id("19900102", 11)
STRANGER = resident_id("19800101", 99)
COMPANY = uscc(1)
OTHER_COMPANY = uscc(4)
ISSUER = uscc(2, "11")
OTHER_ISSUER = uscc(3, "11")


@pytest.fixture
def keyring(monkeypatch: pytest.MonkeyPatch):
    """A fresh in-process key ring for each test."""
    monkeypatch.setenv("HUB_KEYRING", json.dumps(new_keyring_document()))
    get_cipher.cache_clear()
    yield get_cipher()
    get_cipher.cache_clear()


def insert(engine: sa.Engine, table: sa.Table, rows: list[dict], lineage: dict | None = None) -> None:
    """Insert library rows with bookkeeping columns (lineage only where the table has it)."""
    has_lineage = "lineage" in {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
    target = table if has_lineage else sa.Table(table.name, sa.MetaData(), *[c._copy() for c in table.c if c.name != "lineage"])
    extra = {"lineage": lineage} if has_lineage and lineage else {}
    with engine.begin() as connection:
        connection.execute(sa.insert(target), [{"source_id": "test_src", "run_id": "r1", "updated_at": LEARNT, **extra, **row}
                                              for row in rows])


def licence_record(serial: str, holder: str, code: str, code_type: str, until: date | None, **extra) -> tuple[str, dict]:
    """A golden licence (plain fields) and its key."""
    key = licence_id(extra.pop("type_code", TYPE_CODE), extra.get("issuer_code", ISSUER), serial)
    record = {"licence_name": "食品经营许可证", "licence_type_code": key.split(".")[5], "licence_number": f"JY{serial}",
              "issuer": "江岸区市场监督管理局", "issuer_code": ISSUER, "issue_date": date(2021, 1, 1), "holder_name": holder,
              "holder_code": code, "holder_code_type": code_type, "valid_from": date(2021, 1, 1), "valid_until": until,
              "status": "1", "face_content": json.dumps({"持证人": holder}, ensure_ascii=False), "related_licence_id": None}
    record.update(extra)
    return key, record


def credit_record(key: str, record_type: str, code: str, kind: str, decided: date, content: dict | None = None, **extra) -> tuple[str, dict]:
    """A golden credit record (plain fields) and its key."""
    record = {"record_type": record_type, "subject_name": "张伟" if kind == "01" else "武汉鑫达商贸有限公司", "subject_kind": kind,
              "subject_code": code, "subject_id_type": "111" if kind == "01" else None, "decision_no": f"文号{key}",
              "decision_date": decided, "authority": "某机关", "authority_code": ISSUER, "content": content or {},
              "valid_until": None, "status": None}
    record.update(extra)
    return key, record


def build_dataset(engine: sa.Engine, cipher) -> None:
    """One person who represents one company; licences and credit records of both."""
    pid = cipher.person_key(PERSON)
    insert(engine, Person.__table__, [{
        "person_id": pid, "id_number_enc": cipher.encrypt(PERSON), "id_number_masked": mask_resident_id(PERSON), "name": "张伟",
        "gender": "1", "birth_date": date(1990, 1, 2), "ethnicity": "01", "region_code": "420102",
        "address_enc": cipher.encrypt("武汉市江岸区一路1号"), "phone_enc": cipher.encrypt("13800000001"), "marital_status": "20",
        "death_date": None}],
        lineage={"name": {"source_id": "gongan_hjrk", "run_id": "r7", "valid_from": "2026-01-01T00:00:00+00:00"}})
    insert(engine, LegalEntity.__table__, [{
        "uscc": COMPANY, "name": "武汉鑫达商贸有限公司", "entity_kind": "enterprise", "entity_type": "有限责任公司",
        "legal_rep_name": "张伟", "legal_rep_person_id": pid, "legal_rep_id_enc": cipher.encrypt(PERSON),
        "registered_capital": None, "established_date": date(2010, 5, 6), "registration_authority": "江岸区市场监督管理局",
        "status": "存续", "address": "武汉市江岸区三路3号", "region_code": "420102", "business_scope": "商贸"}])
    licences = [
        licence_record("1", "张伟", PERSON, "111", date(2027, 1, 1), licence_name="医师执业证书"),
        licence_record("2", "武汉鑫达商贸有限公司", COMPANY, "001", date(2027, 1, 31)),
        licence_record("3", "武汉鑫达商贸有限公司", COMPANY, "001", date(2026, 12, 31)),
        licence_record("4", "武汉鑫达商贸有限公司", COMPANY, "001", date(2027, 2, 1)),
        licence_record("5", "武汉鑫达商贸有限公司", COMPANY, "001", date(2026, 10, 1)),  # expired, still marked valid
        licence_record("6", "武汉鑫达商贸有限公司", COMPANY, "001", date(2026, 10, 15), status="5"),  # expired, marked so
        licence_record("7", "其他公司", OTHER_COMPANY, "001", date(2027, 1, 15), issuer_code=OTHER_ISSUER),
        licence_record("8", "其他公司", OTHER_COMPANY, "001", date(2027, 1, 20), type_code=OTHER_TYPE),
        licence_record("9", "武汉鑫达商贸有限公司", COMPANY, "001", None),  # long-term: in no calendar
    ]
    insert(engine, Licence.__table__, LICENCE.database_rows([k for k, _ in licences], [r for _, r in licences]))
    credit = [
        credit_record("court_sxbzxr:1", "失信被执行人", PERSON, "01", date(2025, 3, 4), {"performance": "全部未履行"}),
        credit_record("credit_xzcf:1", "行政处罚", PERSON, "01", date(2024, 5, 1), {"fine_amount": "0.2"}),
        # penalties of the company around the three-year window [2023-11-01, 2026-11-01]
        credit_record("credit_xzcf:2", "行政处罚", COMPANY, "02", date(2023, 10, 31), {"fine_amount": "100"}),
        credit_record("credit_xzcf:3", "行政处罚", COMPANY, "02", date(2023, 11, 1), {"fine_amount": "1.5", "confiscation_amount": "0"}),
        credit_record("credit_xzcf:4", "行政处罚", COMPANY, "02", date(2026, 11, 1),
                      {"fine_amount": "0.25", "penalty_category": "02", "penalty_content": "罚款2500元"}),
        credit_record("credit_xzcf:5", "行政处罚", COMPANY, "02", date(2026, 11, 2), {"fine_amount": "7"}),  # after today
        credit_record("credit_xzcf:6", "行政处罚", COMPANY, "02", date(2025, 1, 1), {"penalty_category": "01"}),  # a warning
        # lists: a black list ending yesterday, one ending today, a red list removed today, a red list in force
        credit_record("credit_hhmd:1", "黑名单", COMPANY, "02", date(2023, 10, 31),
                      {"list_name": "严重违法失信主体名单", "list_date": "2023-10-31", "list_end_date": "2026-10-31"},
                      valid_until=date(2026, 10, 31), status="1"),
        credit_record("credit_hhmd:2", "黑名单", COMPANY, "02", date(2023, 11, 1),
                      {"list_name": "重大税收违法失信主体", "list_date": "2023-11-01", "list_end_date": "2026-11-01"},
                      valid_until=date(2026, 11, 1), status="1"),
        credit_record("credit_hhmd:3", "红名单", COMPANY, "02", date(2025, 1, 1),
                      {"list_name": "纳税信用A级纳税人", "list_date": "2025-01-01", "list_end_date": "2027-01-01",
                       "list_removal_date": "2026-11-01"}, valid_until=date(2026, 11, 1), status="2"),
        credit_record("credit_jyyc:1", "经营异常名录", COMPANY, "02", date(2025, 7, 1),
                      {"abnormal_listing_reason": "未按期公示年度报告", "abnormal_removal_date": "2026-12-01"},
                      valid_until=date(2026, 12, 1), status="2"),
        credit_record("credit_jyyc:2", "经营异常名录", COMPANY, "02", date(2024, 7, 1),
                      {"abnormal_listing_reason": "无法联系", "abnormal_removal_date": "2025-01-01"},
                      valid_until=date(2025, 1, 1), status="2"),
    ]
    insert(engine, CreditRecord.__table__, CREDIT.database_rows([k for k, _ in credit], [r for _, r in credit]))


@pytest.fixture
def dataset(keyring, hub_db_url: str) -> sa.Engine:
    """The migrated hub database with the hand-built dataset."""
    upgrade(hub_db_url)
    engine = engine_for(hub_db_url)
    build_dataset(engine, keyring)
    yield engine
    dispose_engines()


def test_person_profile_masked_by_default(dataset: sa.Engine) -> None:
    profile = views.person_profile(dataset, PERSON, today=TODAY)
    person = profile["person"]
    assert person["id_number"] == mask_resident_id(PERSON) and person["name"] == "张*" and person["phone"] == "138****0001"
    assert person["address"] is None and person["birth_date"] is None and person["masked"] is True
    assert person["source"]["source_id"] == "test_src"
    assert person["source"]["fields"]["name"]["source_id"] == "gongan_hjrk"  # field-level lineage
    assert [item["licence_name"] for item in profile["licences"]] == ["医师执业证书"]
    licence = profile["licences"][0]
    assert licence["holder_name"] == "张*" and licence["holder_code"] is None and "face_content" not in licence
    assert licence["source"]["source_id"] == "test_src"
    assert sorted(r["record_id"] for r in profile["credit_records"]) == ["court_sxbzxr:1", "credit_xzcf:1"]
    assert [e["uscc"] for e in profile["legal_representative_of"]] == [COMPANY]
    assert profile["credit_summary"]["dishonest_debtor"]["active"] is True
    assert PERSON not in json.dumps(profile, ensure_ascii=False, default=str)


def test_person_profile_revealed(dataset: sa.Engine) -> None:
    profile = views.person_profile(dataset, PERSON.lower(), reveal=True, today=TODAY)
    person = profile["person"]
    assert person["id_number"] == PERSON and person["name"] == "张伟" and person["address"] == "武汉市江岸区一路1号"
    assert person["phone"] == "13800000001" and person["birth_date"] == date(1990, 1, 2)
    licence = profile["licences"][0]
    assert licence["holder_code"] == PERSON and licence["face_content"] == {"持证人": "张伟"}


def test_person_profile_bad_and_unknown(dataset: sa.Engine) -> None:
    with pytest.raises(views.InvalidSubject, match="公民身份号码无效"):
        views.person_profile(dataset, PERSON[:17] + ("0" if PERSON[-1] != "0" else "1"))
    with pytest.raises(views.SubjectNotFound, match="没有此人"):
        views.person_profile(dataset, STRANGER)


def test_company_profile(dataset: sa.Engine) -> None:
    profile = views.company_profile(dataset, COMPANY.lower(), today=TODAY)
    entity = profile["entity"]
    assert entity["name"] == "武汉鑫达商贸有限公司" and entity["legal_rep_id"] == mask_resident_id(PERSON)
    assert "legal_rep_id_enc" not in entity and entity["source"]["source_id"] == "test_src"
    assert len(profile["licences"]) == 6 and all(item["holder_code"] == COMPANY for item in profile["licences"])
    assert profile["licences"][0]["face_content"] == {"持证人": "武汉鑫达商贸有限公司"}  # public for legal persons
    assert {r["record_id"] for r in profile["credit_records"]} >= {"credit_hhmd:1", "credit_jyyc:1"}
    assert profile["credit_summary"]["black_list"]["active"] is True
    assert views.company_profile(dataset, COMPANY, reveal=True, today=TODAY)["entity"]["legal_rep_id"] == PERSON
    with pytest.raises(views.InvalidSubject, match="统一社会信用代码格式错误"):
        views.company_profile(dataset, "NOT-A-USCC")
    with pytest.raises(views.SubjectNotFound):
        views.company_profile(dataset, uscc(77))


def test_credit_summary_date_logic(dataset: sa.Engine) -> None:
    summary = views.credit_summary(dataset, COMPANY, today=TODAY)
    assert summary["subject"]["code"] == COMPANY and summary["as_of"] == TODAY
    black = {e["record_id"]: e["active"] for e in summary["black_list"]["entries"]}
    assert black == {"credit_hhmd:1": False, "credit_hhmd:2": True}  # ended yesterday / ends today
    assert summary["black_list"]["active"] is True
    assert summary["red_list"] == {"active": False, "entries": summary["red_list"]["entries"]}  # removed today
    penalties = summary["penalties_3y"]
    assert penalties["window_from"] == date(2023, 11, 1) and penalties["window_to"] == TODAY
    assert penalties["count"] == 3  # 2023-11-01, 2025-01-01, 2026-11-01; not 2023-10-31 nor tomorrow
    assert penalties["latest"]["record_id"] == "credit_xzcf:4" and penalties["latest"]["penalty_category"] == "罚款"
    assert penalties["total_fine_wan_yuan"] == "1.75" and penalties["total_confiscation_wan_yuan"] == "0"
    abnormal = {e["record_id"]: e for e in summary["abnormal_operations"]["entries"]}
    assert summary["abnormal_operations"]["listed"] is True
    assert abnormal["credit_jyyc:1"]["active"] is True and abnormal["credit_jyyc:1"]["reason"] == "未按期公示年度报告"
    assert abnormal["credit_jyyc:2"]["active"] is False
    assert summary["dishonest_debtor"]["active"] is False
    # A day later the second black-list entry has lapsed too; three years later only the latest penalty counts.
    assert views.credit_summary(dataset, COMPANY, today=date(2026, 11, 2))["black_list"]["active"] is False
    assert views.credit_summary(dataset, COMPANY, today=date(2029, 11, 1))["penalties_3y"]["count"] == 2


def test_credit_summary_of_a_person(dataset: sa.Engine) -> None:
    summary = views.credit_summary(dataset, PERSON, today=TODAY)
    assert summary["subject"] == {"kind": "自然人", "code": mask_resident_id(PERSON), "name": "张*"}
    assert summary["dishonest_debtor"]["active"] is True and summary["penalties_3y"]["count"] == 1
    assert views.credit_summary(dataset, OTHER_COMPANY, today=TODAY)["penalties_3y"]["count"] == 0  # known, no records
    with pytest.raises(views.SubjectNotFound):
        views.credit_summary(dataset, STRANGER)
    with pytest.raises(views.InvalidSubject, match="无法识别"):
        views.credit_summary(dataset, "12345")


def test_years_before_leap_day() -> None:
    assert views.years_before(date(2028, 2, 29), 3) == date(2025, 2, 28)
    assert views.years_before(date(2026, 11, 1), 3) == date(2023, 11, 1)


def test_expiry_calendar_boundaries_and_filters(dataset: sa.Engine) -> None:
    january = views.licence_expiry_calendar(dataset, date(2027, 1, 1), date(2027, 1, 31), today=TODAY)
    assert january["total"] == 4  # 1 Jan and 31 Jan included, 31 Dec and 1 Feb not
    assert [d["date"] for d in january["days"]] == [date(2027, 1, 1), date(2027, 1, 15), date(2027, 1, 20), date(2027, 1, 31)]
    assert january["months"] == [{"month": "2027-01", "count": 4, "expired_still_valid": 0, "days_in_month": 31}]
    assert january["days"][0]["licences"][0]["holder_name"] == "张*"  # a natural person's name is masked
    by_issuer = views.licence_expiry_calendar(dataset, date(2027, 1, 1), date(2027, 1, 31), issuer_code=OTHER_ISSUER.lower(), today=TODAY)
    assert by_issuer["total"] == 1 and by_issuer["days"][0]["date"] == date(2027, 1, 15)
    by_type = views.licence_expiry_calendar(dataset, date(2027, 1, 1), date(2027, 1, 31), licence_type_code=OTHER_TYPE, today=TODAY)
    assert by_type["total"] == 1 and by_type["days"][0]["date"] == date(2027, 1, 20)
    autumn = views.licence_expiry_calendar(dataset, date(2026, 9, 15), date(2027, 2, 1), today=TODAY)
    assert [m["month"] for m in autumn["months"]] == ["2026-09", "2026-10", "2026-11", "2026-12", "2027-01", "2027-02"]
    assert [m["count"] for m in autumn["months"]] == [0, 2, 0, 1, 4, 1]
    assert autumn["expired_still_valid"] == 1 and autumn["months"][1]["expired_still_valid"] == 1
    stale = [item for day in autumn["days"] for item in day["licences"] if item["expired_still_valid"]]
    assert [item["valid_until"] for item in stale] == [date(2026, 10, 1)]  # 15 Oct is marked expired: not flagged
    with pytest.raises(views.ViewError, match="晚于"):
        views.licence_expiry_calendar(dataset, date(2027, 2, 1), date(2027, 1, 1))


def test_views_without_lineage_column(keyring, tmp_path: Path) -> None:
    """Before migration 0003 the tables have no lineage column: the views still answer, from source_id/run_id."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    old = sa.MetaData()
    for model in (Person, LegalEntity, Licence, CreditRecord):
        table = Base.metadata.tables[model.__tablename__]
        sa.Table(table.name, old, *[c._copy() for c in table.c if c.name != "lineage"])
    old.create_all(engine)
    build_dataset(engine, keyring)
    profile = views.person_profile(engine, PERSON, today=TODAY)
    assert profile["person"]["source"] == {"source_id": "test_src", "run_id": "r1", "updated_at": LEARNT}
    assert views.company_profile(engine, COMPANY, today=TODAY)["credit_summary"]["black_list"]["active"] is True
    engine.dispose()


def test_views_on_an_empty_database(keyring, tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(views.ViewError, match="hub db upgrade"):
        views.person_profile(engine, PERSON)
    engine.dispose()


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_views_json(dataset: sa.Engine, hub_db_url: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["library-view", "credit", COMPANY, "--url", hub_db_url, "--as-of", "2026-11-01"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["black_list"]["active"] is True and summary["penalties_3y"]["window_from"] == "2023-11-01"
    assert main(["library-view", "person", PERSON, "--url", hub_db_url, "--as-of", "2026-11-01"]) == 0
    out = capsys.readouterr().out
    assert PERSON not in out and json.loads(out)["person"]["id_number"] == mask_resident_id(PERSON)
    assert main(["library-view", "person", PERSON, "--url", hub_db_url, "--reveal"]) == 0
    assert json.loads(capsys.readouterr().out)["person"]["id_number"] == PERSON
    assert main(["library-view", "company", COMPANY, "--url", hub_db_url]) == 0
    assert json.loads(capsys.readouterr().out)["entity"]["uscc"] == COMPANY


def test_cli_bad_input_is_a_clear_error(dataset: sa.Engine, hub_db_url: str, capsys: pytest.CaptureFixture) -> None:
    for argv, message in (
        (["library-view", "person", "12345"], "公民身份号码无效"),
        (["library-view", "company", "NOT-A-USCC"], "统一社会信用代码格式错误"),
        (["library-view", "credit", STRANGER], "没有此主体"),
        (["library-view", "expiry", "--from", "2027-02-01", "--to", "2027-01-01"], "晚于"),
    ):
        assert main([*argv, "--url", hub_db_url]) == 1
        captured = capsys.readouterr()
        assert message in captured.err and "Traceback" not in captured.err and STRANGER not in captured.err


def test_cli_expiry_html(dataset: sa.Engine, hub_db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    page = tmp_path / "out" / "expiry.html"
    argv = ["library-view", "expiry", "--from", "2026-09-15", "--to", "2027-02-01", "--url", hub_db_url,
            "--as-of", "2026-11-01", "--html", str(page)]
    assert main(argv) == 0
    html = page.read_text(encoding="utf-8")
    assert "证照到期日历" in html and html.count("<svg") == 1 and "2027-01" in html and "已过期仍标记为有效" in html
    assert "张伟" not in html and "张*" in html
    assert main(argv[:-2]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["total"] == 8
