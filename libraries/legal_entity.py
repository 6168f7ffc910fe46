"""法人库 as the merge sees it: keyed by the USCC; registration facts are public, the representative's ID is not.

A USCC failing only its check character still loads (STANDARDS.md calls that a warning).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from hub.crypto import get_cipher, mask_resident_id
from hub.models import LegalEntity
from libraries.adapt import column, is_deleted, local_utc, plain, resident_ids
from libraries.spec import Claims

# golden field -> standard data element
ELEMENTS: dict[str, str] = {
    "uscc": "uscc", "name": "entity_name", "entity_kind": "entity_kind", "entity_type": "enterprise_type",
    "legal_rep_name": "legal_representative", "legal_rep_id": "legal_representative_id",
    "registered_capital": "registered_capital", "established_date": "establishment_date",
    "registration_authority": "registration_authority", "status": "status", "address": "registered_address",
    "region_code": "registration_region", "business_scope": "business_scope",
}


class LegalEntityLibrary:
    """The legal-entity library: legal_entity rows keyed by uscc."""

    name = "legal_entity"
    table: sa.Table = LegalEntity.__table__
    key_column = "uscc"
    shared_subjects = True  # 市场监管 and 民政 registers, plus linked rows of other sources
    fields: tuple[str, ...] = tuple(ELEMENTS)
    masks = {"legal_rep_id": mask_resident_id}

    def lookup_key(self, text: str) -> str:
        """The USCC as typed (trimmed, upper case)."""
        return text.strip().upper()

    def claims(self, rows: pa.Table, source_id: str) -> Claims:
        """One claim per staged row, with what the source carries."""
        out = Claims()
        deleted = is_deleted(rows)
        values = {name: column(rows, element) for name, element in ELEMENTS.items()}
        values["legal_rep_id"] = [r or v for r, v in zip(resident_ids(values["legal_rep_id"]), values["legal_rep_id"])]
        updated = column(rows, "updated_at")
        source_keys = column(rows, "_source_key")
        for i in range(rows.num_rows):
            if deleted[i]:
                continue  # a snapshot's delete row carries only the source key: the load withdraws it by that key
            key = plain(values["uscc"][i])
            if key is None:
                raise ValueError("法人库入库行缺少统一社会信用代码 a legal-entity row without a USCC reached the merge")
            fields = {name: plain(v[i]) for name, v in values.items()}
            out.add(key, fields, local_utc(updated[i]), i, source_key=str(source_keys[i]))
        return out

    def database_rows(self, keys: list[str], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Golden records → legal_entity rows; the representative's ID is hashed (link to person) and encrypted."""
        cipher = get_cipher()
        rep_ids = [r.get("legal_rep_id") for r in records]
        valid = resident_ids(rep_ids)
        rep_keys = cipher.index_hash_many(valid)
        rep_enc = cipher.encrypt_many(rep_ids)
        rows = []
        for i, r in enumerate(records):
            row = {name: r.get(name) for name in self.fields if name not in ("uscc", "legal_rep_id")}
            rows.append({"uscc": keys[i], **row, "legal_rep_person_id": rep_keys[i], "legal_rep_id_enc": rep_enc[i]})
        return rows


__all__ = ["ELEMENTS", "LegalEntityLibrary"]
