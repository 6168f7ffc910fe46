"""Load checked runs into the base libraries: the rows the quality stage let through, nothing else.

The quality stage (quality.stage) standardises every landed run into staging and gives each row a verdict:
load, quarantine (it failed an error-severity rule; held in the hub database with its reasons) or merge (a
duplicate of a record already taken in). Loading turns the `load` rows into claims (the library's spec,
libraries/registry.py) and merges them (libraries/merge.py: field-level survivorship, history, lineage), and
checks, per run, that rows in = rows loaded + rows quarantined + duplicates merged — or fails loudly.
A snapshot's delete rows withdraw the source's claims on those records.

In a library whose sources describe the same subjects (spec.shared_subjects), when runs of several sources are
pending, load_pending stores the claims of every pending run first and recomputes each touched subject once at the
end (libraries.merge: deferred merge), so a subject three sources' runs touch is recomputed once, not three times;
before a second run of a source whose first run is still deferred, the deferred subjects are recomputed. Otherwise
each run is merged on its own.

source_run keeps the collection's view: rows_loaded = rows taken into the library (loaded + merged
duplicates), rows_rejected = rows quarantined. quality_run keeps the exact split.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from connectors.registry import get_source, sources_for
from hub.db import engine_for
from hub.faults import fault_point
from hub.models import QualityRun, QuarantinedRow, SourceRun
from hub.settings import get_settings
from libraries.merge import PARALLEL_FROM, merge_claims, pending_runs_of, recompute_pending, recompute_workers, withdrawals
from libraries.registry import available, get_library
from quality.engine import LOAD, MERGE, QUARANTINE
from quality.stage import ConservationError
from quality.staging import iter_rows, read_verdict, rows_with_keys

BATCH_ROWS = 50_000
log = logging.getLogger(__name__)


def pending_runs(engine: sa.Engine, library: str) -> list[SourceRun]:
    """Landed runs of the library's merged sources not loaded yet, oldest first."""
    source_ids = [spec.id for spec in sources_for(library, merged_only=True)]
    query = sa.select(SourceRun).where(SourceRun.source_id.in_(source_ids), SourceRun.status == "landed").order_by(SourceRun.id)
    with sa.orm.Session(engine) as session:
        return list(session.scalars(query))


def load_pending(library: str, run_time: dt.datetime | None = None) -> dict:
    """Check (if the quality stage has not yet) and load every pending run of a library; returns {source_id/run_id: counts}."""
    from quality.stage import check_pending

    engine = engine_for(get_settings().database_url)
    check_pending(library, run_time=None, use_gx=False)  # runs the merge DAG's quality task already checked are skipped
    if library not in available():  # checked (tickets, quarantine) but not loadable yet
        return {"not_loaded": f"基础库 {library} 尚无入库程序 no loader yet; runs stay checked and pending"}
    results = {}
    deferred = pending_runs_of(engine, library)  # empty but after a load cut short: its runs' subjects still wait
    runs = pending_runs(engine, library)
    # deferring pays when several sources' runs name the same subjects (counting a cut-short load's sources keeps
    # its rerun on the path the uninterrupted load took), or when the runs are large enough for the recompute's
    # worker processes (alone, re-reading the stored claims costs a one-source library more than it saves)
    shared = get_library(library).shared_subjects and len({run.source_id for run in runs} | set(deferred)) > 1
    defer = shared or (sum(run.rows_extracted for run in runs) > PARALLEL_FROM and recompute_workers(engine) > 1)
    for run in runs:
        if deferred.get(run.source_id, {run.run_id}) != {run.run_id}:  # never fold two runs of one source together
            _recompute(engine, library, results)
            deferred.clear()
        results[f"{run.source_id}/{run.run_id}"] = load_run(engine, run, defer=defer)
        if defer:
            deferred.setdefault(run.source_id, set()).add(run.run_id)
    _recompute(engine, library, results)
    released = load_released(engine, library)
    if released:
        results["released_from_quarantine"] = released
    return results


def _recompute(engine: sa.Engine, library: str, results: dict) -> None:
    """Recompute the subjects the deferred loads left pending; their counts add up under results["recomputed"]."""
    counts = recompute_pending(engine, library)
    if counts["keys_touched"]:
        log.info("%s: %s subjects recomputed: %s", library, counts["keys_touched"], counts)
        totals = results.setdefault("recomputed", {})
        for name, value in counts.items():
            totals[name] = totals.get(name, 0) + value


def _quality_run(engine: sa.Engine, run: SourceRun) -> QualityRun:
    """The quality stage's record of a run (it must have been checked)."""
    with sa.orm.Session(engine) as session:
        found = session.scalars(sa.select(QualityRun).where(QualityRun.source_id == run.source_id, QualityRun.run_id == run.run_id)).first()
    if found is None:
        raise RuntimeError(f"{run.source_id}/{run.run_id}: 尚未经过质量检查 not checked by the quality stage yet")
    return found


