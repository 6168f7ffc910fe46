"""The merge of a base library: source claims in, golden records out, with history, lineage and conflicts.

For one batch of claims from one source run:
1. each claim is compared with the source's stored claim about the same subject by its HMAC (payload_hash):
   unchanged claims stop here, changed ones replace the stored claim (library_claim, encrypted);
2. only the subjects whose claims changed are recomputed: every source's live claim and every active steward
   override of those subjects go through survivorship (libraries/survivorship.py);
3. a golden record whose content (or the origin of a field) changed closes its current version
   (superseded_at, valid_to) and gets a new one (golden_version, encrypted), and its row in the library's current
   table is rewritten with the lineage of every field (stored compact: hub/lineage.py); a subject whose every claim was withdrawn gets a tombstone
   version and leaves the current table;
4. disagreements between sources on a field become quality_conflict records (rule MERGE-<library>-<field>),
   resolved when the sources agree again; each open one is a warning defect of the source whose value lost, on its
   department's feedback ticket (quality.store.record_merge_conflicts), resolved — and the ticket verified — with it.
A source record that now claims another subject than before (a corrected ID number: source key k said A, now says B)
withdraws its claim on the old subject in the same batch, so A is recomputed (tombstoned if no one else claims it).
Work and memory follow the number of changed claims, in batches of at most BATCH_KEYS subjects, one transaction each.
Rewriting a current row drops columns the merge does not produce (a licence's seal_*), so changed licences are re-sealed.

Deferred merge (defer=True; libraries.load.load_pending uses it when runs of several sources of a library whose
sources share subjects are pending): step 1 only, and each changed subject is written to merge_pending in the same
transaction; recompute_pending then recomputes every pending subject once, in key order, from all its live claims.
A subject that three sources' runs touch gets one survivorship pass and one version instead of three (the population
library's first load: 公安, 民政, 人社). The caller recomputes before a second run of a source already deferred, so no
run of a source is folded into another run of the same source and the history keeps each source run's state.
A large recompute's plans (steps 2–3 up to the rows to write, and the conflicts found) are made by worker processes
while one process writes them in key order (recompute_pending, settings.merge_workers).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from collections import deque
from collections.abc import Container, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from multiprocessing import current_process, get_context
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from hub.crypto import FieldCipher, get_cipher
from hub.lineage import compact_text
from hub.models import GoldenVersion, LibraryClaim, MergePending, QualityConflict, StewardOverride
from libraries.bulk import (JsonText, chunks, delete_where_in, in_values, insert_rows, json_text, large_cache,
                            update_where_id)
from libraries.registry import get_library
from libraries.spec import Claims, LibrarySpec
from libraries.survivorship import ActiveOverride, LiveClaim, Survivor, canonical_value, survive

UTC = dt.timezone.utc

BATCH_KEYS = 50_000
PARALLEL_FROM = 2 * BATCH_KEYS  # pending rows from which recompute workers pay for their start (≈2 s each, spawned)
TOMBSTONE_HASH_INPUT = "tombstone"
CLAIMS = LibraryClaim.__table__
VERSIONS = GoldenVersion.__table__
OVERRIDES = StewardOverride.__table__
CONFLICTS = QualityConflict.__table__
PENDING = MergePending.__table__
RECOMPUTE_COUNTS = ("keys_touched", "versions", "tombstones", "conflicts_open", "conflicts_resolved")
log = logging.getLogger(__name__)


def canonical(fields: dict[str, Any]) -> str:
    """Canonical JSON of the non-null fields (absent and None mean the same: no claim)."""
    return canonical_value({k: v for k, v in fields.items() if v is not None})


def restore(spec: LibrarySpec, record: dict[str, Any]) -> dict[str, Any]:
    """JSON values back to the Python types of the current table's columns of the same name (dates, decimals)."""
    out = dict(record)
    for name, convert in _converters(spec.table).items():
        value = record.get(name)
        if isinstance(value, str):
            out[name] = convert(value)
    return out


_CONVERTERS: dict[sa.Table, dict[str, Any]] = {}


def _converters(table: sa.Table) -> dict[str, Any]:
    """Per column of a current table whose JSON text must become another Python type: the conversion."""
    found = _CONVERTERS.get(table)
    if found is None:
        found = {}
        for column in table.c:
            kind = column.type
            if isinstance(kind, sa.DateTime):
                found[column.name] = dt.datetime.fromisoformat
            elif isinstance(kind, sa.Date):
                found[column.name] = lambda value: dt.date.fromisoformat(value[:10])
            elif isinstance(kind, sa.Numeric) and not isinstance(kind, sa.Float):
                found[column.name] = Decimal
        found = _CONVERTERS[table] = found
    return found


def _source_keys(claims: Claims) -> list[str]:
    """Each claim's source record key (the row position when an adapter did not say)."""
    if len(claims.source_keys) == len(claims.keys):
        return [str(k) for k in claims.source_keys]
    return [str(r) for r in claims.row_index]


