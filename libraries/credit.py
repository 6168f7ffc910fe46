"""信用库 as the merge sees it: 双公示 (行政许可, 行政处罚), 经营异常名录, 红黑名单 and 失信被执行人 → credit_record.

Each source has its own elements (schemas/data/elements/credit.csv, groups admin_licence, admin_penalty,
abnormal_operation, red_black_list, dishonest_debtor). An adapter per source maps them onto the common columns
of credit_record (subject, decision number and date, authority, valid until, status) and keeps the rest,
under their element names, in `content`. Record numbers are each source's own (XK…, CF…, YC…, MD…, and the
court's plain integers), so a record's key is "<source_id>:<record number>": unique across sources.

Natural persons (subject kind 01) are never stored with their ID number in clear: the golden `subject_code`
holds it plainly (claims and history are encrypted whole by the merge) and `database_rows` turns it into
subject_person_id (HMAC, the population library's person_id) + subject_id_enc. `content` never holds an ID number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from hub.crypto import get_cipher
from hub.models import CREDIT_RECORD_TYPES, CreditRecord
from libraries.licence import as_codes, claim_times, deleted_flags, person_keys, require_keys
from libraries.spec import Claims
from schemas import identifiers
from schemas.code_tables import load_table

NATURAL_PERSON = "01"
LEGAL_PERSON = "02"
INDIVIDUAL_BUSINESS = "04"
RESIDENT_ID_TYPE = "111"
# Values departments send for the ID type that mean a resident ID (quality/rules/credit.yaml aliases).
ID_TYPE_ALIASES = {"身份证": RESIDENT_ID_TYPE, "居民身份证": RESIDENT_ID_TYPE}
FIELDS: tuple[str, ...] = (
    "record_type", "subject_name", "subject_kind", "subject_code", "subject_id_type", "decision_no", "decision_date",
    "authority", "authority_code", "content", "valid_until", "status",
)
# Golden fields that are not credit_record columns (database_rows folds them elsewhere).
NOT_COLUMNS = ("subject_id_type",)
# Elements that name a natural person's ID number: never copied into content.
ID_ELEMENTS = frozenset({"subject_id_number", "debtor_id_number", "subject_uscc", "subject_id_type"})
VALID, INVALID = "1", "2"  # credit_status codes


@dataclass(frozen=True)
class SourceShape:
    """How one credit source's elements map onto credit_record's common columns."""

    name: str  # element holding the subject's name
    decision_no: str | None
    decision_date: str | None
    authority: str | None
    authority_code: str | None
    valid_until: tuple[str, ...] = ()  # first non-null element wins (removal before end of validity)
    status: str | None = None  # element with a credit_status code; None = derived from valid_until/removal
    removal: str | None = None  # element whose presence means the record was withdrawn (status 2)
    content: tuple[str, ...] = field(default_factory=tuple)


SHAPES: dict[str, SourceShape] = {
    "credit_xzxk": SourceShape(
        "subject_name", "permit_document_number", "permit_decision_date", "permit_authority", "permit_authority_code",
        ("permit_valid_to",), status="permit_status",
        content=("legal_representative", "permit_document_name", "permit_category", "permit_certificate_name",
                 "permit_number", "permit_content", "permit_valid_from", "permit_valid_to", "data_source_unit",
                 "data_source_unit_code")),
    "credit_xzcf": SourceShape(
        "subject_name", "penalty_document_number", "penalty_decision_date", "penalty_authority", "penalty_authority_code",
        ("publicity_end_date",),
        content=("legal_representative", "violation_type", "violation_facts", "penalty_basis", "penalty_category",
                 "penalty_content", "fine_amount", "confiscation_amount", "penalty_valid_to", "publicity_end_date",
                 "data_source_unit", "data_source_unit_code")),
    "credit_jyyc": SourceShape(
        "subject_name", None, "abnormal_listing_date", "abnormal_listing_authority", None,
        ("abnormal_removal_date",), removal="abnormal_removal_date",
        content=("legal_representative", "abnormal_listing_reason", "abnormal_listing_date", "abnormal_removal_reason",
                 "abnormal_removal_date", "abnormal_removal_authority")),
    "credit_hhmd": SourceShape(
        "subject_name", None, "list_date", "list_department", "list_department_code",
        ("list_removal_date", "list_end_date"), removal="list_removal_date",
        content=("legal_representative", "list_name", "list_reason", "list_basis", "list_measures", "list_date",
                 "list_end_date", "list_removal_date")),
    "court_sxbzxr": SourceShape(
        "debtor_name", "case_number", "published_at", "executing_court", None,
        content=("legal_representative", "province", "basis_document_number", "filing_date", "basis_issuer",
                 "obligation", "performance", "dishonest_behaviour", "published_at")),
}
# Code elements kept in content as codes (a label a department sent becomes its code).
CONTENT_CODES = {"permit_category": "licence_categories", "penalty_category": "penalty_categories"}


def record_key(source_id: str, record_no: str) -> str:
    """The library key of a source's record: source id and the source's own record number."""
    return f"{source_id}:{record_no}"


def json_value(value: Any) -> Any:
    """A content value as JSON: dates as ISO text, amounts as exact decimal text."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return value


