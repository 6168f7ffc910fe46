"""Per-library row builders: which standardised rows are loadable, and how they become database rows.

A builder splits a landed batch into rows it can load and rows it sets aside (with reasons), and upserts
the loadable ones. Personal data of natural persons is encrypted here, before it reaches the database,
and keyed by an HMAC of the resident ID so lookups by ID need no decryption.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from connectors.registry import SourceSpec
from hub.crypto import get_cipher, mask_resident_id
from hub.models import LegalEntity, Person
from schemas import identifiers
from schemas.code_tables import load_table
from schemas.mapping import standardise
from schemas.normalize import join_messages

UPSERT_CHUNK = 5_000


class RowBuilder(Protocol):
    """How one base library takes rows in."""

    def split(self, batch: pa.RecordBatch, spec: SourceSpec, run_id: str, learnt_at: datetime) -> tuple[list[dict[str, Any]], pa.Table]:
        """(database rows to load, standardised rows set aside with a _reason column); learnt_at = when the hub extracted them."""
        ...

    def upsert(self, engine: sa.Engine, rows: list[dict[str, Any]]) -> None:
        """Insert or update the rows by primary key."""
        ...


def _reasons(*pairs: tuple[pa.Array | np.ndarray, str | pa.Array]) -> pa.Array:
    """Per row, the reasons whose condition holds, joined with '; ' (null where none holds)."""
    parts = []
    for condition, message in pairs:
        if isinstance(condition, np.ndarray):
            condition = pa.array(condition, pa.bool_())
        text = message if isinstance(message, pa.Array) else pa.scalar(message, pa.string())
        parts.append(pc.if_else(pc.fill_null(condition, False), text, pa.scalar(None, pa.string())))
    return join_messages(parts, len(parts[0]))


def _split_by_reason(table: pa.Table, reason: pa.Array) -> tuple[pa.Table, pa.Table]:
    """(rows without a reason, rows with one plus a _reason column)."""
    has_reason = pc.is_valid(reason)
    bad = table.filter(has_reason).append_column("_reason", reason.filter(has_reason))
    return table.filter(pc.invert(has_reason)), bad


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

    def split(self, batch: pa.RecordBatch, spec: SourceSpec, run_id: str, learnt_at: datetime) -> tuple[list[dict[str, Any]], pa.Table]:
        """Rows with a valid resident ID, a name and a standard gender code load; the rest are set aside with the reason."""
        table = standardise(batch, spec, run_id)
        resident_id = table.column("resident_id")
        check = identifiers.check_resident_ids(resident_id.to_numpy(zero_copy_only=False))
        gender = table.column("gender")
        reason = _reasons(
            (pc.is_null(resident_id), "缺少公民身份号码 missing resident ID"),
            (~check.valid & pc.is_valid(resident_id).to_numpy(zero_copy_only=False), pa.array(check.reason, pa.string())),
            (pc.is_null(table.column("name")), "缺少姓名 missing name"),
            # The database only takes GB/T 2261.1 codes; anything else waits for a steward, not a crash.
            (pc.and_(pc.is_valid(gender), pc.invert(pc.is_in(gender, value_set=pa.array(load_table("gender").codes)))),
             "性别代码不在 GB/T 2261.1 中 gender code not in GB/T 2261.1"),
        )
        table = table.append_column("_id18", pa.array(check.normalised, pa.string()))
        good, bad = _split_by_reason(table, reason)
        return self._database_rows(good, learnt_at), bad.drop_columns(["_id18"])

    def _database_rows(self, table: pa.Table, learnt_at: datetime) -> list[dict[str, Any]]:
        """Standardised rows → person rows, encrypting ID, address and phone."""
        if table.num_rows == 0:
            return []
        cipher = get_cipher()
        ids = table.column("_id18").to_pylist()
        columns = table.to_pydict()
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
    """法人库: keyed by the USCC."""

    def split(self, batch: pa.RecordBatch, spec: SourceSpec, run_id: str, learnt_at: datetime) -> tuple[list[dict[str, Any]], pa.Table]:
        """Rows with a well-formed USCC and a name load; the rest are set aside with the reason.

        A well-formed USCC whose check character fails still loads: early pilot codes fail the check
        yet are legitimate (STANDARDS.md), so that is a warning for the department, not a rejection.
        """
        table = standardise(batch, spec, run_id)
        uscc = table.column("uscc")
        check = identifiers.check_usccs(uscc.to_numpy(zero_copy_only=False))
        well_formed = check.department != ""
        reason = _reasons(
            (pc.is_null(uscc), "缺少统一社会信用代码 missing USCC"),
            (~well_formed & pc.is_valid(uscc).to_numpy(zero_copy_only=False), pa.array(check.reason, pa.string())),
            (pc.is_null(table.column("entity_name")), "缺少名称 missing name"),
        )
        good, bad = _split_by_reason(table, reason)
        return self._database_rows(good, learnt_at), bad

    def _database_rows(self, table: pa.Table, learnt_at: datetime) -> list[dict[str, Any]]:
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
