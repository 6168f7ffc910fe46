"""Persistence of a checked run: defects and their tickets, quarantine, cross-source conflicts, natural keys.

Everything about one run is written in one transaction, so a run is either recorded completely or not at
all (a rerun then records it again). Defects are keyed by (source, record, rule): a record that comes back
corrected resolves its defects, releases it from quarantine and — when nothing of the ticket is left open —
verifies and closes the ticket by itself (核查-反馈: the loop closes on data, not on a promise).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from hub.models import (QualityConflict, QualityDefect, QualityNaturalKey, QualityTicket, QualityTicketEvent,
                        QuarantinedRow)
from libraries.bulk import insert_rows

CHUNK = 500  # keys per IN (…) query and rows per insert statement
ACTIVE_TICKET = ("open", "acknowledged", "corrected", "disputed")
SYSTEM = "system"


@dataclass(frozen=True)
class Finding:
    """One defect as the rules reported it."""

    source_key: str
    rule_id: str
    field: str
    severity: str
    dimension: str
    message: str


@dataclass(frozen=True)
class RuleInfo:
    """What a ticket needs to know about its rule."""

    name: str
    severity: str


def _chunks(values: list, size: int = CHUNK) -> Iterable[list]:
    """The list in pieces (IN lists and multi-row inserts stay small)."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def upsert(connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE on SQLite and PostgreSQL alike."""
    if not rows:
        return
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[connection.dialect.name]
    for chunk in _chunks(rows):
        statement = dialect.insert(table)
        updates = {name: statement.excluded[name] for name in chunk[0] if name not in keys}
        connection.execute(statement.on_conflict_do_update(index_elements=keys, set_=updates), chunk)


# ------------------------------------------------------------------------------------------------
# Defects and tickets
# ------------------------------------------------------------------------------------------------

# A source with at most this many stored rows per key asked for is read whole instead (a full reload). 1, not 4: in
# a 1 % run of 人社 at scale 1 (≈6,700 records; the source has 33,529 stored defects) the lookups took 0.08 s, the scan
# 0.69–0.85 s; the 1 % quality stages of population and licence ran 0.5–1 s faster, credit the same.
SCAN_FROM = 1


def as_text(values: Any) -> pa.Array | pa.ChunkedArray:
    """Keys as Arrow text (an Arrow array or chunked array stays as given): a batch's keys stay compact (≈ their
    bytes) instead of a Python str each."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
    return pa.array([v if isinstance(v, str) else None for v in values], pa.string())


def members(values: list[Any], keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Whether each of a few values (rows read back) is one of a batch's keys."""
    return members_of(as_text(values), keys)


def rows_of_keys(connection: sa.Connection, table: sa.Table, source_id: str, keys: Any,
                 columns: list[Any] | None = None, key: str = "source_key") -> list[Any]:
    """A source's rows whose `key` column (its source record key by default) is one of `keys` (an Arrow text array
    or a collection of str): looked up in chunks by the table's (source_id, key, …) index, so a 1 % run reads its
    own records' rows rather than everything its source ever had; when the source has few rows for the keys asked
    (at most SCAN_FROM per key: a full reload), one scan of the source is cheaper. `columns` must include the key
    column. The keys stay Arrow text throughout: a full run's million keys never become a Python set."""
    asked = as_text(keys).drop_null()
    if not len(asked):
        return []
    mine = table.c.source_id == source_id
    selected = sa.select(*(columns or [table])).where(mine)
    stored = connection.execute(sa.select(sa.func.count()).select_from(table).where(mine)).scalar_one()
    if stored <= SCAN_FROM * len(asked):
        if not stored:  # a source's first run: nothing to read, and no hash set of its keys to build
            return []
        rows = list(connection.execute(selected))
        # hashed on the side read back, never larger than SCAN_FROM × the keys asked
        found = set(asked.filter(pa.array(members_of(asked, as_text(getattr(r, key) for r in rows)))).to_pylist())
        return [row for row in rows if getattr(row, key) in found]
    wanted = pc.unique(asked)
    wanted = wanted.take(pc.sort_indices(wanted))  # in key order: the index's pages are visited once each
    return [row for at in range(0, len(wanted), CHUNK)
            for row in connection.execute(selected.where(table.c[key].in_(wanted.slice(at, CHUNK).to_pylist())))]


