"""电子证照库 as the merge sees it: staged licence drops of every issuing department → claims → licence rows.

Every licence_* source carries the same standard elements (connectors/sources.yaml, `&licence_fields`), keyed by
证照标识 (GB/T 36904). Claims hold plain values; `database_rows` encrypts what identifies a natural person:
the holder's ID number (kept as an HMAC link to the population library plus a ciphertext) and the face content
(照面信息 of a marriage certificate names both spouses with their ID numbers).
The hub's seal columns are written by the e-licence service, not by the merge, so they are not golden fields.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from hub.crypto import get_cipher
from hub.models import Licence
from libraries.spec import Claims
from schemas import identifiers
from schemas.code_tables import load_table

RESIDENT_ID_TYPE = "111"
USCC_TYPE = "001"
CHANGE = "_change"  # snapshot landings mark withdrawn records with "delete" (schemas.mapping)
# staged element → golden field, where the names differ (the table's column names are the golden names)
RENAMED = {"holder": "holder_name", "valid_to": "valid_until"}
FIELDS: tuple[str, ...] = (
    "licence_name", "licence_type_code", "licence_number", "issuer", "issuer_code", "issue_date", "holder_name",
    "holder_code", "holder_code_type", "valid_from", "valid_until", "status", "face_content", "related_licence_id",
)
# When a staged row says when the fact became true at the source (none of today's drops do; a future API may).
UPDATED_COLUMNS = ("updated_at", "update_time", "modified_at")


def as_codes(values: list[Any], table_name: str, aliases: dict[str, str] | None = None) -> list[Any]:
    """Code-table values as codes: a label or alias the quality rules accepted (有效, 身份证) becomes its code.

    Looked up once per distinct value, so a million rows with a handful of labels cost a dict pass.
    """
    table = load_table(table_name)
    aliases = aliases or {}
    mapping: dict[Any, Any] = {}
    for value in set(values):
        if value is None or value in table:
            mapping[value] = value
        else:
            mapping[value] = aliases.get(value) or table.code_for_label(value) or value
    return [mapping[v] for v in values]


def natural_holder_types() -> frozenset[str]:
    """Holder/subject ID types that identify a natural person (holder_id_types.holder_kind = natural)."""
    table = load_table("holder_id_types")
    kinds = table.column("holder_kind")
    return frozenset(code for code, kind in zip(table.codes, kinds) if kind == "natural")


def utc_midnight(day: date | None) -> datetime | None:
    """A date as the aware-UTC instant it began (claims' valid_from are datetimes)."""
    return None if day is None else datetime.combine(day, time(0), tzinfo=timezone.utc)


def aware_utc(value: datetime | date | None) -> datetime | None:
    """A staged timestamp (naive = UTC, as the normaliser writes it) or date as an aware-UTC datetime."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        return utc_midnight(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def claim_times(rows: pa.Table, fallback: str) -> list[datetime | None]:
    """valid_from of each row's claim: its update timestamp if the source sends one, else the fallback date."""
    for name in UPDATED_COLUMNS:
        if name in rows.column_names:
            stamps = [aware_utc(v) for v in rows.column(name).to_pylist()]
            backup = rows.column(fallback).to_pylist() if fallback in rows.column_names else [None] * rows.num_rows
            return [s if s is not None else utc_midnight(b) for s, b in zip(stamps, backup)]
    if fallback not in rows.column_names:
        return [None] * rows.num_rows
    return [utc_midnight(v) for v in rows.column(fallback).to_pylist()]


def deleted_flags(rows: pa.Table) -> list[bool]:
    """True where a snapshot landing says the source withdrew the record."""
    if CHANGE not in rows.column_names:
        return [False] * rows.num_rows
    return pc.fill_null(pc.equal(rows.column(CHANGE), "delete"), False).to_pylist()


def require_keys(rows: pa.Table, column: str, library: str, source_id: str) -> list[str]:
    """The key column as text, refusing empty keys (the quality stage quarantines them: reaching here is a bug)."""
    if column not in rows.column_names:
        raise ValueError(f"{library}: 数据源 {source_id} 的暂存行缺少 {column} staged rows have no {column} column")
    keys = rows.column(column)
    missing = pc.or_kleene(pc.is_null(keys), pc.equal(pc.utf8_trim_whitespace(pc.cast(keys, pa.string())), ""))
    if pc.any(missing).as_py():
        first = int(np.flatnonzero(missing.to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"{library}: 数据源 {source_id} 第 {first} 行缺少主键 {column} a staged row without {column} reached the merge")
    return pc.cast(keys, pa.string()).to_pylist()


def face_json(text: str | dict | None) -> dict[str, Any] | None:
    """照面信息 as a JSON object (text that is not a JSON object is kept whole under 原文)."""
    if text is None or isinstance(text, dict):
        return text
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {"原文": text}
    return value if isinstance(value, dict) else {"原文": text}


def face_text(value: str | dict | None) -> str | None:
    """照面信息 as JSON text (what face_content_enc encrypts).

    Text that already looks like a JSON object is encrypted as sent: parsing and re-dumping a million faces
    would double the merge's cost, and readers parse with face_json, which tolerates anything.
    """
    if value is None:
        return None
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return value
    return json.dumps(face_json(value), ensure_ascii=False, sort_keys=True)


def person_keys(codes: list[str | None], types: list[str | None]) -> tuple[list[str | None], list[str | None]]:
    """Lookup key and ID text to encrypt for natural persons' ID numbers, vectorised.

    A valid resident ID (unless typed as another document) is normalised (15 → 18 digits) and hashed like
    person.person_id, so it links to the population library. Any other ID of a natural person (passport, a
    resident ID failing its check that survivorship still chose) is hashed as "<type>:<code>" — never equal
    to a person_id, never stored in clear.
    """
    check = identifiers.check_resident_ids(np.array(codes, dtype=object))
    normalised = check.normalised.tolist()
    valid = check.valid.tolist()
    other_documents = natural_holder_types() - {RESIDENT_ID_TYPE}  # a passport number is never a resident ID
    plain: list[str | None] = []
    hashed_input: list[str | None] = []
    for code, kind, ok, norm in zip(codes, types, valid, normalised):
        if code is None:
            plain.append(None)
            hashed_input.append(None)
        elif ok and kind not in other_documents:
            plain.append(norm)
            hashed_input.append(norm)
        else:
            plain.append(code)
            hashed_input.append(f"{kind or ''}:{code}")
    return get_cipher().index_hash_many(hashed_input), plain


class LicenceLibrary:
    """电子证照库 (LibrarySpec): keyed by 证照标识."""

    name = "licence"
    table: sa.Table = Licence.__table__
    key_column = "licence_id"
    shared_subjects = False  # one issuing system per licence
    fields: tuple[str, ...] = FIELDS

    def claims(self, rows: pa.Table, source_id: str) -> Claims:
        """Staged rows of a licence_* source → one claim per row, keyed by 证照标识."""
        claims = Claims()
        if rows.num_rows == 0:
            return claims
        keys = require_keys(rows, "licence_id", self.name, source_id)
        columns = {RENAMED.get(name, name): rows.column(name).to_pylist() for name in rows.column_names
                   if RENAMED.get(name, name) in FIELDS}
        if "status" in columns:
            columns["status"] = as_codes(columns["status"], "licence_status")
        if "holder_code_type" in columns:
            columns["holder_code_type"] = as_codes(columns["holder_code_type"], "holder_id_types")
        names = [name for name in FIELDS if name in columns]
        values = [columns[name] for name in names]
        times = claim_times(rows, "issue_date")
        deleted = deleted_flags(rows)
        for i, key in enumerate(keys):
            if deleted[i]:  # a tombstone names only the key
                claims.add(key, {}, times[i], i, deleted=True)
                continue
            claims.add(key, {name: column[i] for name, column in zip(names, values)}, times[i], i)
        return claims

    def database_rows(self, keys: list[str], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Golden licences → licence rows; natural persons' holder codes and face content are encrypted."""
        if not records:
            return []
        cipher = get_cipher()
        natural_types = natural_holder_types()
        codes = [r.get("holder_code") for r in records]
        # A resident ID is personal data whatever code type survivorship paired it with: never in clear.
        looks_personal = identifiers.check_resident_ids(np.array(codes, dtype=object)).valid.tolist()
        natural = [r.get("holder_code_type") in natural_types or personal for r, personal in zip(records, looks_personal)]
        at = [i for i, flag in enumerate(natural) if flag]
        hashes, plain_ids = person_keys([records[i].get("holder_code") for i in at],
                                        [records[i].get("holder_code_type") for i in at])
        ids_enc = cipher.encrypt_many(plain_ids)
        faces_enc = cipher.encrypt_many([face_text(records[i].get("face_content")) for i in at])
        out = []
        for key, record, person in zip(keys, records, natural):
            row = {name: record.get(name) for name in FIELDS}
            row["licence_id"] = key
            row["holder_person_id"] = row["holder_code_enc"] = row["face_content_enc"] = None
            row["face_content"] = None if person else face_json(row["face_content"])  # persons' faces: encrypted below
            out.append(row)
        for j, i in enumerate(at):
            out[i].update(holder_code=None, holder_person_id=hashes[j], holder_code_enc=ids_enc[j],
                          face_content=None, face_content_enc=faces_enc[j])
        return out


LIBRARY = LicenceLibrary()

__all__ = ["FIELDS", "LIBRARY", "LicenceLibrary", "as_codes", "aware_utc", "claim_times", "face_json", "face_text",
           "natural_holder_types", "person_keys", "utc_midnight"]
