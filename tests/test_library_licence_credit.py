"""Licence and credit libraries: staged rows of every source shape → claims → encrypted rows, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pytest
import sqlalchemy as sa

from hub.crypto import get_cipher, new_keyring_document
from hub.db import engine_for, upgrade
from libraries.credit import LIBRARY as CREDIT
from libraries.licence import LIBRARY as LICENCE
from schemas.identifiers import licence_id, org_code_check_char, resident_id_check_char, uscc_check_char

LEARNT = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)
TYPE_CODE = "11100000008273417J001"


def resident_id(birth: str, sequence: int, region: str = "420102") -> str:
    """A valid 18-digit resident ID."""
    body = f"{region}{birth}{sequence:03d}"
    return body + resident_id_check_char(body)


def legacy_id(full: str) -> str:
    """The 15-digit form of an 18-digit resident ID born in the 1900s."""
    return full[:6] + full[8:17]


def uscc(serial: int, category: str = "91") -> str:
    """A valid USCC."""
    org = f"{serial:08d}"
    body = f"{category}420102{org}{org_code_check_char(org)}"
    return body + uscc_check_char(body)


PERSON = resident_id("19900102", 11)
SPOUSE = resident_id("19920304", 22)
LEGACY_PERSON = resident_id("19650708", 33)
COMPANY = uscc(1)
SHOP = uscc(2, "92")
AUTHORITY = uscc(3, "11")


@pytest.fixture
def keyring(monkeypatch: pytest.MonkeyPatch):
    """A fresh in-process key ring (HUB_KEYRING) for each test."""
    monkeypatch.setenv("HUB_KEYRING", json.dumps(new_keyring_document()))
    get_cipher.cache_clear()
    yield get_cipher()
    get_cipher.cache_clear()


def staged(source_id: str, rows: list[dict]) -> pa.Table:
    """Staged rows as the quality stage leaves them: elements plus the lineage columns."""
    for i, row in enumerate(rows):
        row.setdefault("_source_id", source_id)
        row.setdefault("_run_id", "r1")
        row.setdefault("_source_key", str(i))
    names = list(dict.fromkeys(name for row in rows for name in row))
    return pa.table({name: [row.get(name) for row in rows] for name in names})


def licence_row(serial: str, holder: str, code: str, code_type: str, **extra) -> dict:
    """One staged licence row."""
    return {
        "licence_id": licence_id(TYPE_CODE, COMPANY, serial), "licence_name": "营业执照", "licence_type_code": TYPE_CODE,
        "licence_number": f"N{serial}", "issuer": "武汉市江岸区市场监督管理局", "issuer_code": COMPANY,
        "issue_date": date(2020, 5, 6), "holder": holder, "holder_code": code, "holder_code_type": code_type,
        "valid_from": date(2020, 5, 6), "valid_to": date(2030, 5, 5), "status": "有效", "face_content": None, **extra,
    }


def write(url: str, table: sa.Table, rows: list[dict], source_id: str = "test") -> list[dict]:
    """Insert library rows with their bookkeeping columns; returns what the database holds afterwards."""
    engine = engine_for(url)
    with engine.begin() as connection:
        connection.execute(sa.insert(table), [{**row, "source_id": source_id, "run_id": "r1", "updated_at": LEARNT} for row in rows])
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(sa.select(table))]


def assert_no_plain(rows: list[dict], secrets: list[str]) -> None:
    """No resident ID (18- or 15-digit form) in clear anywhere in the written rows, ciphertexts included."""
    for row in rows:
        for name, value in row.items():
            if isinstance(value, (bytes, memoryview)):
                text = bytes(value).decode("latin-1")
            elif isinstance(value, (dict, list)):
                text = json.dumps(value, ensure_ascii=False)
            else:
                text = str(value)
            for secret in secrets:
                assert secret not in text, f"plain resident ID in column {name}"


# ---------------------------------------------------------------------------------------------
# Licences
# ---------------------------------------------------------------------------------------------


def test_licence_claims_legal_and_natural_holders(keyring) -> None:
    face = json.dumps({"男方": {"姓名": "张伟", "身份证件号": PERSON}, "女方": {"姓名": "王芳", "身份证件号": SPOUSE}}, ensure_ascii=False)
    rows = staged("licence_minzheng", [
        licence_row("1", "武汉鑫达商贸有限公司", COMPANY, "001", face_content='{"名称":"武汉鑫达商贸有限公司"}', status="已注销"),
        licence_row("2", "张伟", PERSON, "111", face_content=face, valid_to=None),
        licence_row("3", "李四", legacy_id(LEGACY_PERSON), "公民身份号码", issue_date=None),
    ])
    claims = LICENCE.claims(rows, "licence_minzheng")
    assert len(claims) == 3 and claims.row_index == [0, 1, 2] and claims.deleted == [False] * 3
    assert claims.keys[0] == licence_id(TYPE_CODE, COMPANY, "1")
    first = claims.fields[0]
    assert set(first) <= set(LICENCE.fields)
    assert first["holder_name"] == "武汉鑫达商贸有限公司" and first["status"] == "2" and first["valid_until"] == date(2030, 5, 5)
    assert claims.fields[1]["valid_until"] is None and claims.fields[1]["holder_code"] == PERSON
    assert claims.fields[2]["holder_code_type"] == "111"  # the label became its code
    assert claims.valid_from[0] == datetime(2020, 5, 6, tzinfo=timezone.utc)  # issue date, aware UTC midnight
    assert claims.valid_from[2] is None


def test_licence_valid_from_prefers_update_time_and_tombstones(keyring) -> None:
    rows = staged("licence_scjg", [licence_row("1", "公司", COMPANY, "001", updated_at=datetime(2026, 1, 2, 3, 4, 5), _change="update"),
                                   {"licence_id": licence_id(TYPE_CODE, COMPANY, "9"), "_change": "delete"}])
    claims = LICENCE.claims(rows, "licence_scjg")
    assert claims.valid_from[0] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert claims.deleted == [False, True] and claims.fields[1] == {}


def test_licence_claims_refuse_rows_without_key(keyring) -> None:
    rows = staged("licence_scjg", [licence_row("1", "公司", COMPANY, "001"), licence_row("2", "公司", COMPANY, "001", licence_id=None)])
    with pytest.raises(ValueError, match="licence_id"):
        LICENCE.claims(rows, "licence_scjg")


def test_licence_database_rows_encrypt_natural_persons(keyring, hub_db_url: str) -> None:
    upgrade(hub_db_url)
    face = json.dumps({"持证人": "张伟", "男方": {"身份证件号": PERSON}, "女方": {"身份证件号": SPOUSE}}, ensure_ascii=False)
    rows = staged("licence_minzheng", [
        licence_row("1", "武汉鑫达商贸有限公司", COMPANY, "001", face_content='{"名称":"武汉鑫达商贸有限公司"}'),
        licence_row("2", "张伟", PERSON, "111", face_content=face),
        licence_row("3", "李四", legacy_id(LEGACY_PERSON), "111"),
        licence_row("4", "John Smith", "E12345678", "414"),  # a passport: personal data too, hashed under its type
    ])
    claims = LICENCE.claims(rows, "licence_minzheng")
    built = LICENCE.database_rows(claims.keys, claims.fields)
    assert not any(name.startswith("seal") or name == "sealed_at" for row in built for name in row)
    company, person, legacy, passport = built
    assert company["holder_code"] == COMPANY and company["holder_person_id"] is None
    assert company["face_content"] == {"名称": "武汉鑫达商贸有限公司"} and company["face_content_enc"] is None
    assert person["holder_code"] is None and person["face_content"] is None
    assert person["holder_person_id"] == keyring.person_key(PERSON)
    assert keyring.decrypt(person["holder_code_enc"]) == PERSON
    assert json.loads(keyring.decrypt(person["face_content_enc"]))["女方"]["身份证件号"] == SPOUSE
    assert legacy["holder_person_id"] == keyring.person_key(LEGACY_PERSON)  # 15 digits normalised to 18
    assert passport["holder_code"] is None and passport["holder_person_id"] == keyring.index_hash("414:E12345678")
    # A resident ID under a legal-person code type (survivorship mixing two sources) is still encrypted.
    mixed = LICENCE.database_rows([claims.keys[1]], [{**claims.fields[1], "holder_code_type": "001"}])[0]
    assert mixed["holder_code"] is None and mixed["holder_person_id"] == keyring.person_key(PERSON)
    assert mixed["face_content"] is None and mixed["face_content_enc"] is not None
    written = write(hub_db_url, LICENCE.table, built)
    assert len(written) == 4
    assert_no_plain(written, [PERSON, SPOUSE, LEGACY_PERSON, legacy_id(LEGACY_PERSON), "E12345678"])
    by_id = {row["licence_id"]: row for row in written}
    assert by_id[claims.keys[0]]["face_content"] == {"名称": "武汉鑫达商贸有限公司"}
    assert keyring.decrypt(by_id[claims.keys[1]]["holder_code_enc"]) == PERSON


def test_face_content_that_is_not_json_is_kept(keyring) -> None:
    rows = staged("licence_scjg", [licence_row("1", "公司", COMPANY, "001", face_content="不是JSON"),
                                   licence_row("2", "张伟", PERSON, "111", face_content="身份证 " + PERSON)])
    claims = LICENCE.claims(rows, "licence_scjg")
    company, person = LICENCE.database_rows(claims.keys, claims.fields)
    assert company["face_content"] == {"原文": "不是JSON"}
    assert json.loads(keyring.decrypt(person["face_content_enc"])) == {"原文": "身份证 " + PERSON}


# ---------------------------------------------------------------------------------------------
# Credit
# ---------------------------------------------------------------------------------------------


def xzxk_row(number: str, **extra) -> dict:
    """One staged 行政许可 row (an individual business)."""
    return {"record_id": number, "subject_name": "江岸区小王便利店", "subject_category": "04", "subject_uscc": SHOP,
            "legal_representative": "王小", "subject_id_type": None, "subject_id_number": None,
            "permit_document_name": "准予行政许可决定书", "permit_document_number": f"江岸许准字〔2026〕{number}号",
            "permit_category": "普通", "permit_certificate_name": "食品经营许可证", "permit_number": "JY1",
            "permit_content": "食品经营许可", "permit_decision_date": date(2026, 3, 1), "permit_valid_from": date(2026, 3, 1),
            "permit_valid_to": date(2031, 2, 28), "permit_authority": "江岸区市场监督管理局", "permit_authority_code": AUTHORITY,
            "permit_status": "有效", "data_source_unit": "江岸区市场监督管理局", "data_source_unit_code": AUTHORITY,
            "record_type": "行政许可", **extra}


def xzcf_row(number: str, **extra) -> dict:
    """One staged 行政处罚 row about a natural person."""
    return {"record_id": number, "subject_name": "张伟", "subject_category": "01", "subject_uscc": None,
            "legal_representative": None, "subject_id_type": "身份证", "subject_id_number": PERSON,
            "penalty_document_number": f"江岸市监罚〔2025〕{number}号", "violation_type": "虚假宣传",
            "violation_facts": "当事人作虚假宣传", "penalty_basis": "《反不正当竞争法》第二十条", "penalty_category": "罚款",
            "penalty_content": "罚款人民币5000元", "fine_amount": Decimal("0.5"), "confiscation_amount": Decimal("0"),
            "penalty_decision_date": date(2025, 6, 1), "penalty_valid_to": date(2026, 6, 1),
            "publicity_end_date": date(2026, 6, 1), "penalty_authority": "江岸区市场监督管理局",
            "penalty_authority_code": AUTHORITY, "data_source_unit": "江岸区市场监督管理局", "data_source_unit_code": AUTHORITY,
            "record_type": "行政处罚", **extra}


def jyyc_row(number: str, removed: date | None) -> dict:
    """One staged 经营异常名录 row."""
    return {"record_id": number, "subject_name": "武汉鑫达商贸有限公司", "subject_uscc": COMPANY, "legal_representative": "张伟",
            "abnormal_listing_reason": "未按期公示年度报告", "abnormal_listing_date": date(2025, 7, 1),
            "abnormal_listing_authority": "江岸区市场监督管理局", "abnormal_removal_reason": "补报年度报告" if removed else None,
            "abnormal_removal_date": removed, "abnormal_removal_authority": "江岸区市场监督管理局" if removed else None,
            "record_type": "经营异常名录", "subject_category": "02"}


def hhmd_row(number: str, kind: str, removed: date | None = None) -> dict:
    """One staged 红黑名单 row."""
    return {"record_id": number, "record_type": kind, "list_name": "重大税收违法失信主体", "subject_name": "武汉鑫达商贸有限公司",
            "subject_uscc": COMPANY, "legal_representative": "张伟", "list_reason": "偷税", "list_basis": "《办法》",
            "list_department": "国家税务总局湖北省税务局", "list_department_code": AUTHORITY, "list_date": date(2024, 1, 1),
            "list_end_date": date(2027, 1, 1), "list_removal_date": removed, "list_measures": "联合惩戒",
            "subject_category": "02"}


def court_row(number: str, code: str, name: str) -> dict:
    """One staged 失信被执行人 row."""
    return {"record_id": number, "debtor_name": name, "debtor_id_number": code, "legal_representative": None,
            "executing_court": "武汉市江岸区人民法院", "province": "湖北", "basis_document_number": "(2024)鄂0102民初1号",
            "filing_date": date(2025, 1, 2), "case_number": f"(2025)鄂0102执{number}号", "basis_issuer": "武汉市江岸区人民法院",
            "obligation": "偿还借款", "performance": "全部未履行", "dishonest_behaviour": "违反财产报告制度",
            "published_at": date(2025, 3, 4), "updated_at": datetime(2025, 3, 5, 6, 7, 8), "record_type": "失信被执行人"}


def all_claims() -> dict[str, object]:
    """Claims of one small batch of every credit source."""
    batches = {
        "credit_xzxk": [xzxk_row("1")],
        "credit_xzcf": [xzcf_row("1"), xzcf_row("2", subject_category="02", subject_uscc=COMPANY, subject_id_type=None,
                                                subject_id_number=None, subject_name="武汉鑫达商贸有限公司")],
        "credit_jyyc": [jyyc_row("1", None), jyyc_row("2", date(2026, 1, 5))],
        "credit_hhmd": [hhmd_row("1", "黑名单"), hhmd_row("2", "红名单", date(2025, 1, 1))],
        "court_sxbzxr": [court_row("1", PERSON, "张伟"), court_row("2", SHOP, "江岸区小王便利店"), court_row("3", COMPANY, "鑫达")],
    }
    return {source: CREDIT.claims(staged(source, rows), source) for source, rows in batches.items()}


def test_credit_claims_per_source(keyring) -> None:
    claims = all_claims()
    keys = [key for c in claims.values() for key in c.keys]
    assert len(keys) == len(set(keys)) == 10  # the court's "1" and the drops' "1" do not collide
    assert claims["court_sxbzxr"].keys[0] == "court_sxbzxr:1" and claims["credit_xzxk"].keys[0] == "credit_xzxk:1"
    permit = claims["credit_xzxk"].fields[0]
    assert permit["record_type"] == "行政许可" and permit["subject_kind"] == "04" and permit["subject_code"] == SHOP
    assert permit["status"] == "1" and permit["decision_date"] == date(2026, 3, 1) and permit["authority_code"] == AUTHORITY
    assert permit["content"]["permit_category"] == "1" and permit["content"]["permit_valid_to"] == "2031-02-28"
    penalty = claims["credit_xzcf"].fields[0]
    assert penalty["subject_kind"] == "01" and penalty["subject_code"] == PERSON and penalty["subject_id_type"] == "111"
    assert penalty["content"]["fine_amount"] == "0.5" and penalty["content"]["penalty_category"] == "02"
    assert PERSON not in json.dumps(penalty["content"], ensure_ascii=False)
    assert claims["credit_xzcf"].fields[1]["subject_code"] == COMPANY and claims["credit_xzcf"].fields[1]["subject_kind"] == "02"
    listed, removed = claims["credit_jyyc"].fields
    assert (listed["status"], listed["valid_until"]) == ("1", None)
    assert (removed["status"], removed["valid_until"]) == ("2", date(2026, 1, 5))
    black, red = claims["credit_hhmd"].fields
    assert black["record_type"] == "黑名单" and black["valid_until"] == date(2027, 1, 1) and black["status"] == "1"
    assert red["record_type"] == "红名单" and red["valid_until"] == date(2025, 1, 1) and red["status"] == "2"
    person, shop, company = claims["court_sxbzxr"].fields
    assert [f["subject_kind"] for f in (person, shop, company)] == ["01", "04", "02"]
    assert person["decision_no"] == "(2025)鄂0102执1号" and person["authority"] == "武汉市江岸区人民法院"
    assert claims["court_sxbzxr"].valid_from[0] == datetime(2025, 3, 5, 6, 7, 8, tzinfo=timezone.utc)
    assert claims["credit_hhmd"].valid_from[0] == datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_credit_claims_refuse_unkeyable_rows(keyring) -> None:
    with pytest.raises(ValueError, match="record_id"):
        CREDIT.claims(staged("credit_xzcf", [xzcf_row("1", record_id=None)]), "credit_xzcf")
    with pytest.raises(ValueError, match="主体代码"):
        CREDIT.claims(staged("credit_xzcf", [xzcf_row("1", subject_id_number=None)]), "credit_xzcf")
    with pytest.raises(ValueError, match="no credit adapter"):
        CREDIT.claims(staged("credit_xyz", [xzcf_row("1")]), "credit_xyz")


def test_credit_database_rows_on_both_databases(keyring, hub_db_url: str) -> None:
    upgrade(hub_db_url)
    claims = all_claims()
    built = []
    for source, batch in claims.items():
        built.extend(CREDIT.database_rows(batch.keys, batch.fields))
    by_id = {row["record_id"]: row for row in built}
    person = by_id["court_sxbzxr:1"]
    assert person["subject_code"] is None and person["subject_person_id"] == keyring.person_key(PERSON)
    assert keyring.decrypt(person["subject_id_enc"]) == PERSON
    assert by_id["credit_xzcf:1"]["subject_person_id"] == person["subject_person_id"]  # both link to the same person
    assert by_id["court_sxbzxr:2"]["subject_code"] == SHOP and by_id["court_sxbzxr:2"]["subject_person_id"] is None
    # A department that filed a person under category 02 without a USCC: still encrypted, never in clear.
    odd = CREDIT.database_rows(["x:1"], [{**claims["credit_xzcf"].fields[0], "subject_kind": "02"}])[0]
    assert odd["subject_code"] is None and odd["subject_person_id"] == keyring.person_key(PERSON)
    written = write(hub_db_url, CREDIT.table, built)
    assert len(written) == 10
    assert_no_plain(written, [PERSON])
    stored = {row["record_id"]: row for row in written}
    assert stored["credit_xzcf:1"]["content"]["fine_amount"] == "0.5"
    assert {row["record_type"] for row in written} == {"行政许可", "行政处罚", "经营异常名录", "黑名单", "红名单", "失信被执行人"}