def _merge_in_batches(engine: sa.Engine, library: str, batches: Iterable[pa.Table], run: SourceRun,
                      ruleset_version: str | None, defer: bool = False) -> dict[str, int]:
    """Turn staged rows into claims and merge them batch by batch (memory stays flat); returns the merge counts."""
    spec = get_library(library)
    totals: dict[str, int] = {}
    for rows in batches:
        keys = [str(k) for k in rows.column("_source_key").to_pylist()]
        claims = spec.claims(rows, run.source_id)
        if len(claims.source_keys) != len(claims):  # an adapter that does not name source records: take them from the rows
            claims.source_keys = [keys[i] for i in claims.row_index]
        if "_change" in rows.column_names:
            gone = [k for k, change in zip(keys, rows.column("_change").to_pylist()) if change == "delete"]
            withdrawn = withdrawals(engine, library, run.source_id, gone) if gone else None
            if withdrawn:
                for i in range(len(withdrawn)):
                    claims.add(withdrawn.keys[i], {}, None, -1, deleted=True, source_key=withdrawn.source_keys[i])
        counts = merge_claims(engine, library, claims, source_id=run.source_id, run_id=run.run_id,
                              extracted_at=run.finished_at or run.started_at, ruleset_version=ruleset_version,
                              defer=defer)
        for name, value in counts.items():
            totals[name] = totals.get(name, 0) + value
        fault_point("load.between_batches")
    return totals


def _rows_to_load(path: Path, verdict: np.ndarray) -> Iterator[pa.Table]:
    """The staged rows whose verdict is load, streamed from the run's file in tables of exactly BATCH_ROWS rows (the
    last one shorter): the merge's batches are those of the whole filtered run, whatever the file's row groups."""
    waiting: list[pa.Table] = []
    held = start = 0
    for part in iter_rows(path, BATCH_ROWS):
        kept = part.filter(pa.array(verdict[start:start + part.num_rows] == LOAD))
        start += part.num_rows
        waiting.append(kept)
        held += kept.num_rows
        while held >= BATCH_ROWS:
            rows = pa.concat_tables(waiting)
            yield rows.slice(0, BATCH_ROWS)
            waiting, held = [rows.slice(BATCH_ROWS)], rows.num_rows - BATCH_ROWS
    if held:
        yield pa.concat_tables(waiting)


def load_run(engine: sa.Engine, run: SourceRun, *, defer: bool = False) -> dict:
    """Load one checked run; marks it loaded with its counts. Rerunning a loaded run is a no-op (it is no longer pending).
    defer: store its claims only and leave the changed subjects to libraries.merge.recompute_pending."""
    spec = get_source(run.source_id)
    checked = _quality_run(engine, run)
    path = Path(checked.staging_path)
    verdict = read_verdict(path)
    staged = pq.ParquetFile(path).metadata.num_rows
    if len(verdict) != staged:
        raise ConservationError(f"{run.source_id}/{run.run_id}: 判定与暂存行数不符 verdicts ({len(verdict)}) ≠ staged rows ({staged})")
    merged_counts = _merge_in_batches(engine, spec.library, _rows_to_load(path, verdict), run, checked.ruleset_version,
                                      defer)
    log.info("%s/%s merged: %s", run.source_id, run.run_id, merged_counts)
    loaded, quarantined, merged = int((verdict == LOAD).sum()), int((verdict == QUARANTINE).sum()), int((verdict == MERGE).sum())
    if loaded + quarantined + merged != run.rows_extracted:
        raise ConservationError(
            f"{run.source_id}/{run.run_id}: 行数不守恒 rows not conserved: in {run.rows_extracted} != "
            f"loaded {loaded} + quarantined {quarantined} + merged {merged}")
    fault_point("load.before_mark")  # merged but still pending: a rerun merges the same claims again
    with engine.begin() as connection:
        connection.execute(sa.update(SourceRun).where(SourceRun.id == run.id).values(
            status="loaded", rows_loaded=loaded + merged, rows_rejected=quarantined, finished_at=run.finished_at))
        connection.execute(sa.update(QualityRun).where(QualityRun.id == checked.id).values(status="loaded"))
    return {"rows": run.rows_extracted, "loaded": loaded, "quarantined": quarantined, "merged": merged}


def load_released(engine: sa.Engine, library: str) -> int:
    """Load rows a steward released from quarantine (a disputed defect accepted); returns how many."""
    table = QuarantinedRow.__table__
    with engine.connect() as connection:
        pending = list(connection.execute(sa.select(table.c.id, table.c.source_id, table.c.source_key, table.c.run_id)
                                          .where(table.c.library == library, table.c.status == "release_pending")))
    done = 0
    by_run: dict[tuple[str, str], list] = {}
    for row in pending:
        by_run.setdefault((row.source_id, row.run_id), []).append(row)
    for (source_id, run_id), rows in by_run.items():
        with sa.orm.Session(engine) as session:
            checked = session.scalars(sa.select(QualityRun).where(QualityRun.source_id == source_id, QualityRun.run_id == run_id)).first()
            source_run = session.scalars(sa.select(SourceRun).where(SourceRun.source_id == source_id, SourceRun.run_id == run_id)).first()
        if checked is None or source_run is None:
            continue
        chosen = rows_with_keys(Path(checked.staging_path), [r.source_key for r in rows])
        batches = (chosen.slice(start, BATCH_ROWS) for start in range(0, chosen.num_rows, BATCH_ROWS))
        _merge_in_batches(engine, library, batches, source_run, checked.ruleset_version)
        with engine.begin() as connection:
            connection.execute(sa.update(table).where(table.c.id.in_([r.id for r in rows])).values(
                status="released", released_run_id=run_id))
        done += chosen.num_rows
    return done


__all__ = ["ConservationError", "load_pending", "load_run", "pending_runs"]