def record_types(values: list[Any]) -> list[Any]:
    """Record types as credit_record expects them: labels (行政许可…); a code (admin_penalty) becomes its label."""
    table = load_table("credit_record_types")
    return [v if v is None or v in CREDIT_RECORD_TYPES else (table.label(v) or v) for v in values]


def debtor_kinds(codes: list[str | None]) -> tuple[list[str | None], list[str | None]]:
    """Subject kind and ID type of the court's debtors, read off the number itself (the API sends no category).

    A valid resident ID is a natural person; an 18-character code of category 92 an individual business; any
    other code a legal person (the court's list does not tell non-legal-person organisations apart).
    """
    check = identifiers.check_resident_ids(np.array(codes, dtype=object))
    kinds: list[str | None] = []
    types: list[str | None] = []
    for code, person in zip(codes, check.valid.tolist()):
        if code is None:
            kinds.append(None)
            types.append(None)
        elif person:
            kinds.append(NATURAL_PERSON)
            types.append(RESIDENT_ID_TYPE)
        else:
            kinds.append(INDIVIDUAL_BUSINESS if code[:2] == "92" else LEGAL_PERSON)
            types.append("001")
    return kinds, types


def subjects(columns: dict[str, list[Any]], source_id: str, rows: int) -> tuple[list, list, list]:
    """Subject kind, code (USCC or, for natural persons, the ID number) and ID type of every staged row."""
    if source_id == "court_sxbzxr":
        codes = columns.get("debtor_id_number") or [None] * rows
        kinds, types = debtor_kinds(codes)
        return kinds, codes, types
    kinds = as_codes(columns.get("subject_category") or [None] * rows, "subject_categories")
    usccs = columns.get("subject_uscc") or [None] * rows
    numbers = columns.get("subject_id_number") or [None] * rows
    types = as_codes(columns.get("subject_id_type") or [None] * rows, "holder_id_types", ID_TYPE_ALIASES)
    codes = [n if (k == NATURAL_PERSON or u is None) and n is not None else u for k, u, n in zip(kinds, usccs, numbers)]
    types = [t or (RESIDENT_ID_TYPE if k == NATURAL_PERSON else None) for t, k in zip(types, kinds)]
    return kinds, codes, types


def first_present(columns: dict[str, list[Any]], names: tuple[str, ...], i: int) -> Any:
    """The first non-null value among the named elements of row i."""
    for name in names:
        value = columns.get(name, ())
        if value and value[i] is not None:
            return value[i]
    return None