@dataclass
class _Current:
    """A subject's current golden version (superseded_at IS NULL)."""

    id: int
    version: int
    record_hash: str
    tombstone: bool
    recorded_at: dt.datetime


def merge_claims(engine: sa.Engine, library: str, claims: Claims, *, source_id: str, run_id: str,
                 extracted_at: dt.datetime, ruleset_version: str | None, defer: bool = False) -> dict[str, int]:
    """Merge one source run's claims into a library; returns counts (claims changed, versions, tombstones, conflicts).

    defer: store the claims and leave the changed subjects in merge_pending for recompute_pending (counted as
    keys_deferred) instead of recomputing them here."""
    spec = get_library(library)
    cipher = get_cipher()
    source_keys = _source_keys(claims)
    last = {key: i for i, key in enumerate(claims.keys)}  # one claim per subject and source: the last one wins
    # a row position is no record identity: only claims that name their source records can be re-keyed
    subjects = last if len(claims.source_keys) == len(claims.keys) else None
    counts = {"claims": len(claims), "claims_changed": 0, "claims_unchanged": 0, "keys_touched": 0, "versions": 0,
              "tombstones": 0, "conflicts_open": 0, "conflicts_resolved": 0}
    for batch in chunks(list(last.values()), BATCH_KEYS):
        with engine.connect() as connection, large_cache(connection), connection.begin():
            touched, fresh, withdrawn = _store_claims(connection, spec, cipher, claims, batch, source_keys, subjects,
                                                      source_id=source_id, run_id=run_id, extracted_at=extracted_at,
                                                      ruleset_version=ruleset_version, keep_fresh=not defer)
            counts["claims_changed"] += len(touched)
            counts["claims_unchanged"] += len(batch) - (len(touched) - withdrawn)
            if defer:
                _mark_pending(connection, spec.name, touched, source_id=source_id, run_id=run_id, at=extracted_at)
                counts["keys_deferred"] = counts.get("keys_deferred", 0) + len(touched)
                continue
            result = recompute(connection, spec, touched, at=extracted_at, run_id=run_id, source_id=source_id,
                               fresh=fresh)
        for name, value in result.items():
            counts[name] += value
    return counts


def _mark_pending(connection: sa.Connection, library: str, keys: list[str], *, source_id: str, run_id: str,
                  at: dt.datetime) -> None:
    """Leave subjects for recompute_pending: one row per subject and source, replacing one the source left before
    (delete + bulk insert: an upsert row by row costs more than the rest of the claim's storing)."""
    keys = sorted(set(keys))
    delete_where_in(connection, PENDING, "entity_key", keys, PENDING.c.library == library, PENDING.c.source_id == source_id)
    insert_rows(connection, PENDING, [{"library": library, "entity_key": key, "source_id": source_id, "run_id": run_id,
                                       "extracted_at": at} for key in keys])


def pending_runs_of(engine: sa.Engine, library: str) -> dict[str, set[str]]:
    """The source runs whose subjects wait in merge_pending, by source (empty unless a deferred merge was cut short)."""
    with engine.connect() as connection:
        runs = _pending_times(connection, library)
    found: dict[str, set[str]] = {}
    for source_id, run_id in runs:
        found.setdefault(source_id, set()).add(run_id)
    return found


def recompute_pending(engine: sa.Engine, library: str, workers: int | None = None) -> dict[str, int]:
    """Recompute every subject a deferred merge left pending, once each, in key order: BATCH_KEYS subjects a
    transaction that also clears them from merge_pending (a crash leaves the rest pending for the next call).
    A subject several runs touched is recorded as of the latest of them (its time, run and source), as the last of
    them would have recorded it.

    workers (default: settings.merge_workers, 0 = one per core): with more than one and more than PARALLEL_FROM rows
    pending, that many spawned processes make the batches' plans (reading claims, survivorship, encryption) while this
    process writes finished plans in key order, each batch in its own transaction as above."""
    spec = get_library(library)
    counts = dict.fromkeys(RECOMPUTE_COUNTS, 0)
    with engine.connect() as connection:
        times = _pending_times(connection, library)
        total = connection.execute(sa.select(sa.func.count()).select_from(PENDING).where(PENDING.c.library == library)).scalar_one()
    workers = recompute_workers(engine) if workers is None else workers
    batches = _pending_batches(engine, library, times)
    if workers > 1 and total > PARALLEL_FROM:
        done = _written_from_workers(engine, spec, batches, workers)
    else:
        done = (_write_batch(engine, spec, batch) for batch in batches)
    cleared = 0
    for batch, found in done:
        for name, value in found.items():
            counts[name] += value
        cleared += batch.rows
        log.info("%s 重算 recomputed %d subjects (待重算 pending rows %d / %d)", library, counts["keys_touched"], cleared, total)
    return counts


