"""Derived views over the base libraries' current tables: 一人一档, 一企一档, credit summary, licence expiry calendar.

They read the golden tables only (person, legal_entity, licence, credit_record) and say, for each value, where
it came from: the field-level `lineage` column when the database has it (migration 0003), else the row's
source_id / run_id. Personal data is masked by default; `reveal=True` decrypts it (the caller decides who may).
Results are plain dicts (dates as date objects) ready for JSON; `libraries.views_cli` prints them.
"""

from __future__ import annotations

import calendar
import re
from collections import Counter
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import sqlalchemy as sa

from hub.crypto import get_cipher, mask_name, mask_phone, mask_resident_id
from hub.models import CreditRecord, LegalEntity, Licence, Person
from libraries.credit import content_amount, content_date
from schemas import identifiers
from schemas.code_tables import load_table

USCC_FORM = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")
VALID_STATUSES = frozenset({"1", "有效"})  # licence_status / credit_status code or label for "valid"
PENALTY_YEARS = 3
PROVENANCE = ("source_id", "run_id", "updated_at")


class ViewError(Exception):
    """A view cannot answer; the message is Chinese and names what to fix."""


class InvalidSubject(ViewError, ValueError):
    """The given resident ID or USCC is malformed."""


class SubjectNotFound(ViewError, LookupError):
    """No library knows the subject."""


# ---------------------------------------------------------------------------------------------
# Reading the tables (tolerating a database before migration 0003: no lineage column)
# ---------------------------------------------------------------------------------------------


def present_columns(connection: sa.Connection, table: sa.Table) -> set[str]:
    """Columns the database's table really has (the model may be ahead of the migrations)."""
    inspector = sa.inspect(connection)
    if not inspector.has_table(table.name):
        raise ViewError(f"数据库中没有表 {table.name}，请先运行 hub db upgrade 初始化数据库")
    return {column["name"] for column in inspector.get_columns(table.name)}


def select_rows(connection: sa.Connection, table: sa.Table, where: Any, order_by: Any = None) -> list[dict[str, Any]]:
    """Rows of a table as dicts, selecting only the columns the database has."""
    present = present_columns(connection, table)
    query = sa.select(*[column for column in table.c if column.name in present]).where(where)
    if order_by is not None:
        query = query.order_by(*order_by)
    return [dict(row._mapping) for row in connection.execute(query)]


def provenance(row: dict[str, Any]) -> dict[str, Any]:
    """Where a row's values came from: per-field lineage when present, always the last writer."""
    out: dict[str, Any] = {"source_id": row.get("source_id"), "run_id": row.get("run_id"), "updated_at": row.get("updated_at")}
    lineage = row.get("lineage")
    if lineage:
        out["fields"] = lineage
    return out


def code_label(table_name: str, code: str | None) -> str | None:
    """The Chinese label of a code (the value itself if it already is a label or unknown)."""
    if code is None:
        return None
    return load_table(table_name).label(code) or code


def decrypt(token: bytes | None) -> str | None:
    """Plain text of a ciphertext column (None stays None)."""
    return None if token is None else get_cipher().decrypt(bytes(token))


# ---------------------------------------------------------------------------------------------
# Subjects: resident IDs and USCCs as users type them
# ---------------------------------------------------------------------------------------------


def person_id_of(resident_id: str) -> str:
    """The person_id (HMAC) of a resident ID typed by a user; malformed → InvalidSubject."""
    text = (resident_id or "").strip()
    check = identifiers.check_resident_ids([text])
    if not bool(check.valid[0]):
        raise InvalidSubject(f"公民身份号码无效：{mask_resident_id(text)}（{check.reason[0]}）")
    return get_cipher().index_hash(str(check.normalised[0]))


def clean_uscc(uscc: str) -> str:
    """A USCC typed by a user, upper-cased; malformed → InvalidSubject (a failing check character is allowed:
    early pilot codes fail it and still load, as warnings)."""
    text = (uscc or "").strip().upper()
    if not USCC_FORM.match(text):
        raise InvalidSubject(f"统一社会信用代码格式错误：{text!r}（应为18位，字符集 0-9A-HJ-NPQRTUWXY）")
    return text


