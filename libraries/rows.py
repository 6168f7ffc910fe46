"""Per-library row builders: how standardised rows that passed the quality stage become database rows.

Which rows load is the quality stage's decision (quality/, the rule catalogue); a builder only turns them into
rows and upserts them. Personal data of natural persons is encrypted here, before it reaches the database,
and keyed by an HMAC of the resident ID so lookups by ID need no decryption.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from hub.crypto import get_cipher, mask_resident_id
from hub.models import LegalEntity, Person
from schemas import identifiers
from schemas.code_tables import load_table

UPSERT_CHUNK = 5_000


class RowBuilder(Protocol):
    """How one base library takes rows in (rows that passed the quality stage)."""

    def database_rows(self, table: pa.Table, learnt_at: datetime) -> list[dict[str, Any]]:
        """Standardised rows → database rows; learnt_at = when the hub extracted them."""
        ...

    def upsert(self, engine: sa.Engine, rows: list[dict[str, Any]]) -> None:
        """Insert or update the rows by primary key."""
        ...


def standard_codes(values: list[Any], table_name: str) -> list[Any]:
    """Code-table values as codes: a label the quality rules accepted (e.g. 男) becomes its code (1)."""
    table = load_table(table_name)
    return [v if v is None or v in table else (table.code_for_label(v) or v) for v in values]


def _last_per_key(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """One row per key, the last one seen (an upsert statement may not touch a row twice)."""
    return list({row[key]: row for row in rows}.values())


def upsert(engine: sa.Engine, table: sa.Table, rows: list[dict[str, Any]], key: str) -> None:
    """INSERT … ON CONFLICT (key) DO UPDATE, on SQLite and PostgreSQL alike, in chunks."""
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[engine.dialect.name]
    rows = _last_per_key(rows, key)
    with engine.begin() as connection:
        for start in range(0, len(rows), UPSERT_CHUNK):
            chunk = rows[start : start + UPSERT_CHUNK]
            statement = dialect.insert(table)
            updates = {name: statement.excluded[name] for name in chunk[0] if name != key}
            connection.execute(statement.on_conflict_do_update(index_elements=[key], set_=updates), chunk)


class PopulationRows:
    """人口库: keyed by the HMAC of the (18-character) resident ID."""

    def database_rows(self, table: pa.Table, learnt_at: datetime) -> list[dict[str, Any]]:
        """Standardised rows → person rows, encrypting ID, address and phone (legacy 15-digit IDs become 18-digit)."""
        if table.num_rows == 0:
            return []
        cipher = get_cipher()
        check = identifiers.check_resident_ids(table.column("resident_id"))
        ids = [n if ok else None for n, ok in zip(check.normalised.tolist(), check.valid.tolist())]
        if None in ids:  # the quality stage quarantines these; reaching here is a bug, not bad data
            raise ValueError("人口库入库行缺少有效身份号码 a population row without a valid resident ID reached the loader")
        columns = table.to_pydict()
        columns["gender"] = standard_codes(columns["gender"], "gender")
        person_ids = cipher.index_hash_many(ids)
        ids_enc = cipher.encrypt_many(ids)
        addresses = cipher.encrypt_many(columns["household_address"])
        phones = cipher.encrypt_many(columns["phone"])
        return [
            {
                "person_id": person_ids[i],
                "id_number_enc": ids_enc[i],
                "id_number_masked": mask_resident_id(ids[i]),
                "name": columns["name"][i],
                "gender": columns["gender"][i],
                "birth_date": columns["birth_date"][i],
                "ethnicity": columns["ethnicity"][i],
                "region_code": columns["household_region"][i],
                "address_enc": addresses[i],
                "phone_enc": phones[i],
                "marital_status": columns["marital_status"][i],
                "death_date": columns["death_date"][i],
                "source_id": columns["_source_id"][i],
                "run_id": columns["_run_id"][i],
                "updated_at": learnt_at,
            }
            for i in range(table.num_rows)
        ]

    def upsert(self, engine: sa.Engine, rows: list[dict[str, Any]]) -> None:
        """Upsert into person."""
        upsert(engine, Person.__table__, rows, "person_id")


class LegalEntityRows:
    """法人库: keyed by the USCC (a USCC failing only its check character loads: STANDARDS.md calls that a warning)."""

    def database_rows(self, table: pa.Table, learnt_at: datetime) -> list[dict[str, Any]]:
        """Standardised rows → legal_entity rows; the representative's ID is hashed and encrypted."""
        if table.num_rows == 0:
            return []
        cipher = get_cipher()
        columns = table.to_pydict()
        rep_ids = columns.get("legal_representative_id") or [None] * table.num_rows
        rep_check = identifiers.check_resident_ids(np.array(rep_ids, dtype=object))
        rep_norm = [n if ok else None for n, ok in zip(rep_check.normalised.tolist(), rep_check.valid.tolist())]
        rep_keys = cipher.index_hash_many(rep_norm)
        rep_enc = cipher.encrypt_many(rep_ids)
        get = lambda name, i: (columns.get(name) or [None] * table.num_rows)[i]  # noqa: E731 - optional columns
        return [
            {
                "uscc": columns["uscc"][i],
                "name": columns["entity_name"][i],
                "entity_kind": columns["entity_kind"][i],
                "entity_type": get("enterprise_type", i),
                "legal_rep_name": get("legal_representative", i),
                "legal_rep_person_id": rep_keys[i],
                "legal_rep_id_enc": rep_enc[i],
                "registered_capital": get("registered_capital", i),
                "established_date": get("establishment_date", i),
                "registration_authority": get("registration_authority", i),
                "status": get("status", i),
                "address": get("registered_address", i),
                "region_code": get("registration_region", i),
                "business_scope": get("business_scope", i),
                "source_id": columns["_source_id"][i],
                "run_id": columns["_run_id"][i],
                "updated_at": learnt_at,
            }
            for i in range(table.num_rows)
        ]

    def upsert(self, engine: sa.Engine, rows: list[dict[str, Any]]) -> None:
        """Upsert into legal_entity."""
        upsert(engine, LegalEntity.__table__, rows, "uscc")


BUILDERS: dict[str, RowBuilder] = {"population": PopulationRows(), "legal_entity": LegalEntityRows()}