@dataclass
class _Batch:
    """Pending subjects recomputed in one transaction: the key range, and its subjects by the run they are recorded as."""

    first: str
    last: str
    rows: int  # merge_pending rows the batch clears
    runs: list[tuple[str, str, dt.datetime, list[str]]]  # (source_id, run_id, extracted_at, subjects)


def _pending_batches(engine: sa.Engine, library: str, times: dict[tuple[str, str], dt.datetime]) -> Iterator[_Batch]:
    """The pending subjects in key order, a batch at a time (each read when the caller asks for it)."""
    after: str | None = None
    while True:
        with engine.connect() as connection:
            latest, rows = _pending_batch(connection, library, after, times)
        if not latest:
            return
        by_run: dict[tuple[str, str], list[str]] = {}
        for key, (_, run_id, source_id) in latest.items():
            by_run.setdefault((source_id, run_id), []).append(key)
        first, after = min(latest), max(latest)
        yield _Batch(first, after, rows, [(source_id, run_id, times[source_id, run_id], keys)
                                          for (source_id, run_id), keys in by_run.items()])


def _write_batch(engine: sa.Engine, spec: LibrarySpec, batch: _Batch, plans: list[Plan] | None = None,
                 ) -> tuple[_Batch, dict[str, int]]:
    """Recompute a batch (or write the plans a worker made of it) and clear it from merge_pending, in one transaction."""
    counts = dict.fromkeys(RECOMPUTE_COUNTS, 0)
    with engine.connect() as connection, large_cache(connection), connection.begin():
        if plans is None:
            found = [recompute(connection, spec, keys, at=at, run_id=run_id, source_id=source_id)
                     for source_id, run_id, at, keys in batch.runs]
        else:
            found = [{"keys_touched": len(plan.keys), **apply_plan(connection, spec, plan)} for plan in plans]
        for one in found:
            for name, value in one.items():
                counts[name] += value
        connection.execute(sa.delete(PENDING).where(PENDING.c.library == spec.name, PENDING.c.entity_key >= batch.first,
                                                    PENDING.c.entity_key <= batch.last))
    return batch, counts


def _written_from_workers(engine: sa.Engine, spec: LibrarySpec, batches: Iterator[_Batch], workers: int,
                          ) -> Iterator[tuple[_Batch, dict[str, int]]]:
    """Plans made in worker processes, written here in key order; at most workers + 1 batches ahead of the writer
    (each plan holds its batch's rows)."""
    url = engine.url.render_as_string(hide_password=False)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    waiting: deque[tuple[_Batch, Future[list[Plan]]]] = deque()
    try:
        for batch in batches:
            waiting.append((batch, pool.submit(_plan_batch, url, spec.name, batch.runs)))
            if len(waiting) > workers:
                ready, plans = waiting.popleft()
                yield _write_batch(engine, spec, ready, plans.result())
        while waiting:
            ready, plans = waiting.popleft()
            yield _write_batch(engine, spec, ready, plans.result())
    finally:
        pool.shutdown(cancel_futures=True)


def _plan_batch(url: str, library: str, runs: list[tuple[str, str, dt.datetime, list[str]]]) -> list[Plan]:
    """In a worker process: the plans of one batch, read in one snapshot of the hub database."""
    from hub.db import engine_for

    spec = get_library(library)
    with engine_for(url).connect() as connection:
        return [plan_recompute(connection, spec, part, at=at, run_id=run_id, source_id=source_id)
                for source_id, run_id, at, keys in runs for part in chunks(sorted(keys))]


def recompute_workers(engine: sa.Engine) -> int:
    """Worker processes a large recompute gets: settings.merge_workers (0 = one per core); 1 where they cannot share
    the database (in-memory SQLite) or cannot be started (a daemonic process, e.g. a Celery prefork worker's)."""
    from hub.settings import get_settings

    in_memory = engine.url.get_backend_name() == "sqlite" and engine.url.database in (None, "", ":memory:")
    if in_memory or current_process().daemon:
        return 1
    return get_settings().merge_workers or os.cpu_count() or 1


def _pending_times(connection: sa.Connection, library: str) -> dict[tuple[str, str], dt.datetime]:
    """The extraction time of each pending (source, run): a few rows, so the batches need not read a time per row."""
    query = sa.select(PENDING.c.source_id, PENDING.c.run_id, sa.func.max(PENDING.c.extracted_at).label("at")).where(
        PENDING.c.library == library).group_by(PENDING.c.source_id, PENDING.c.run_id)
    return {(row.source_id, row.run_id): row.at for row in connection.execute(query)}