def _active_ticket(connection: sa.Connection, department: str, source_id: str, rule_id: str, rule: RuleInfo,
                   run_id: str, at: datetime) -> int:
    """The ticket collecting a source's defects under a rule: the active one, else a new open ticket."""
    table = QualityTicket.__table__
    found = connection.execute(sa.select(table.c.id).where(
        table.c.source_id == source_id, table.c.rule_id == rule_id, table.c.status.in_(ACTIVE_TICKET))
        .order_by(table.c.id.desc()).limit(1)).scalar_one_or_none()
    if found is not None:
        return int(found)
    ticket_id = connection.execute(sa.insert(table).values(
        department_code=department, source_id=source_id, rule_id=rule_id, rule_name=rule.name, severity=rule.severity,
        status="open", opened_run_id=run_id, opened_at=at, updated_at=at, defects_open=0, defects_total=0,
    ).returning(table.c.id)).scalar_one()
    add_event(connection, ticket_id, at, SYSTEM, None, "open", f"批次 {run_id} 发现问题，开单退回 {department}")
    return int(ticket_id)


def add_event(connection: sa.Connection, ticket_id: int, at: datetime, actor: str, before: str | None, after: str,
              note: str | None) -> None:
    """Record one step of a ticket's life."""
    connection.execute(sa.insert(QualityTicketEvent.__table__).values(
        ticket_id=ticket_id, at=at, actor=actor, from_status=before, to_status=after, note=note))


def refresh_tickets(connection: sa.Connection, ticket_ids: Iterable[int], at: datetime, run_id: str) -> list[int]:
    """Recount tickets; an active ticket with nothing left open is verified (closed) by the system. Returns those closed."""
    tickets = QualityTicket.__table__
    defects = QualityDefect.__table__
    closed = []
    for ticket_id in sorted(set(ticket_ids)):
        counts = dict(connection.execute(sa.select(defects.c.status, sa.func.count()).where(defects.c.ticket_id == ticket_id)
                                         .group_by(defects.c.status)).all())
        still_open = int(counts.get("open", 0))
        total = int(sum(counts.values()))
        status = connection.execute(sa.select(tickets.c.status).where(tickets.c.id == ticket_id)).scalar_one()
        values: dict[str, Any] = {"defects_open": still_open, "defects_total": total}
        if status in ACTIVE_TICKET and still_open == 0 and total > 0:
            values |= {"status": "verified", "closed_at": at, "updated_at": at}
            add_event(connection, ticket_id, at, SYSTEM, status, "verified",
                      f"批次 {run_id} 核查：问题记录已更正或已处理，工单自动核验关闭")
            closed.append(ticket_id)
        connection.execute(sa.update(tickets).where(tickets.c.id == ticket_id).values(**values))
    return closed