def parse_subject(subject: str) -> tuple[str, str]:
    """('person', person_id) for a resident ID, ('entity', uscc) for a USCC; anything else → InvalidSubject."""
    text = (subject or "").strip().upper()
    if USCC_FORM.match(text) and not identifiers.is_valid_resident_id(text):
        return "entity", text
    if re.fullmatch(r"\d{17}[\dX]|\d{15}", text):
        return "person", person_id_of(text)
    raise InvalidSubject(f"无法识别的主体代码：{text[:20]!r}（应为18位公民身份号码或统一社会信用代码）")


# ---------------------------------------------------------------------------------------------
# Items of the profiles
# ---------------------------------------------------------------------------------------------


def licence_item(row: dict[str, Any], reveal: bool, today: date) -> dict[str, Any]:
    """One licence for a profile or calendar: metadata, holder (masked if a natural person), source."""
    natural = row.get("holder_person_id") is not None
    holder = row.get("holder_name")
    item = {
        "licence_id": row["licence_id"],
        "licence_name": row.get("licence_name"),
        "licence_type_code": row.get("licence_type_code"),
        "licence_number": row.get("licence_number"),
        "issuer": row.get("issuer"),
        "issuer_code": row.get("issuer_code"),
        "issue_date": row.get("issue_date"),
        "holder_name": holder if reveal or not natural or holder is None else mask_name(holder),
        "holder_code": row.get("holder_code"),
        "holder_code_type": row.get("holder_code_type"),
        "valid_from": row.get("valid_from"),
        "valid_until": row.get("valid_until"),
        "status": row.get("status"),
        "status_label": code_label("licence_status", row.get("status")),
        "expired_still_valid": expired_still_valid(row, today),
        "source": provenance(row),
    }
    if natural and reveal:
        item["holder_code"] = decrypt(row.get("holder_code_enc"))
    if reveal or not natural:
        item["face_content"] = row.get("face_content") if not natural else _face(row.get("face_content_enc"))
    return item


def _face(token: bytes | None) -> Any:
    """Decrypted face content of a natural person's licence (JSON text → object)."""
    from libraries.licence import face_json

    return face_json(decrypt(token))


def expired_still_valid(row: dict[str, Any], today: date) -> bool:
    """A licence past its end date that its issuer still marks as valid (LIC-EXPIRED)."""
    until = row.get("valid_until")
    return until is not None and until < today and row.get("status") in VALID_STATUSES


def credit_item(row: dict[str, Any]) -> dict[str, Any]:
    """One credit record for a profile (content never holds ID numbers: libraries.credit keeps them out)."""
    return {
        "record_id": row["record_id"],
        "record_type": row.get("record_type"),
        "subject_name": row.get("subject_name"),
        "subject_kind": row.get("subject_kind"),
        "decision_no": row.get("decision_no"),
        "decision_date": row.get("decision_date"),
        "authority": row.get("authority"),
        "authority_code": row.get("authority_code"),
        "valid_until": row.get("valid_until"),
        "status": row.get("status"),
        "content": row.get("content") or {},
        "source": provenance(row),
    }


def entity_item(row: dict[str, Any], reveal: bool) -> dict[str, Any]:
    """A legal entity: registration facts are public; the representative's ID number is masked unless revealed."""
    rep_id = decrypt(row.get("legal_rep_id_enc"))
    item = {name: value for name, value in row.items()
            if name not in ("legal_rep_person_id", "legal_rep_id_enc", "lineage", *PROVENANCE)}
    item["legal_rep_id"] = rep_id if reveal or rep_id is None else mask_resident_id(rep_id)
    item["source"] = provenance(row)
    return item


def person_item(row: dict[str, Any], reveal: bool) -> dict[str, Any]:
    """The golden person: masked ID, name and phone by default, address and birth date only when revealed."""
    phone = decrypt(row.get("phone_enc"))
    name = row.get("name")
    return {
        "id_number": decrypt(row.get("id_number_enc")) if reveal else row.get("id_number_masked"),
        "name": name if reveal or name is None else mask_name(name),
        "gender": row.get("gender"),
        "gender_label": code_label("gender", row.get("gender")),
        "birth_date": row.get("birth_date") if reveal else None,
        "ethnicity": row.get("ethnicity"),
        "region_code": row.get("region_code"),
        "address": decrypt(row.get("address_enc")) if reveal else None,
        "phone": phone if reveal or phone is None else mask_phone(phone),
        "marital_status": row.get("marital_status"),
        "death_date": row.get("death_date"),
        "masked": not reveal,
        "source": provenance(row),
    }


