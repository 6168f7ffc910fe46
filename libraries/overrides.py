"""Steward overrides: a department data steward corrects one field of one golden record.

An active override beats every source (survivorship applies it last), so a later collection never erases it;
setting or revoking one recomputes the golden record at once (a new version whose lineage names the override).
Every action is appended to steward_audit, a SHA-256 hash chain: each entry hashes the previous entry's hash and
its own canonical content, so editing or deleting an entry breaks every later link (`verify_audit`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import sqlalchemy as sa

from hub.crypto import get_cipher
from hub.models import StewardAudit, StewardOverride
from libraries.merge import recompute
from libraries.registry import get_library
from libraries.survivorship import canonical_value

AUDIT = StewardAudit.__table__
OVERRIDES = StewardOverride.__table__
GENESIS = "0" * 64
STEWARD_SOURCE = "steward"  # source_id of current rows last rewritten by a steward's action


class OverrideError(ValueError):
    """An override that cannot be set or revoked (unknown field, unknown id, already revoked)."""


def _now() -> dt.datetime:
    """The current time (aware UTC)."""
    return dt.datetime.now(dt.timezone.utc)


def _entry_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the entry's canonical JSON."""
    body = canonical_value({**entry, "at": entry["at"].isoformat()})
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def append_audit(connection: sa.Connection, *, actor: str, action: str, library: str, entity_key: str,
                 field: str | None, detail: dict[str, Any] | None, at: dt.datetime) -> str:
    """Append one audit entry to the chain (inside the caller's transaction); returns its hash."""
    if connection.dialect.name == "postgresql":  # one writer at a time, or two entries would share a predecessor
        connection.exec_driver_sql("LOCK TABLE steward_audit IN SHARE ROW EXCLUSIVE MODE")
    last = connection.execute(sa.select(AUDIT.c.entry_hash).order_by(AUDIT.c.id.desc()).limit(1)).scalar()
    prev = last or GENESIS
    entry = {"at": at, "actor": actor, "action": action, "library": library, "entity_key": entity_key, "field": field,
             "detail": detail}
    digest = _entry_hash(prev, entry)
    connection.execute(sa.insert(AUDIT).values(**entry, prev_hash=prev, entry_hash=digest))
    return digest


def verify_audit(engine: sa.Engine) -> dict[str, Any]:
    """Walk the chain; returns {entries, ok, first_bad_id}."""
    prev = GENESIS
    count = 0
    with engine.connect() as connection:
        for row in connection.execute(sa.select(AUDIT).order_by(AUDIT.c.id)).mappings():
            count += 1
            entry = {name: row[name] for name in ("at", "actor", "action", "library", "entity_key", "field", "detail")}
            if row["prev_hash"] != prev or _entry_hash(prev, entry) != row["entry_hash"]:
                return {"entries": count, "ok": False, "first_bad_id": row["id"]}
            prev = row["entry_hash"]
    return {"entries": count, "ok": True, "first_bad_id": None}


def set_override(engine: sa.Engine, library: str, key: str, field: str, value: Any, *, steward: str, department: str,
                 reason: str, at: dt.datetime | None = None) -> dict[str, Any]:
    """Override one field of one subject (an active override of the same field is revoked first); returns ids and counts."""
    spec = get_library(library)
    if field not in spec.fields:
        raise OverrideError(f"字段 {field} 不属于{library} not a golden field; one of {', '.join(spec.fields)}")
    if not reason.strip() or not steward.strip():
        raise OverrideError("须填写数据专员和修正理由 steward and reason are required")
    at = at or _now()
    with engine.begin() as connection:
        _require_subject(connection, library, key)
        earlier = list(connection.execute(sa.select(OVERRIDES.c.id).where(
            OVERRIDES.c.library == library, OVERRIDES.c.entity_key == key, OVERRIDES.c.field == field,
            OVERRIDES.c.revoked_at.is_(None))).scalars())
        if earlier:
            connection.execute(sa.update(OVERRIDES).where(OVERRIDES.c.id.in_(earlier)).values(
                revoked_at=at, revoked_by=steward, revoke_reason="被新的修正取代 replaced by a newer override"))
        value_enc = get_cipher().encrypt(json.dumps(value, ensure_ascii=False))
        override_id = connection.execute(sa.insert(OVERRIDES).values(
            library=library, entity_key=key, field=field, value_enc=value_enc, reason=reason, steward=steward,
            department_code=department, created_at=at).returning(OVERRIDES.c.id)).scalar_one()
        append_audit(connection, actor=steward, action="override_set", library=library, entity_key=key, field=field,
                     detail={"override_id": override_id, "department": department, "reason": reason, "replaced": earlier}, at=at)
        counts = recompute(connection, spec, [key], at=at, run_id=f"override:{override_id}", source_id=STEWARD_SOURCE)
    return {"override_id": override_id, "replaced": earlier, **counts}