def record_defects(connection: sa.Connection, *, source_id: str, department: str, run_id: str, at: datetime,
                   findings: list[Finding], seen_keys: Iterable[str] | pa.Array, rules: dict[str, RuleInfo],
                   checked_rules: set[str] | None = None) -> dict[str, int]:
    """Open, refresh, reopen and resolve a source's defects after one run; keep tickets in step.

    seen_keys: every record key the run carried (a defect of such a record that the run no longer finds is
    resolved — the corrected record arrived). checked_rules: only defects of these rules may be resolved
    (a rule skipped for lack of reference data resolves nothing); None means every rule.
    """
    table = QualityDefect.__table__
    by_key = {(f.source_key, f.rule_id): f for f in findings}
    seen = as_text(seen_keys)
    # one read of the run's records' defects serves both steps: the loop below only writes defects of by_key,
    # so the open defects it leaves to resolve are as read here
    stored = rows_of_keys(connection, table, source_id, joined(seen, as_text(f.source_key for f in findings)))
    stored_seen = members([row.source_key for row in stored], seen)
    existing = {(row.source_key, row.rule_id): row for row in stored}
    touched_tickets: set[int] = set()
    inserts, opened, refreshed, reopened = [], 0, 0, 0
    ticket_of_rule: dict[str, int] = {}

    def ticket_for(rule_id: str) -> int:
        """The active ticket of a rule (created on first need)."""
        if rule_id not in ticket_of_rule:
            ticket_of_rule[rule_id] = _active_ticket(connection, department, source_id, rule_id, rules[rule_id], run_id, at)
        return ticket_of_rule[rule_id]

    for key, finding in by_key.items():
        row = existing.get(key)
        if row is None:
            ticket = ticket_for(finding.rule_id)
            inserts.append({"source_id": source_id, "source_key": finding.source_key, "rule_id": finding.rule_id,
                            "field": finding.field, "severity": finding.severity, "dimension": finding.dimension,
                            "message": finding.message, "status": "open", "disputed": False, "ticket_id": ticket,
                            "first_run_id": run_id, "last_run_id": run_id, "first_seen_at": at, "last_seen_at": at})
            touched_tickets.add(ticket)
            opened += 1
        elif row.status == "waived":
            continue
        elif row.status == "resolved":  # it came back: a new occurrence on the rule's active ticket
            ticket = ticket_for(finding.rule_id)
            connection.execute(sa.update(table).where(table.c.id == row.id).values(
                status="open", ticket_id=ticket, message=finding.message, last_run_id=run_id, last_seen_at=at,
                resolved_run_id=None, resolved_at=None, disputed=False))
            touched_tickets.update({ticket, row.ticket_id} - {None})
            reopened += 1
        else:
            connection.execute(sa.update(table).where(table.c.id == row.id).values(
                message=finding.message, last_run_id=run_id, last_seen_at=at))
            refreshed += 1
    for chunk in _chunks(inserts):
        connection.execute(sa.insert(table), chunk)
    resolved = []
    for row, was_seen in zip(stored, stored_seen):
        if (row.status == "open" and was_seen and (checked_rules is None or row.rule_id in checked_rules)
                and (row.source_key, row.rule_id) not in by_key):
            resolved.append(row.id)
            if row.ticket_id is not None:
                touched_tickets.add(row.ticket_id)
    for chunk in _chunks(resolved):
        connection.execute(sa.update(table).where(table.c.id.in_(chunk)).values(
            status="resolved", resolved_run_id=run_id, resolved_at=at))
    closed = refresh_tickets(connection, touched_tickets, at, run_id)
    return {"opened": opened, "refreshed": refreshed, "reopened": reopened, "resolved": len(resolved), "tickets_closed": len(closed)}


def waivers(connection: sa.Connection, source_id: str) -> frozenset[tuple[str, str]]:
    """(source_key, rule_id) a steward accepted for a source."""
    table = QualityDefect.__table__
    rows = connection.execute(sa.select(table.c.source_key, table.c.rule_id).where(
        table.c.source_id == source_id, table.c.status == "waived"))
    return frozenset((r.source_key, r.rule_id) for r in rows)


# ------------------------------------------------------------------------------------------------
# Quarantine
# ------------------------------------------------------------------------------------------------

def _json_value(value: Any) -> Any:
    """A standardised value as JSON (dates as ISO text, decimals as text)."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def row_payloads(table: pa.Table) -> list[str]:
    """Each row of a (small) table as compact JSON text."""
    return [json.dumps({k: _json_value(v) for k, v in row.items()}, ensure_ascii=False, separators=(",", ":"))
            for row in table.to_pylist()]


def record_quarantine(connection: sa.Connection, *, source_id: str, library: str, run_id: str, at: datetime,
                      quarantined: list[dict[str, Any]], passed_keys: pa.Array | Iterable[str]) -> dict[str, int]:
    """Hold the run's failing rows; release earlier held versions of records that now passed.

    quarantined: dicts with source_key, subject_key, row_enc, rule_ids, reasons.
    """
    table = QuarantinedRow.__table__
    released = sorted(r.source_key for r in rows_of_keys(connection, table, source_id, passed_keys, [table.c.source_key, table.c.status])
                      if r.status in ("quarantined", "release_pending"))
    rows = [{"source_id": source_id, "run_id": run_id, "library": library, "status": "quarantined", "quarantined_at": at,
             "released_at": None, "released_run_id": None, **q} for q in quarantined]
    upsert(connection, table, rows, ["source_id", "source_key"])
    for chunk in _chunks(released):
        connection.execute(sa.update(table).where(table.c.source_id == source_id, table.c.source_key.in_(chunk))
                           .values(status="released", released_at=at, released_run_id=run_id))
    return {"quarantined": len(rows), "released": len(released)}


# ------------------------------------------------------------------------------------------------
# Conflicts and natural keys
# ------------------------------------------------------------------------------------------------

def record_conflicts(connection: sa.Connection, *, source_id: str, run_id: str, conflicts: list[dict[str, Any]],
                     seen_keys: pa.Array | Iterable[str], checked_rules: set[str]) -> dict[str, int]:
    """Store this run's conflicts; conflicts of re-sent records that now agree become resolved."""
    table = QualityConflict.__table__
    seen = as_text(seen_keys)
    current = {(c["source_key"], c["rule_id"]) for c in conflicts}
    # only the run's records can agree again or carry a first run: their earlier conflicts are all that is read
    asked = joined(seen, as_text(key for key, _ in current))
    first = {(r.source_key, r.rule_id): r.first_run_id for r in rows_of_keys(
        connection, table, source_id, asked, [table.c.source_key, table.c.rule_id, table.c.first_run_id])}
    rows = [{"source_id": source_id, "status": "open", "last_run_id": run_id,
             "first_run_id": first.get((c["source_key"], c["rule_id"]), run_id), **c} for c in conflicts]
    upsert(connection, table, rows, ["source_id", "source_key", "rule_id"])
    resent = members([source_key for source_key, _ in first], seen)
    agreeing = [key for key, again in zip(first, resent) if key not in current and again and key[1] in checked_rules]
    for source_key, rule_id in agreeing:
        connection.execute(sa.update(table).where(table.c.source_id == source_id, table.c.source_key == source_key,
                                                  table.c.rule_id == rule_id).values(status="resolved", last_run_id=run_id))
    return {"conflicts": len(rows), "conflicts_resolved": len(agreeing)}