# ---------------------------------------------------------------------------------------------
# 一人一档 / 一企一档
# ---------------------------------------------------------------------------------------------


def person_profile(engine: sa.Engine, resident_id: str, *, reveal: bool = False, today: date | None = None) -> dict[str, Any]:
    """一人一档: the golden person with per-field sources, the licences they hold, their credit records and the
    legal entities they represent. Unknown to every library → SubjectNotFound."""
    today = today or date.today()
    person_id = person_id_of(resident_id)
    with engine.connect() as connection:
        people = select_rows(connection, Person.__table__, Person.__table__.c.person_id == person_id)
        licences = select_rows(connection, Licence.__table__, Licence.__table__.c.holder_person_id == person_id,
                               (Licence.__table__.c.issue_date, Licence.__table__.c.licence_id))
        credit = select_rows(connection, CreditRecord.__table__, CreditRecord.__table__.c.subject_person_id == person_id,
                             (CreditRecord.__table__.c.decision_date, CreditRecord.__table__.c.record_id))
        entities = select_rows(connection, LegalEntity.__table__, LegalEntity.__table__.c.legal_rep_person_id == person_id,
                               (LegalEntity.__table__.c.uscc,))
    if not (people or licences or credit or entities):
        raise SubjectNotFound(f"各基础库中均没有此人：{mask_resident_id(resident_id.strip())}")
    return {
        "kind": "一人一档",
        "as_of": today,
        "person": person_item(people[0], reveal) if people else None,
        "licences": [licence_item(row, reveal, today) for row in licences],
        "credit_records": [credit_item(row) for row in credit],
        "legal_representative_of": [
            {"uscc": row["uscc"], "name": row.get("name"), "entity_kind": row.get("entity_kind"),
             "status": row.get("status"), "established_date": row.get("established_date"), "source": provenance(row)}
            for row in entities
        ],
        "credit_summary": summarise(credit, today),
    }


def company_profile(engine: sa.Engine, uscc: str, *, reveal: bool = False, today: date | None = None) -> dict[str, Any]:
    """一企一档: the golden legal entity, licences it holds, its credit records and their summary."""
    today = today or date.today()
    code = clean_uscc(uscc)
    with engine.connect() as connection:
        entities = select_rows(connection, LegalEntity.__table__, LegalEntity.__table__.c.uscc == code)
        licences = select_rows(connection, Licence.__table__, Licence.__table__.c.holder_code == code,
                               (Licence.__table__.c.issue_date, Licence.__table__.c.licence_id))
        credit = select_rows(connection, CreditRecord.__table__, CreditRecord.__table__.c.subject_code == code,
                             (CreditRecord.__table__.c.decision_date, CreditRecord.__table__.c.record_id))
    if not (entities or licences or credit):
        raise SubjectNotFound(f"各基础库中均没有此主体：统一社会信用代码 {code}")
    return {
        "kind": "一企一档",
        "as_of": today,
        "entity": entity_item(entities[0], reveal) if entities else None,
        "licences": [licence_item(row, reveal, today) for row in licences],
        "credit_records": [credit_item(row) for row in credit],
        "credit_summary": summarise(credit, today),
    }


# ---------------------------------------------------------------------------------------------
# Credit summary
# ---------------------------------------------------------------------------------------------