def _pending_batch(connection: sa.Connection, library: str, after: str | None,
                   times: dict[tuple[str, str], dt.datetime]) -> tuple[dict[str, tuple[dt.datetime, str, str]], int]:
    """The next pending subjects after `after` (at most BATCH_KEYS rows, plus the rest of the last subject's rows):
    each with its latest touch as (time, run, source), ties going to the greater run id, then source id; and the
    number of rows read."""
    columns = (PENDING.c.entity_key, PENDING.c.run_id, PENDING.c.source_id)
    where = [PENDING.c.library == library] + ([PENDING.c.entity_key > after] if after is not None else [])
    rows = list(connection.execute(sa.select(*columns).where(*where).order_by(PENDING.c.entity_key).limit(BATCH_KEYS)))
    if len(rows) == BATCH_KEYS:  # the limit may have cut the last subject's rows short
        last = rows[-1].entity_key
        rows = [row for row in rows if row.entity_key != last] + list(connection.execute(
            sa.select(*columns).where(PENDING.c.library == library, PENDING.c.entity_key == last)))
    latest: dict[str, tuple[dt.datetime, str, str]] = {}
    for key, run_id, source_id in rows:
        touch = (times[source_id, run_id], run_id, source_id)
        if key not in latest or touch > latest[key]:
            latest[key] = touch
    return latest, len(rows)


def _store_claims(connection: sa.Connection, spec: LibrarySpec, cipher: FieldCipher, claims: Claims, batch: list[int],
                  source_keys: list[str], subjects: Container[str] | None, *, source_id: str, run_id: str,
                  extracted_at: dt.datetime, ruleset_version: str | None, keep_fresh: bool = True,
                  ) -> tuple[list[str], dict[str, LiveClaim | None], int]:
    """Replace the source's stored claims that changed and withdraw those of re-keyed source records; returns the
    subjects whose claim changed or was withdrawn, the source's new claim about each of them as recompute would read
    it back (None: withdrawn), and how many of them were withdrawn for a re-keyed record.

    subjects: every subject the source claims in this merge (all batches), which a re-keyed record never withdraws;
    None: the claims do not name their source records, so none can be found re-keyed.
    keep_fresh False: no new claims returned (a deferred merge reads them back later)."""
    payloads = ["{}" if claims.deleted[i] else canonical(claims.fields[i]) for i in batch]
    hashes = cipher.index_hash_many([p + ("|deleted" if claims.deleted[i] else "") for p, i in zip(payloads, batch)])
    existing: dict[str, Any] = {}
    known = _has_claims(connection, spec.name, source_id)  # a source's first load has nothing to compare with
    if known:
        for part in chunks([claims.keys[i] for i in batch]):
            # by (library, entity_key) only, so the planner takes the unique index; other sources' rows are dropped here
            query = sa.select(CLAIMS.c.id, CLAIMS.c.entity_key, CLAIMS.c.source_id, CLAIMS.c.source_key,
                              CLAIMS.c.payload_hash, CLAIMS.c.deleted).where(
                CLAIMS.c.library == spec.name, in_values(connection, CLAIMS.c.entity_key, part))
            existing.update({row.entity_key: row for row in connection.execute(query) if row.source_id == source_id})
    changed: list[int] = []
    arrived: set[str] = set()  # source records whose claim is new here: each may have claimed another subject before
    for n, i in enumerate(batch):
        before = existing.get(claims.keys[i])
        if claims.deleted[i] and (before is None or before.deleted):
            continue  # nothing to withdraw
        if known and not claims.deleted[i] and (before is None or before.deleted or before.source_key != source_keys[i][:512]):
            arrived.add(source_keys[i][:512])
        if before is not None and before.payload_hash == hashes[n]:
            continue
        changed.append(n)
    moved = _rekeyed(connection, spec.name, source_id, sorted(arrived), subjects) if arrived and subjects is not None else []
    if not changed and not moved:
        return [], {}, 0
    replaced = [existing[claims.keys[batch[n]]].id for n in changed if claims.keys[batch[n]] in existing]
    delete_where_in(connection, CLAIMS, "id", replaced + [row.id for row in moved])
    encrypted = cipher.encrypt_many([payloads[n] for n in changed] + ["{}"] * len(moved))
    rows = [{"library": spec.name, "entity_key": claims.keys[batch[n]], "source_id": source_id,
             "source_key": source_keys[batch[n]][:512], "run_id": run_id, "extracted_at": extracted_at,
             "valid_from": claims.valid_from[batch[n]], "ruleset_version": ruleset_version, "payload_enc": encrypted[k],
             "payload_hash": hashes[n], "deleted": bool(claims.deleted[batch[n]])} for k, n in enumerate(changed)]
    if moved:  # the same withdrawn claim a snapshot's delete row stores (load.withdrawals)
        gone_hash = cipher.index_hash("{}|deleted")
        rows += [{"library": spec.name, "entity_key": row.entity_key, "source_id": source_id, "source_key": row.source_key,
                  "run_id": run_id, "extracted_at": extracted_at, "valid_from": None, "ruleset_version": ruleset_version,
                  "payload_enc": encrypted[len(changed) + k], "payload_hash": gone_hash, "deleted": True}
                 for k, row in enumerate(moved)]
    insert_rows(connection, CLAIMS, rows)
    touched = [row["entity_key"] for row in rows]
    if not keep_fresh:
        return touched, {}, len(moved)
    # what _live_claims would read back: times as stored (UTC), the payload as JSON
    extracted_utc = extracted_at.astimezone(UTC)
    fresh: dict[str, LiveClaim | None] = {}
    for row, n in zip(rows, changed):
        valid_from = row["valid_from"]
        fresh[row["entity_key"]] = None if row["deleted"] else LiveClaim(
            source_id, row["source_key"], run_id, extracted_utc, valid_from.astimezone(UTC) if valid_from else None,
            ruleset_version, json.loads(payloads[n]))
    for row in moved:
        fresh[row.entity_key] = None
    return touched, fresh, len(moved)


