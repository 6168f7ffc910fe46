"""The history of golden records on two time axes.

- record time (recorded_at … superseded_at): when the hub knew a version — "as known at T";
- valid time (valid_from … valid_to): when the version was true at the source — "for date D".
as_of(known_at=T, valid_at=D) answers "what did the library say about X, as known at T, for date D": among the
versions the hub had recorded by T, the latest one whose valid_from is not after D.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa

from hub.crypto import get_cipher
from hub.models import GoldenVersion

VERSIONS = GoldenVersion.__table__


def _iso(value: dt.datetime | None) -> str | None:
    """ISO text of an optional time."""
    return value.isoformat() if value else None


def _versions(engine: sa.Engine, library: str, key: str) -> list[Any]:
    """Every version of one subject, oldest first."""
    query = sa.select(VERSIONS).where(VERSIONS.c.library == library, VERSIONS.c.entity_key == key).order_by(VERSIONS.c.version)
    with engine.connect() as connection:
        return list(connection.execute(query))


def _describe(row: Any, with_record: bool = True) -> dict[str, Any]:
    """One version as a dict with both time axes (record decrypted)."""
    record = json.loads(get_cipher().decrypt(row.record_enc)) if with_record and row.record_enc is not None else None
    return {"version": row.version, "tombstone": row.tombstone, "valid_from": _iso(row.valid_from), "valid_to": _iso(row.valid_to),
            "recorded_at": _iso(row.recorded_at), "superseded_at": _iso(row.superseded_at), "run_id": row.run_id,
            "record": record, "lineage": row.lineage}


def as_of(engine: sa.Engine, library: str, key: str, *, known_at: dt.datetime | None = None,
          valid_at: dt.datetime | None = None) -> dict[str, Any] | None:
    """The golden record as known at known_at (default: now) for valid time valid_at (default: the latest);
    None when the hub knew nothing about the subject then, or it was withdrawn (tombstone)."""
    versions = [v for v in _versions(engine, library, key) if known_at is None or v.recorded_at <= known_at]
    if valid_at is not None:
        versions = [v for v in versions if v.valid_from is None or v.valid_from <= valid_at]
    if not versions:
        return None
    chosen = versions[-1]
    if chosen.tombstone:
        return None
    return _describe(chosen)


def history(engine: sa.Engine, library: str, key: str) -> list[dict[str, Any]]:
    """Every version of one subject, oldest first, tombstones included."""
    return [_describe(v) for v in _versions(engine, library, key)]


__all__ = ["as_of", "history"]