class CreditLibrary:
    """信用库 (LibrarySpec): keyed by "<source_id>:<record number>"."""

    name = "credit"
    table: sa.Table = CreditRecord.__table__
    key_column = "record_id"
    shared_subjects = False  # a record id is "<source_id>:<record number>"
    fields: tuple[str, ...] = FIELDS

    def claims(self, rows: pa.Table, source_id: str) -> Claims:
        """Staged rows of one credit source → one claim per record."""
        claims = Claims()
        if rows.num_rows == 0:
            return claims
        shape = SHAPES.get(source_id)
        if shape is None:
            raise ValueError(f"信用库没有数据源 {source_id} 的映射 no credit adapter for source {source_id}")
        numbers = require_keys(rows, "record_id", self.name, source_id)
        columns = rows.to_pydict()
        n = rows.num_rows
        for name, table in CONTENT_CODES.items():
            if name in columns:
                columns[name] = as_codes(columns[name], table)
        kinds, codes, types = subjects(columns, source_id, n)
        types_out = [t if k == NATURAL_PERSON else None for t, k in zip(types, kinds)]
        rtypes = record_types(columns.get("record_type") or [None] * n)
        status = as_codes(columns[shape.status], "credit_status") if shape.status in columns else [None] * n
        times = claim_times(rows, shape.decision_date or "")
        deleted = deleted_flags(rows)
        content_names = [c for c in shape.content if c in columns and c not in ID_ELEMENTS]
        get = lambda name, i: columns[name][i] if name and name in columns else None  # noqa: E731 - optional elements
        for i in range(n):
            key = record_key(source_id, numbers[i])
            if deleted[i]:
                claims.add(key, {}, times[i], i, deleted=True)
                continue
            if codes[i] is None:  # CHECK (subject_code or subject_person_id): a record about nobody cannot load
                raise ValueError(f"信用库: 数据源 {source_id} 记录 {numbers[i]} 缺少主体代码（统一社会信用代码或证件号码）"
                                 " a credit record without a subject code reached the merge")
            removed = shape.removal is not None and get(shape.removal, i) is not None
            content = {c: json_value(columns[c][i]) for c in content_names if columns[c][i] is not None}
            claims.add(key, {
                "record_type": rtypes[i],
                "subject_name": get(shape.name, i),
                "subject_kind": kinds[i],
                "subject_code": codes[i],
                "subject_id_type": types_out[i],
                "decision_no": get(shape.decision_no, i),
                "decision_date": get(shape.decision_date, i),
                "authority": get(shape.authority, i),
                "authority_code": get(shape.authority_code, i),
                "content": content,
                "valid_until": first_present(columns, shape.valid_until, i),
                "status": status[i] if shape.status else (INVALID if removed else VALID if shape.removal else None),
            }, times[i], i)
        return claims

    def database_rows(self, keys: list[str], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Golden credit records → credit_record rows; natural persons' ID numbers hashed and encrypted."""
        if not records:
            return []
        codes = [r.get("subject_code") for r in records]
        # A resident ID is personal data whatever category the department gave its subject: never in clear.
        looks_personal = identifiers.check_resident_ids(np.array(codes, dtype=object)).valid.tolist()
        at = [i for i, r in enumerate(records)
              if codes[i] and (r.get("subject_kind") == NATURAL_PERSON or looks_personal[i])]
        hashes, plain_ids = person_keys([records[i]["subject_code"] for i in at],
                                        [records[i].get("subject_id_type") for i in at])
        ids_enc = get_cipher().encrypt_many(plain_ids)
        out = []
        for key, record in zip(keys, records):
            row = {name: record.get(name) for name in FIELDS if name not in NOT_COLUMNS}
            row.update(record_id=key, subject_person_id=None, subject_id_enc=None)
            row["content"] = {name: value for name, value in (record.get("content") or {}).items() if name not in ID_ELEMENTS}
            out.append(row)
        for j, i in enumerate(at):
            out[i].update(subject_code=None, subject_person_id=hashes[j], subject_id_enc=ids_enc[j])
            id_type = records[i].get("subject_id_type")
            if id_type not in (None, RESIDENT_ID_TYPE):  # which document the encrypted number is (passport, …)
                out[i]["content"]["subject_id_type"] = id_type
        return out


LIBRARY = CreditLibrary()


def content_date(value: Any) -> date | None:
    """A date from a column value or the ISO text this module writes into `content` (None when absent or not a date)."""
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def content_amount(value: Any) -> Decimal | None:
    """An amount from `content` (the exact decimal text this module writes, or a number); None when absent or not one."""
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None

__all__ = ["FIELDS", "LIBRARY", "SHAPES", "CreditLibrary", "record_key"]