def _rekeyed(connection: sa.Connection, library: str, source_id: str, source_keys: list[str],
             subjects: Container[str]) -> list[Any]:
    """The source's live claims made by these source records about subjects they no longer claim (the record was
    re-keyed: a corrected ID number); one query per chunk of source keys, on the (library, source_id, source_key) index."""
    found = []
    for part in chunks(source_keys):
        match = [CLAIMS.c.library == library, CLAIMS.c.source_id == source_id, CLAIMS.c.deleted.is_(False)]
        if connection.dialect.name == "postgresql":
            # one index probe per key, whatever the statistics: `source_key = ANY(keys)` (or a plain join with
            # unnest) becomes a filter over every claim of the source once psycopg prepares the statement and the
            # planner, on a freshly loaded table without statistics, takes a generic plan (2–20 s per 5,000 keys);
            # OFFSET 0 keeps the lateral subquery from being flattened into such a join
            keys = sa.func.unnest(sa.bindparam(None, part, type_=ARRAY(sa.String()))).table_valued("key").render_derived()
            claim = sa.select(CLAIMS.c.id, CLAIMS.c.entity_key, CLAIMS.c.source_key).where(
                *match, CLAIMS.c.source_key == keys.c.key).offset(sa.literal_column("0")).lateral()
            query = sa.select(claim.c.id, claim.c.entity_key, claim.c.source_key).select_from(keys).join(claim, sa.true())
        else:
            query = sa.select(CLAIMS.c.id, CLAIMS.c.entity_key, CLAIMS.c.source_key).where(
                *match, in_values(connection, CLAIMS.c.source_key, part))
        found.extend(row for row in connection.execute(query) if row.entity_key not in subjects)
    return found


def _has_claims(connection: sa.Connection, library: str, source_id: str) -> bool:
    """Whether the library holds any claim of the source."""
    query = sa.select(CLAIMS.c.id).where(CLAIMS.c.library == library, CLAIMS.c.source_id == source_id).limit(1)
    return connection.execute(query).first() is not None


def recompute(connection: sa.Connection, spec: LibrarySpec, keys: list[str], *, at: dt.datetime, run_id: str,
              source_id: str, fresh: dict[str, LiveClaim | None] | None = None) -> dict[str, int]:
    """Recompute the golden records of the given subjects (inside the caller's transaction).

    `fresh`: claims of `source_id` just stored in this transaction, by subject (None = withdrawn), so they need not
    be read back and decrypted; it must cover every given subject then."""
    counts = {**dict.fromkeys(RECOMPUTE_COUNTS, 0), "keys_touched": len(keys)}
    for part in chunks(sorted(set(keys))):
        plan = plan_recompute(connection, spec, part, at=at, run_id=run_id, source_id=source_id, fresh=fresh)
        for name, value in apply_plan(connection, spec, plan).items():
            counts[name] += value
    return counts


@dataclass
class Plan:
    """What recomputing one chunk of subjects writes. Made from reads alone (claims, overrides, current versions), so
    a worker process can make it while another chunk's plan is written; subjects of different plans never overlap."""

    keys: list[str]  # the chunk's subjects (their stored conflicts are read when the plan is applied)
    at: dt.datetime
    run_id: str
    closing: list[dict[str, Any]]  # current versions superseded: id, superseded_at, valid_to
    versions: list[dict[str, Any]]  # new golden_version rows, record_enc filled in
    current: list[dict[str, Any]]  # the library table's new rows
    replaced: list[str]  # subjects whose current row goes: rewritten (in `current`) or tombstoned
    conflicts: dict[str, list[dict[str, Any]]]  # per recomputed subject, the sources' disagreements
    tombstones: int