def years_before(day: date, years: int) -> date:
    """The same calendar day `years` earlier (29 February → 28 February)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def list_entry(row: dict[str, Any], today: date) -> dict[str, Any]:
    """A red/black-list entry with whether it is in force today (listed, not past its end, not removed)."""
    content = row.get("content") or {}
    listed = content_date(content.get("list_date")) or row.get("decision_date")
    removed = content_date(content.get("list_removal_date"))
    until = content_date(content.get("list_end_date")) or (None if removed else row.get("valid_until"))
    active = ((listed is None or listed <= today) and (removed is None or removed > today)
              and (until is None or until >= today) and row.get("status") != "2")
    return {"record_id": row["record_id"], "list_name": content.get("list_name"), "listed_on": listed,
            "valid_until": until, "removed_on": removed, "active": active, "reason": content.get("list_reason"),
            "measures": content.get("list_measures"), "authority": row.get("authority"),
            "source_id": row.get("source_id")}


def abnormal_entry(row: dict[str, Any], today: date) -> dict[str, Any]:
    """An abnormal-operations listing with whether the enterprise is still on the list today."""
    content = row.get("content") or {}
    listed = content_date(content.get("abnormal_listing_date")) or row.get("decision_date")
    removed = content_date(content.get("abnormal_removal_date")) or row.get("valid_until")
    active = (listed is None or listed <= today) and (removed is None or removed > today)
    return {"record_id": row["record_id"], "listed_on": listed, "reason": content.get("abnormal_listing_reason"),
            "authority": row.get("authority"), "removed_on": removed, "removal_reason": content.get("abnormal_removal_reason"),
            "active": active, "source_id": row.get("source_id")}


def penalty_summary(rows: list[dict[str, Any]], today: date) -> dict[str, Any]:
    """Penalties decided in the last three years (window inclusive at both ends): count, latest, amounts."""
    start = years_before(today, PENALTY_YEARS)
    recent = [r for r in rows if r.get("decision_date") is not None and start <= r["decision_date"] <= today]
    recent.sort(key=lambda r: (r["decision_date"], r["record_id"]))
    fines = [a for a in (content_amount((r.get("content") or {}).get("fine_amount")) for r in recent) if a is not None]
    seized = [a for a in (content_amount((r.get("content") or {}).get("confiscation_amount")) for r in recent) if a is not None]
    latest = recent[-1] if recent else None
    return {
        "window_from": start, "window_to": today, "count": len(recent),
        "latest": None if latest is None else {
            "record_id": latest["record_id"], "decision_no": latest.get("decision_no"),
            "decision_date": latest["decision_date"], "authority": latest.get("authority"),
            "penalty_category": code_label("penalty_categories", (latest.get("content") or {}).get("penalty_category")),
            "penalty_content": (latest.get("content") or {}).get("penalty_content"), "source_id": latest.get("source_id")},
        "total_fine_wan_yuan": format(sum(fines, Decimal(0)).normalize(), "f") if fines else None,
        "total_confiscation_wan_yuan": format(sum(seized, Decimal(0)).normalize(), "f") if seized else None,
    }


def summarise(rows: list[dict[str, Any]], today: date) -> dict[str, Any]:
    """The credit summary of one subject's credit_record rows as of `today`."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_type.setdefault(row.get("record_type"), []).append(row)
    black = [list_entry(r, today) for r in by_type.get("黑名单", [])]
    red = [list_entry(r, today) for r in by_type.get("红名单", [])]
    abnormal = [abnormal_entry(r, today) for r in by_type.get("经营异常名录", [])]
    debtor = [{"record_id": r["record_id"], "case_number": r.get("decision_no"), "published_on": r.get("decision_date"),
               "court": r.get("authority"), "performance": (r.get("content") or {}).get("performance"),
               "active": (r.get("valid_until") is None or r["valid_until"] >= today) and r.get("status") != "2",
               "source_id": r.get("source_id")}
              for r in by_type.get("失信被执行人", [])]
    return {
        "as_of": today,
        "records": dict(Counter(row.get("record_type") for row in rows)),
        "black_list": {"active": any(e["active"] for e in black), "entries": black},
        "red_list": {"active": any(e["active"] for e in red), "entries": red},
        "penalties_3y": penalty_summary(by_type.get("行政处罚", []), today),
        "abnormal_operations": {"listed": any(e["active"] for e in abnormal), "entries": abnormal},
        "dishonest_debtor": {"active": any(e["active"] for e in debtor), "entries": debtor},
    }


def credit_summary(engine: sa.Engine, subject: str, *, today: date | None = None) -> dict[str, Any]:
    """Credit summary of a subject given by USCC or resident ID; unknown to every library → SubjectNotFound."""
    today = today or date.today()
    kind, key = parse_subject(subject)
    table = CreditRecord.__table__
    where = table.c.subject_person_id == key if kind == "person" else table.c.subject_code == key
    with engine.connect() as connection:
        rows = select_rows(connection, table, where, (table.c.decision_date, table.c.record_id))
        known = bool(rows) or _known_subject(connection, kind, key)
    if not known:
        shown = mask_resident_id(subject.strip()) if kind == "person" else key
        raise SubjectNotFound(f"各基础库中均没有此主体：{shown}")
    summary = summarise(rows, today)
    name = rows[-1].get("subject_name") if rows else None
    shown = mask_resident_id(subject.strip().upper()) if kind == "person" else key
    summary["subject"] = {"kind": "自然人" if kind == "person" else "法人和其他组织", "code": shown,
                          "name": mask_name(name) if kind == "person" and name else name}
    return summary