def revoke_override(engine: sa.Engine, override_id: int, *, steward: str, reason: str, at: dt.datetime | None = None) -> dict[str, Any]:
    """Revoke an active override; the field goes back to what the sources say."""
    at = at or _now()
    with engine.begin() as connection:
        row = connection.execute(sa.select(OVERRIDES).where(OVERRIDES.c.id == override_id)).first()
        if row is None:
            raise OverrideError(f"人工修正 {override_id} 不存在 no such override")
        if row.revoked_at is not None:
            raise OverrideError(f"人工修正 {override_id} 已于 {row.revoked_at.isoformat()} 撤销 already revoked")
        connection.execute(sa.update(OVERRIDES).where(OVERRIDES.c.id == override_id).values(
            revoked_at=at, revoked_by=steward, revoke_reason=reason))
        append_audit(connection, actor=steward, action="override_revoke", library=row.library, entity_key=row.entity_key,
                     field=row.field, detail={"override_id": override_id, "reason": reason}, at=at)
        counts = recompute(connection, get_library(row.library), [row.entity_key], at=at, run_id=f"override:{override_id}:revoked",
                           source_id=STEWARD_SOURCE)
    return {"override_id": override_id, **counts}


def list_overrides(engine: sa.Engine, library: str, key: str | None = None, *, include_revoked: bool = False,
                   reveal: bool = False) -> list[dict[str, Any]]:
    """Overrides of a library (or one subject); values decrypted only with reveal (masked where the field is personal)."""
    spec = get_library(library)
    query = sa.select(OVERRIDES).where(OVERRIDES.c.library == library).order_by(OVERRIDES.c.id)
    if key is not None:
        query = query.where(OVERRIDES.c.entity_key == key)
    if not include_revoked:
        query = query.where(OVERRIDES.c.revoked_at.is_(None))
    with engine.connect() as connection:
        rows = list(connection.execute(query).mappings())
    cipher = get_cipher()
    masks = getattr(spec, "masks", {})
    out = []
    for row in rows:
        value = json.loads(cipher.decrypt(row["value_enc"]))
        if not reveal and row["field"] in masks and value is not None:
            value = masks[row["field"]](str(value))
        out.append({"id": row["id"], "entity_key": row["entity_key"], "field": row["field"], "value": value,
                    "reason": row["reason"], "steward": row["steward"], "department_code": row["department_code"],
                    "created_at": row["created_at"].isoformat(),
                    "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
                    "revoked_by": row["revoked_by"], "revoke_reason": row["revoke_reason"]})
    return out


def _require_subject(connection: sa.Connection, library: str, key: str) -> None:
    """An override corrects a record the library has: refuse a subject with no golden version."""
    from hub.models import GoldenVersion

    versions = GoldenVersion.__table__
    found = connection.execute(sa.select(versions.c.id).where(versions.c.library == library, versions.c.entity_key == key)
                               .limit(1)).first()
    if found is None:
        raise OverrideError(f"{library} 中没有该主体 no such subject in the library")


__all__ = ["OverrideError", "append_audit", "list_overrides", "revoke_override", "set_override", "verify_audit"]