def plan_recompute(connection: sa.Connection, spec: LibrarySpec, part: list[str], *, at: dt.datetime, run_id: str,
                   source_id: str, fresh: dict[str, LiveClaim | None] | None = None) -> Plan:
    """Survivorship, history rows and current rows of one chunk of subjects (sorted, distinct, ≤ IN_CHUNK)."""
    cipher = get_cipher()
    if fresh is None:
        live = _live_claims(connection, spec, cipher, part)
    else:
        live = _live_claims(connection, spec, cipher, part, except_source=source_id)
        for key in part:
            claim = fresh[key]
            if claim is not None:
                live.setdefault(key, []).append(claim)
    overrides = active_overrides(connection, spec.name, part, cipher)
    current = _current_versions(connection, spec.name, part)
    tombstone_hash = cipher.index_hash(TOMBSTONE_HASH_INPUT)
    new_versions: list[dict[str, Any]] = []
    record_texts: list[str] = []
    records: dict[str, tuple[dict[str, Any], JsonText]] = {}
    gone: list[str] = []
    conflicts: dict[str, list[dict[str, Any]]] = {}
    for key in part:
        now = current.get(key)
        claims = live.get(key)
        if not claims:
            if now is not None and not now.tombstone:
                new_versions.append(_version_row(spec, cipher, key, now, None, at, run_id, tombstone_hash))
                gone.append(key)
            continue
        survivor = survive(spec.name, spec.fields, claims, overrides.get(key, []))
        conflicts[key] = survivor.conflicts
        record_text = canonical_value(survivor.record)
        digest = _record_hash(cipher, survivor, record_text)
        if now is not None and not now.tombstone and now.record_hash == digest:
            continue
        lineage = JsonText(compact_text(survivor.lineage))
        new_versions.append(_version_row(spec, cipher, key, now, survivor, at, run_id, digest, lineage))
        record_texts.append(record_text)
        records[key] = (survivor.record, lineage)
    for row, text in zip((r for r in new_versions if not r["tombstone"]), cipher.encrypt_many(record_texts)):
        row["record_enc"] = text
    closing = [{"id": now.id, "superseded_at": row["recorded_at"], "valid_to": row["valid_from"]}
               for row in new_versions if (now := current.get(row["entity_key"])) is not None]
    return Plan(part, at, run_id, closing, new_versions, _current_rows(spec, records, at=at, run_id=run_id, source_id=source_id),
                list(records) + gone, conflicts, len(gone))


def apply_plan(connection: sa.Connection, spec: LibrarySpec, plan: Plan) -> dict[str, int]:
    """Write a plan (inside the caller's transaction): close and add versions, rewrite current rows, store conflicts."""
    update_where_id(connection, VERSIONS, plan.closing)
    insert_rows(connection, VERSIONS, plan.versions)
    delete_where_in(connection, spec.table, spec.key_column, plan.replaced)
    insert_rows(connection, spec.table, plan.current)
    opened, resolved = _record_conflicts(connection, spec, plan.keys, plan.conflicts, plan.run_id, plan.at)
    return {"versions": len(plan.versions) - plan.tombstones, "tombstones": plan.tombstones, "conflicts_open": opened,
            "conflicts_resolved": resolved}


def _live_claims(connection: sa.Connection, spec: LibrarySpec, cipher: FieldCipher, keys: list[str],
                 except_source: str | None = None) -> dict[str, list[LiveClaim]]:
    """Every source's live (not withdrawn) claim about each subject, decrypted (but the excepted source's)."""
    query = sa.select(CLAIMS.c.entity_key, CLAIMS.c.source_id, CLAIMS.c.source_key, CLAIMS.c.run_id, CLAIMS.c.extracted_at,
                      CLAIMS.c.valid_from, CLAIMS.c.ruleset_version, CLAIMS.c.payload_enc).where(
        CLAIMS.c.library == spec.name, in_values(connection, CLAIMS.c.entity_key, keys), CLAIMS.c.deleted.is_(False))
    if except_source is not None:
        query = query.where(CLAIMS.c.source_id != except_source)
    rows = list(connection.execute(query))
    payloads = cipher.decrypt_many([row.payload_enc for row in rows])
    out: dict[str, list[LiveClaim]] = {}
    loads = json.loads
    for row, payload in zip(rows, payloads):
        claim = LiveClaim(row.source_id, row.source_key, row.run_id, row.extracted_at, row.valid_from, row.ruleset_version,
                          loads(payload))
        found = out.get(row.entity_key)
        if found is None:
            out[row.entity_key] = [claim]
        else:
            found.append(claim)
    return out


def active_overrides(connection: sa.Connection, library: str, keys: list[str], cipher: FieldCipher | None = None,
                     ) -> dict[str, list[ActiveOverride]]:
    """Active steward overrides of the subjects (the newest per field wins if several are active)."""
    cipher = cipher or get_cipher()
    query = (sa.select(OVERRIDES).where(OVERRIDES.c.library == library, in_values(connection, OVERRIDES.c.entity_key, keys),
                                        OVERRIDES.c.revoked_at.is_(None)).order_by(OVERRIDES.c.id))
    rows = list(connection.execute(query))
    values = cipher.decrypt_many([row.value_enc for row in rows])
    out: dict[str, dict[str, ActiveOverride]] = {}
    for row, value in zip(rows, values):
        out.setdefault(row.entity_key, {})[row.field] = ActiveOverride(row.id, row.field, json.loads(value), row.steward,
                                                                       row.created_at)
    return {key: list(by_field.values()) for key, by_field in out.items()}