def _known_subject(connection: sa.Connection, kind: str, key: str) -> bool:
    """Whether the population/legal-entity library or the licence library knows the subject."""
    if kind == "person":
        checks = [(Person.__table__, Person.__table__.c.person_id == key),
                  (Licence.__table__, Licence.__table__.c.holder_person_id == key),
                  (LegalEntity.__table__, LegalEntity.__table__.c.legal_rep_person_id == key)]
    else:
        checks = [(LegalEntity.__table__, LegalEntity.__table__.c.uscc == key),
                  (Licence.__table__, Licence.__table__.c.holder_code == key)]
    for table, where in checks:
        present_columns(connection, table)
        if connection.execute(sa.select(sa.literal(1)).select_from(table).where(where).limit(1)).first():
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Licence expiry calendar
# ---------------------------------------------------------------------------------------------


def months_between(start: date, end: date) -> list[str]:
    """Every month 'YYYY-MM' from start's to end's, inclusive."""
    out, year, month = [], start.year, start.month
    while (year, month) <= (end.year, end.month):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def licence_expiry_calendar(engine: sa.Engine, start: date, end: date, *, issuer_code: str | None = None,
                            licence_type_code: str | None = None, today: date | None = None,
                            reveal: bool = False) -> dict[str, Any]:
    """Licences whose validity ends in [start, end] (both inclusive), per day and per month, with counts and
    lists; licences already past their end but still marked valid are flagged (expired_still_valid)."""
    if start > end:
        raise ViewError(f"起始日期 {start} 晚于截止日期 {end}")
    today = today or date.today()
    table = Licence.__table__
    where = sa.and_(table.c.valid_until >= start, table.c.valid_until <= end)
    if issuer_code:
        where = sa.and_(where, table.c.issuer_code == issuer_code.strip().upper())
    if licence_type_code:
        where = sa.and_(where, table.c.licence_type_code == licence_type_code.strip().upper())
    with engine.connect() as connection:
        rows = select_rows(connection, table, where, (table.c.valid_until, table.c.licence_id))
    items = [licence_item(row, reveal, today) for row in rows]
    for item in items:
        item.pop("face_content", None)  # a calendar lists licences, it does not show their faces
    ends = np.array([r["valid_until"] for r in rows], dtype="datetime64[D]")
    stale = np.array([i["expired_still_valid"] for i in items], dtype=bool)
    month_of = ends.astype("datetime64[M]").astype(str) if len(ends) else np.array([], dtype=str)
    per_month = Counter(month_of.tolist())
    stale_month = Counter(month_of[stale].tolist())
    days: list[dict[str, Any]] = []
    for item in items:  # rows come sorted by valid_until: consecutive runs are the days
        if not days or days[-1]["date"] != item["valid_until"]:
            days.append({"date": item["valid_until"], "count": 0, "expired_still_valid": 0, "licences": []})
        days[-1]["count"] += 1
        days[-1]["expired_still_valid"] += int(item["expired_still_valid"])
        days[-1]["licences"].append(item)
    return {
        "kind": "证照到期日历",
        "from": start, "to": end, "as_of": today,
        "filters": {"issuer_code": issuer_code, "licence_type_code": licence_type_code},
        "total": len(items),
        "expired_still_valid": int(stale.sum()),
        "months": [{"month": m, "count": per_month.get(m, 0), "expired_still_valid": stale_month.get(m, 0),
                    "days_in_month": calendar.monthrange(int(m[:4]), int(m[5:]))[1]} for m in months_between(start, end)],
        "days": days,
    }


__all__ = ["InvalidSubject", "SubjectNotFound", "ViewError", "company_profile", "credit_summary",
           "licence_expiry_calendar", "person_profile", "summarise", "years_before"]
