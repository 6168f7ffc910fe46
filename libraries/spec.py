"""What a base library is to the merge: its key, its golden fields, how staged rows become claims about subjects,
and how a surviving golden record becomes a row of the library's current table.

A *claim* is what one staged row of one source says about one subject (a person, a company, a licence, a credit
record): the subject's key and a dict of golden-field values in plain form (None = the source says nothing about
that field). One staged row gives zero, one or several claims (a marriage registration names two people).
Survivorship (libraries/survivorship.py) picks, per field, one value out of every source's latest claim; the
merge (libraries/merge.py) keeps each source's claim, the golden record's history and the lineage of every field.

Plain values never reach the database for personal data: `database_rows` encrypts ID numbers, addresses and
phones of natural persons (hub.crypto) and the history stores whole records encrypted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import pyarrow as pa
import sqlalchemy as sa


@dataclass
class Claims:
    """Claims made by one batch of staged rows, in parallel lists (one entry per claim)."""

    keys: list[str] = field(default_factory=list)  # the subject's library key (person_id HMAC, USCC, licence id, record id)
    fields: list[dict[str, Any]] = field(default_factory=list)  # golden field -> plain value; absent/None = no claim
    valid_from: list[datetime | None] = field(default_factory=list)  # when the fact became true at the source (aware UTC)
    row_index: list[int] = field(default_factory=list)  # position of the staged row the claim came from
    deleted: list[bool] = field(default_factory=list)  # True = the source withdrew the subject (tombstone claim)
    source_keys: list[str] = field(default_factory=list)  # the source record's own key (optional: the load fills it from row_index)

    def add(self, key: str, fields: dict[str, Any], valid_from: datetime | None, row: int, deleted: bool = False,
            source_key: str | None = None) -> None:
        """Append one claim."""
        self.keys.append(key)
        self.fields.append(fields)
        self.valid_from.append(valid_from)
        self.row_index.append(row)
        self.deleted.append(deleted)
        if source_key is not None:
            self.source_keys.append(source_key)

    def __len__(self) -> int:
        return len(self.keys)


class LibrarySpec(Protocol):
    """One base library as the merge sees it."""

    name: str  # population | legal_entity | licence | credit
    table: sa.Table  # the library's current (golden) table, e.g. hub.models.Person.__table__
    key_column: str  # its primary-key column (person_id, uscc, licence_id, record_id)
    fields: tuple[str, ...]  # the plain golden fields survivorship decides, e.g. ("id_number", "name", "address", …)
    # several sources describe the same subjects (a person in 公安, 民政 and 人社): the merge DAG then stores every
    # pending run's claims before recomputing each subject once (libraries.load); where each subject has one source
    # (a licence, a credit record) that only adds work, so each run is merged on its own
    shared_subjects: bool

    def claims(self, rows: pa.Table, source_id: str) -> Claims:
        """Staged rows that passed the quality stage (standard data elements + _source_id/_run_id/_source_key)
        → claims. Rows the adapter cannot key are a bug upstream (quality quarantines them): raise ValueError."""
        ...

    def database_rows(self, keys: list[str], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Golden records (plain fields) → rows of `table` without the bookkeeping columns (source_id, run_id,
        updated_at, lineage), encrypting natural persons' personal data. Batch-level so ciphers run vectorised."""
        ...


# Optional members a spec may have (the merge and the CLI use getattr with these defaults):
#   masks: dict[str, Callable[[str], str]]  — display masks of personal fields (conflict records, `hub library show`);
#                                             fields listed here are never written in clear outside ciphertext
#   lookup_key(text) -> str                 — the library key of what a user types (population: HMAC of the ID number)


__all__ = ["Claims", "LibrarySpec"]