def _current_versions(connection: sa.Connection, library: str, keys: list[str]) -> dict[str, _Current]:
    """The current golden version of each subject that has one."""
    query = sa.select(VERSIONS.c.id, VERSIONS.c.entity_key, VERSIONS.c.version, VERSIONS.c.record_hash, VERSIONS.c.tombstone,
                      VERSIONS.c.recorded_at).where(VERSIONS.c.library == library, in_values(connection, VERSIONS.c.entity_key, keys),
                                                    VERSIONS.c.superseded_at.is_(None))
    return {row.entity_key: _Current(row.id, row.version, row.record_hash, row.tombstone, row.recorded_at)
            for row in connection.execute(query)}


def _record_hash(cipher: FieldCipher, survivor: Survivor, record_text: str | None = None) -> str:
    """HMAC of the record and of where each field came from (a source or an override), so either change is a version:
    canonical JSON of {"from": …, "record": …} (record_text: the record's canonical JSON, if already made)."""
    origin = tuple((name, f"override:{line['override']}" if "override" in line else line["source_id"])
                   for name, line in survivor.lineage.items())
    origin_text = _ORIGINS.get(origin)
    if origin_text is None:
        if len(_ORIGINS) > 100_000:
            _ORIGINS.clear()
        origin_text = _ORIGINS[origin] = canonical_value(dict(origin))
    if record_text is None:
        record_text = canonical_value(survivor.record)
    # = canonical_value({"record": record, "from": origin}): sorted keys, no spaces
    return cipher.index_hash(f'{{"from":{origin_text},"record":{record_text}}}')


_ORIGINS: dict[tuple[tuple[str, str], ...], str] = {}  # field -> origin pairs (few patterns recur) -> canonical JSON


def _version_row(spec: LibrarySpec, cipher: FieldCipher, key: str, now: _Current | None, survivor: Survivor | None,
                 at: dt.datetime, run_id: str, digest: str, lineage: JsonText | None = None) -> dict[str, Any]:
    """A new golden_version row (survivor None = tombstone; record_enc is filled in by the caller, in bulk)."""
    recorded = max(at, now.recorded_at) if now is not None else at  # record time never runs backwards for a subject
    return {"library": spec.name, "entity_key": key, "version": (now.version + 1) if now else 1,
            "valid_from": (survivor.valid_from if survivor else None) or recorded, "valid_to": None,
            "recorded_at": recorded, "superseded_at": None, "tombstone": survivor is None, "record_enc": None,
            "record_hash": digest, "lineage": lineage if survivor else None, "run_id": run_id}


def _current_rows(spec: LibrarySpec, records: dict[str, tuple[dict[str, Any], JsonText]], *, at: dt.datetime,
                  run_id: str, source_id: str) -> list[dict[str, Any]]:
    """The library table's rows of the recomputed subjects (personal data encrypted by the spec)."""
    keys = list(records)
    if not keys:
        return []
    rows = spec.database_rows(keys, [restore(spec, records[k][0]) for k in keys])
    for row, key in zip(rows, keys):
        row.update(source_id=source_id, run_id=run_id, updated_at=at, lineage=records[key][1])
    # JSON columns serialised here, in the plan (a worker's), not by the writer (a licence's face content)
    for name in _json_columns(spec.table):
        for row in rows:
            value = row.get(name)
            if value is not None and not isinstance(value, JsonText):
                row[name] = json_text(value)
    return rows


@lru_cache(maxsize=16)
def _json_columns(table: sa.Table) -> tuple[str, ...]:
    """A current table's plain JSON columns (the lineage comes serialised already)."""
    return tuple(c.name for c in table.c if isinstance(c.type, sa.JSON))


def _shown(spec: LibrarySpec, name: str, value: Any) -> str | None:
    """A value as a conflict record may show it: personal fields masked, everything at most 500 characters."""
    if value is None:
        return None
    text = value if isinstance(value, str) else canonical_value(value).strip('"')
    mask = getattr(spec, "masks", {}).get(name)
    return (mask(text) if mask else text)[:500]


def field_label(spec: LibrarySpec, name: str) -> str:
    """The Chinese label of a golden field (ticket titles and messages): the spec's own `labels` if it has them, else
    the standard data element of that name, else the current table's column comment, else the field name."""
    return _field_label(spec.name, name, getattr(spec, "labels", {}).get(name))