RECORD_CHUNK = 50_000  # natural keys per bulk insert (the driver's executemany on SQLite, COPY on PostgreSQL)


class KnownKeys:
    """Natural keys earlier runs of a source sent (as HMACs), to find duplicates across runs.

    Only the keys of the batch being checked are looked up (by the unique index on source and hash), so a 1 % run
    reads its own few thousand keys, not the million its source sent before. When the batch is about as large as
    what is stored (a full reload), one scan of the source's keys is cheaper than the lookups and is used instead.
    A batch's HMACs are kept as Arrow text (≈68 bytes a row), not a Python str each (≈120).
    """

    def __init__(self, engine: sa.Engine, source_id: str, hasher: Any) -> None:
        self.engine = engine
        self.source_id = source_id
        self.hasher = hasher
        self.first: dict[str, str] = {}  # key hash → source key that first sent it (for the batch's hashes)
        self._batch_rows = -1  # rows of the batch the hashes belong to
        self._rows = np.zeros(0, dtype=np.int64)  # the batch's rows with a complete key …
        self._hashes = pa.chunked_array([], pa.string())  # … and the HMAC of each

    def hashes(self, keys: pa.Array, complete: np.ndarray) -> pa.ChunkedArray:
        """HMAC of each complete key (in row order), computed once per batch; their earlier senders looked up."""
        if self._batch_rows != len(keys):
            rows = np.flatnonzero(complete)
            self._hashes = pa.chunked_array(  # a chunk of Python text at a time
                [pa.array(self.hasher(keys.take(pa.array(rows[at:at + RECORD_CHUNK])).to_pylist()), pa.string())
                 for at in range(0, len(rows), RECORD_CHUNK)], pa.string())
            self._rows, self._batch_rows = rows, len(keys)
            self.first = self._lookup(self._hashes)
        return self._hashes

    def _lookup(self, hashes: pa.ChunkedArray) -> dict[str, str]:
        """Earlier senders of the given hashes: by the index in chunks, or one scan when the batch is large."""
        table = QualityNaturalKey.__table__
        with self.engine.connect() as connection:
            return {r.key_hash: r.source_key for r in rows_of_keys(
                connection, table, self.source_id, hashes, [table.c.key_hash, table.c.source_key], key="key_hash")}

    def first_keys(self, keys: pa.Array, complete: np.ndarray) -> np.ndarray:
        """The source key that first sent each row's natural key in an earlier run (None if none did)."""
        hashes = self.hashes(keys, complete)
        out = np.full(len(keys), None, dtype=object)
        if self.first:
            at = pc.index_in(hashes, value_set=pa.array(list(self.first), pa.string()))
            found = np.flatnonzero(np.asarray(pc.is_valid(at).to_numpy(zero_copy_only=False), dtype=bool))
            senders = np.asarray(list(self.first.values()), dtype=object)
            out[self._rows[found]] = senders[np.asarray(at.take(pa.array(found)).to_numpy(zero_copy_only=False), dtype=np.int64)]
        return out

    def record(self, connection: sa.Connection, source_keys: pa.Array | np.ndarray, keep: np.ndarray, run_id: str) -> int:
        """Remember the natural keys first sent in this run (rows in keep that carry a complete key)."""
        if self._batch_rows < 0:
            return 0
        hashes = self._hashes
        new = keep[self._rows]
        if self.first:
            new &= ~members_of(hashes, pa.array(list(self.first), pa.string()))
        # in hash order (the unique index's pages are then visited once each), the first kept row of each hash:
        # a stable sort puts a hash's earliest row first. Only the order (8 bytes a row) is held, no text copied.
        order = np.asarray(pc.sort_indices(hashes).to_numpy(), dtype=np.int64)
        order = order[new[order]]
        keys = as_text(source_keys)
        done, previous = 0, None
        for at in range(0, len(order), RECORD_CHUNK):
            part = order[at:at + RECORD_CHUNK]
            rows = []
            for h, k in zip(hashes.take(pa.array(part)).to_pylist(), keys.take(pa.array(self._rows[part])).to_pylist()):
                if h != previous:
                    rows.append({"source_id": self.source_id, "key_hash": h, "source_key": str(k), "first_run_id": run_id})
                    previous = h
            done += insert_rows(connection, QualityNaturalKey.__table__, rows)
        return done