@lru_cache(maxsize=512)
def _field_label(library: str, name: str, declared: str | None) -> str:
    """field_label, cached per library and field."""
    if declared:
        return declared
    from schemas.elements import library_elements

    for element in library_elements(library):
        if element.name == name and element.label:
            return element.label
    table = get_library(library).table
    column = table.c.get(name) if name in table.c else table.c.get(f"{name}_enc")
    comment = (column.comment or "") if column is not None else ""
    comment = re.sub(r"（[^）]*）|\([^)]*\)", "", comment)  # 法定代表人（负责人）姓名 → 法定代表人姓名
    for stop in ("：", " /"):  # 主体类别：enterprise 企业 / … → 主体类别
        comment = comment.split(stop, 1)[0]
    comment = comment.strip().removesuffix("密文")
    return comment or name


@lru_cache(maxsize=256)
def _department(source_id: str) -> tuple[str, str] | None:
    """A registered source's department (code, Chinese name); None for a source the registry does not know."""
    from connectors.registry import get_source

    try:
        spec = get_source(source_id)
    except (KeyError, ValueError):
        return None
    return spec.department_code, spec.department


def _record_conflicts(connection: sa.Connection, spec: LibrarySpec, keys: list[str], conflicts: dict[str, list[dict[str, Any]]],
                      run_id: str, at: dt.datetime) -> tuple[int, int]:
    """Store the sources' disagreements on recomputed subjects; earlier ones that no longer hold become resolved.
    Both feed the losing source's feedback ticket in the same transaction (quality.store.record_merge_conflicts)."""
    from quality.store import MergeConflict, record_merge_conflicts, upsert

    prefix = f"MERGE-{spec.name}-"
    existing = {(r.source_id, r.source_key, r.rule_id): r for r in connection.execute(
        sa.select(CONFLICTS.c.id, CONFLICTS.c.source_id, CONFLICTS.c.source_key, CONFLICTS.c.rule_id, CONFLICTS.c.first_run_id,
                  CONFLICTS.c.status).where(in_values(connection, CONFLICTS.c.subject_key, keys), CONFLICTS.c.rule_id.startswith(prefix)))}
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    records: dict[tuple[str, str, str], str] = {}  # the source's own record key of each conflict
    for key, found in conflicts.items():
        for c in found:
            # one claim per source and subject; an event record may name several subjects, hence the subject in the key
            source_key = f"{c['source_key']}|{key}"[:512]
            rule_id = f"{prefix}{c['field']}"
            before = existing.get((c["source_id"], source_key, rule_id))
            rows[(c["source_id"], source_key, rule_id)] = {
                "rule_id": rule_id, "field": c["field"], "subject_key": key, "source_id": c["source_id"], "source_key": source_key,
                "value": _shown(spec, c["field"], c["value"]), "reference_source_id": c["reference_source_id"],
                "reference_key": c["reference_key"], "reference_value": _shown(spec, c["field"], c["reference_value"]),
                "status": "open", "first_run_id": before.first_run_id if before is not None else run_id, "last_run_id": run_id}
            records[(c["source_id"], source_key, rule_id)] = c["source_key"]
    upsert(connection, CONFLICTS, list(rows.values()), ["source_id", "source_key", "rule_id"])
    stale = [k for k, row in existing.items() if k not in rows and row.status == "open"]
    for part in chunks([existing[k].id for k in stale]):
        connection.execute(sa.update(CONFLICTS).where(in_values(connection, CONFLICTS.c.id, part)).values(status="resolved", last_run_id=run_id))
    if rows or stale:
        feedback = [MergeConflict(r["source_id"], r["source_key"], records[k], r["rule_id"], r["field"],
                                  field_label(spec, r["field"]), r["value"], r["reference_source_id"], r["reference_key"],
                                  r["reference_value"]) for k, r in rows.items()]
        named = {k[0] for k in stale} | {name for r in rows.values() for name in (r["source_id"], r["reference_source_id"])}
        departments = {source: found for source in named if (found := _department(source)) is not None}
        record_merge_conflicts(connection, conflicts=feedback, resolved=stale, departments=departments, run_id=run_id, at=at)
    return len(rows), len(stale)


def withdrawals(engine: sa.Engine, library: str, source_id: str, source_keys: list[str]) -> Claims:
    """Deleted claims for source records a snapshot says are gone (found by their source key in library_claim)."""
    out = Claims()
    with engine.connect() as connection:
        for part in chunks(source_keys):
            query = sa.select(CLAIMS.c.entity_key, CLAIMS.c.source_key).where(
                CLAIMS.c.library == library, CLAIMS.c.source_id == source_id, in_values(connection, CLAIMS.c.source_key, part))
            for row in connection.execute(query):
                out.add(row.entity_key, {}, None, -1, deleted=True, source_key=row.source_key)
    return out


__all__ = ["BATCH_KEYS", "PARALLEL_FROM", "Plan", "active_overrides", "apply_plan", "canonical", "merge_claims", "pending_runs_of",
           "plan_recompute", "recompute", "recompute_pending", "recompute_workers", "restore", "withdrawals"]