def members_of(values: pa.Array | pa.ChunkedArray, keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Whether each value of an Arrow text array is one of keys (False for null)."""
    keys = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    return np.asarray(pc.fill_null(pc.is_in(values, value_set=keys), False).to_numpy(zero_copy_only=False), dtype=bool)


def joined(*arrays: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """Arrow text arrays one after another, without copying them."""
    return pa.chunked_array([chunk for a in arrays for chunk in (a.chunks if isinstance(a, pa.ChunkedArray) else [a])], pa.string())


def group_findings(findings: pa.Table) -> list[Finding]:
    """Findings of an evaluation as records (one per record and rule; the first message wins)."""
    out: dict[tuple[str, str], Finding] = {}
    columns = {name: findings.column(name).to_pylist() for name in ("source_key", "rule_id", "field", "severity", "dimension", "message")}
    for values in zip(*columns.values()):
        finding = Finding(*values)
        out.setdefault((finding.source_key, finding.rule_id), finding)
    return list(out.values())


def messages_by_key(findings: list[Finding], severity: str) -> dict[str, tuple[list[str], list[str]]]:
    """source_key → (rule ids, messages) of one severity."""
    out: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for f in findings:
        if f.severity == severity:
            out[f.source_key][0].append(f.rule_id)
            out[f.source_key][1].append(f"[{f.rule_id}] {f.message}")
    return out


# ------------------------------------------------------------------------------------------------
# Merge conflicts → feedback tickets (libraries/merge.py)
# ------------------------------------------------------------------------------------------------

MERGE_DIMENSION = "一致性"
MERGE_SEVERITY = "warning"  # the record is loaded (the authoritative value survives): the department is told, not blocked


@dataclass(frozen=True)
class MergeConflict:
    """One open disagreement found by the merge, as its quality_conflict row shows it (values already masked).

    source_id is the source whose value did not survive; source_key is the conflict row's key
    (<source record>|<subject>, so one record naming two subjects keeps two defects); record_key is the
    source's own record key, for the message."""

    source_id: str
    source_key: str
    record_key: str
    rule_id: str
    field: str
    label: str
    value: str | None
    reference_source_id: str
    reference_key: str | None
    reference_value: str | None


def merge_rule_name(label: str) -> str:
    """The ticket title of a merge rule, from the field's Chinese label."""
    return f"与权威来源比对不一致：{label}"


def merge_conflict_message(conflict: MergeConflict, reference_department: str | None = None) -> str:
    """What the losing department reads: the field, both sources, both values (as the conflict row shows them)."""
    where = f"（{reference_department}，记录 {conflict.reference_key}）" if reference_department else f"（记录 {conflict.reference_key}）"
    return (f"{conflict.label}与权威来源不一致：本数据源 {conflict.source_id}（记录 {conflict.record_key}）为“{conflict.value}”，"
            f"权威来源 {conflict.reference_source_id}{where}为“{conflict.reference_value}”；基础库采用权威来源的值，请核实更正")


def _merge_defects(connection: sa.Connection, keys: set[tuple[str, str, str]]) -> dict[tuple[str, str, str], Any]:
    """(source_id, source_key, rule_id) → defect row, one query per source and chunk of record keys (the unique index)."""
    table = QualityDefect.__table__
    by_source: dict[str, set[str]] = defaultdict(set)
    for source_id, source_key, _ in keys:
        by_source[source_id].add(source_key)
    found = {}
    for source_id, source_keys in by_source.items():
        for chunk in _chunks(sorted(source_keys)):
            query = sa.select(table.c.id, table.c.source_id, table.c.source_key, table.c.rule_id, table.c.status,
                              table.c.ticket_id, table.c.message).where(
                table.c.source_id == source_id, table.c.source_key.in_(chunk), table.c.rule_id.startswith("MERGE-"))
            for row in connection.execute(query):
                if (row.source_id, row.source_key, row.rule_id) in keys:
                    found[(row.source_id, row.source_key, row.rule_id)] = row
    return found


def record_merge_conflicts(connection: sa.Connection, *, conflicts: list[MergeConflict], resolved: list[tuple[str, str, str]],
                           departments: dict[str, tuple[str, str]], run_id: str, at: datetime) -> dict[str, int]:
    """Keep defects and tickets in step with the merge's conflicts (inside the merge's transaction).

    An open conflict opens (or refreshes, or reopens) a warning defect of the losing source on its department's
    active ticket for the rule — one ticket per source × rule, as record_defects does; a resolved conflict
    (source_id, source_key, rule_id) resolves its open defect, and a ticket with nothing left open is verified.
    departments: source id → (department code, department name); a source the registry does not know has no one
    to tell and gets no defect. A waived defect (a dispute the hub steward accepted) is never raised again.
    """
    table = QualityDefect.__table__
    wanted = [c for c in conflicts if c.source_id in departments]
    existing = _merge_defects(connection, {(c.source_id, c.source_key, c.rule_id) for c in wanted} | set(resolved))
    tickets: dict[tuple[str, str], int] = {}
    touched: set[int] = set()
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    reopens: list[dict[str, Any]] = []

    def ticket_for(conflict: MergeConflict) -> int:
        """The active ticket of the source and rule (created on first need)."""
        key = (conflict.source_id, conflict.rule_id)
        if key not in tickets:
            rule = RuleInfo(merge_rule_name(conflict.label), MERGE_SEVERITY)
            tickets[key] = _active_ticket(connection, departments[conflict.source_id][0], conflict.source_id,
                                          conflict.rule_id, rule, run_id, at)
        return tickets[key]

    for conflict in wanted:
        reference = departments.get(conflict.reference_source_id)
        message = merge_conflict_message(conflict, reference[1] if reference else None)
        row = existing.get((conflict.source_id, conflict.source_key, conflict.rule_id))
        if row is None:
            ticket = ticket_for(conflict)
            inserts.append({"source_id": conflict.source_id, "source_key": conflict.source_key, "rule_id": conflict.rule_id,
                            "field": conflict.field, "severity": MERGE_SEVERITY, "dimension": MERGE_DIMENSION,
                            "message": message, "status": "open", "disputed": False, "ticket_id": ticket,
                            "first_run_id": run_id, "last_run_id": run_id, "first_seen_at": at, "last_seen_at": at})
            touched.add(ticket)
        elif row.status == "resolved":  # the disagreement came back: a new occurrence on the rule's active ticket
            ticket = ticket_for(conflict)
            reopens.append({"_id": row.id, "_ticket": ticket, "_message": message})
            touched.update({ticket, row.ticket_id} - {None})
        elif row.status == "open":
            updates.append({"_id": row.id, "_message": message})
    for chunk in _chunks(inserts):
        connection.execute(sa.insert(table), chunk)
    if updates:
        connection.execute(sa.update(table).where(table.c.id == sa.bindparam("_id")).values(
            message=sa.bindparam("_message"), last_run_id=run_id, last_seen_at=at), updates)
    if reopens:
        connection.execute(sa.update(table).where(table.c.id == sa.bindparam("_id")).values(
            status="open", ticket_id=sa.bindparam("_ticket"), message=sa.bindparam("_message"), last_run_id=run_id,
            last_seen_at=at, resolved_run_id=None, resolved_at=None, disputed=False), reopens)
    gone = [existing[k] for k in resolved if k in existing and existing[k].status == "open"]
    for chunk in _chunks([row.id for row in gone]):
        connection.execute(sa.update(table).where(table.c.id.in_(chunk)).values(
            status="resolved", resolved_run_id=run_id, resolved_at=at))
    touched.update(row.ticket_id for row in gone if row.ticket_id is not None)
    closed = refresh_tickets(connection, touched, at, run_id)
    return {"opened": len(inserts), "refreshed": len(updates), "reopened": len(reopens), "resolved": len(gone),
            "tickets_closed": len(closed)}
