"""The quality stage of a merge: check every landed, unchecked run of a library's sources before anything loads.

For each run: standardise into staging, evaluate every rule (the bare pass), validate the outcome with the
Great Expectations suite generated from the catalogue (the Data Docs pages of all the runs a stage checks, and
the site's index, are rendered together after its last run: GX's set-up costs more than a small run), then record —
in one transaction — the run's accounting, defects and tickets, quarantine, conflicts and natural keys, and
write each row's verdict beside the staged rows for the load step. Rows in = rows to load + rows
quarantined + duplicates merged, or the stage fails loudly. Checking a run twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from connectors.landing import safe_run_id
from connectors.registry import get_source, sources_for
from hub.crypto import get_cipher
from hub.db import engine_for
from hub.faults import fault_point
from hub.models import QualityRun, SourceRun
from hub.settings import Settings, get_settings
from quality import store
from quality.catalogue import load_catalogue, ruleset_version
from quality.engine import MERGE, QUARANTINE, Evaluation, evaluate
from quality.frame import Frame, RuleContext
from quality.references import References, build_references, needed_columns, needed_sources
from quality.staging import StagedRows, current_rows, stage_run, write_verdict

log = logging.getLogger(__name__)
LOCAL_ZONE = ZoneInfo("Asia/Shanghai")  # reference dates are the province's calendar days


class ConservationError(RuntimeError):
    """Rows were lost or invented between landing and verdict."""


def reference_date_of(run_time: dt.datetime) -> dt.date:
    """The calendar day (Asia/Shanghai) a run's rules judge dates against."""
    return run_time.astimezone(LOCAL_ZONE).date()


def docs_dir(settings: Settings) -> Path:
    """The Data Docs site of the hub (one site, one page per checked run)."""
    return settings.data_root / "quality" / "docs"


def unchecked_runs(engine: sa.Engine, library: str) -> list[SourceRun]:
    """Landed runs of the library's sources (merged or not) that have no quality run yet, oldest first."""
    ids = [spec.id for spec in sources_for(library)]
    checked = sa.select(QualityRun.id).where(QualityRun.source_id == SourceRun.source_id, QualityRun.run_id == SourceRun.run_id)
    query = (sa.select(SourceRun).where(SourceRun.source_id.in_(ids), SourceRun.landing_path.is_not(None), ~sa.exists(checked))
             .order_by(SourceRun.id))
    with sa.orm.Session(engine) as session:
        return list(session.scalars(query))


def load_references(engine: sa.Engine, settings: Settings, reference_date: dt.date) -> References:
    """References from the staged rows of every anchor source the hub has landed (staging them if needed): only the
    columns the lookups read, so a stage holds a few columns of each anchor source, not the whole source."""
    tables = {}
    columns = needed_columns()
    for source_id in needed_sources():
        table = current_rows(engine, settings.staging_dir, source_id, columns[source_id])
        if table is not None:
            tables[source_id] = table
    return build_references(tables, reference_date)


def check_pending(library: str, run_time: dt.datetime | None = None, use_gx: bool = True) -> dict[str, Any]:
    """Check every unchecked run of a library; returns {source/run: accounting and Data Docs page}."""
    settings = get_settings()
    engine = engine_for(settings.database_url)
    results: dict[str, Any] = {}
    runs = unchecked_runs(engine, library)
    references: dict[dt.date, References] = {}
    docs: list[Any] = []  # GX outcomes of the runs checked here: their Data Docs pages are rendered together at the end
    try:
        for run in runs:
            when = run_time or run.finished_at or run.started_at  # a rerun of the same run judges the same way
            day = reference_date_of(when)
            if day not in references:
                references[day] = load_references(engine, settings, day)
            results[f"{run.source_id}/{run.run_id}"] = check_run(engine, settings, run, references[day], when, use_gx, docs)
    except BaseException:
        build_docs(settings, docs, quiet=True)  # the runs recorded before the failure keep working links
        raise
    build_docs(settings, docs)
    if run_time is not None:
        from quality.timeliness import check_timeliness

        results["timeliness"] = check_timeliness(engine, library, run_time)
    if runs and run_time is not None:
        from quality.report import write_check_report

        results["report"] = str(write_check_report(settings.data_root / "quality", library, run_time, results))
    return results


def build_docs(settings: Settings, outcomes: list[Any], quiet: bool = False) -> float:
    """Render the Data Docs pages of the checked runs and the site's index once (not once per run); seconds spent.

    quiet: while another error is on its way out, a failing build is logged instead of hiding that error.
    """
    if not outcomes:
        return 0.0
    from quality import gx_suite

    try:
        return gx_suite.build_data_docs(docs_dir(settings), outcomes)
    except Exception:
        if not quiet:
            raise
        log.exception("Data Docs 生成失败 Data Docs build failed after a failed quality stage")
        return 0.0


def check_run(engine: sa.Engine, settings: Settings, run: SourceRun, references: References, run_time: dt.datetime,
              use_gx: bool = True, docs: list[Any] | None = None) -> dict[str, Any]:
    """The quality stage for one landed run.

    docs: where to leave the run's GX outcome for a Data Docs build after the caller's last run (check_pending);
    without it the run's page is rendered at once. Either way its path is recorded with the run.
    """
    spec = get_source(run.source_id)
    catalogue = load_catalogue(spec.library)
    rows_path = stage_run(settings.staging_dir, run)
    table = StagedRows(rows_path)  # columns read as the rules ask for them
    cipher = get_cipher()
    known = store.KnownKeys(engine, run.source_id, cipher.index_hash_many)
    with engine.connect() as connection:
        waived = store.waivers(connection, run.source_id)
    context = RuleContext(run.source_id, run.run_id, reference_date_of(run_time), catalogue, references, known, waived)
    evaluation = evaluate(table, context)
    counts = evaluation.counts()
    if counts["rows"] != run.rows_extracted or counts["loaded"] + counts["quarantined"] + counts["merged"] != counts["rows"]:
        raise ConservationError(
            f"{run.source_id}/{run.run_id}: 行数不守恒 rows not conserved: landed {run.rows_extracted}, checked {counts['rows']}, "
            f"to load {counts['loaded']} + quarantined {counts['quarantined']} + merged {counts['merged']}")
    gx = None
    if use_gx and evaluation.rules:
        from quality import gx_suite

        gx = gx_suite.validate(evaluation.pass_columns(), evaluation.rules, f"{spec.library}.{spec.id}",
                               safe_run_id(run.run_id), run_time, docs_dir(settings), build_docs=docs is None)
        if docs is not None:
            docs.append(gx)
    write_verdict(rows_path, evaluation.verdict, evaluation.source_keys)
    write_quarantine_file(settings, run, evaluation)
    fault_point("quality.before_record")  # files written, run not recorded: a rerun checks it again
    with engine.begin() as connection:
        outcome = record_run(connection, run, spec.library, spec.department_code, evaluation, run_time, rows_path, gx, known)
    rule_counts = {r.id: int(evaluation.fail(r.id).sum()) for r in evaluation.rules if evaluation.fail(r.id).any()}
    return {**counts, **outcome, "score": outcome.pop("score"), "rule_counts": rule_counts,
            "gx_success": gx.success if gx else None, "docs_page": gx.docs_page if gx else None}


def write_quarantine_file(settings: Settings, run: SourceRun, evaluation: Evaluation) -> Path | None:
    """The run's quarantined rows with their rules and reasons as Parquet (quarantine/<source>/run=<run>/rows.parquet)."""
    held = np.flatnonzero(evaluation.verdict == QUARANTINE)
    path = settings.quarantine_dir / run.source_id / f"run={safe_run_id(run.run_id)}" / "rows.parquet"
    if not len(held):
        return None
    errors = store.messages_by_key(store.group_findings(evaluation.findings), "error")
    keys = evaluation.source_keys.take(pa.array(held)).to_pylist()
    table = evaluation.quarantined_rows
    table = table.append_column("_rules", pa.array([",".join(errors[str(k)][0]) for k in keys], pa.string()))
    table = table.append_column("_reason", pa.array(["; ".join(errors[str(k)][1]) for k in keys], pa.string()))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(".rows.parquet.tmp")
    pq.write_table(table, temporary, compression="zstd")
    temporary.replace(path)
    return path


def _subject_keys(evaluation: Evaluation, library: str) -> list[str | None]:
    """Subject key of the quarantined rows: resident-ID HMAC for persons, USCC for entities, licence id, record id.

    Read from the quarantined rows' own frame, so the batch's identifier checks are not derived again for them."""
    held = Frame(evaluation.quarantined_rows, evaluation.frame.context)
    if library == "population" and "resident_id" in held.columns:
        ids = held.identifier_key("resident_id", "resident-id").to_pylist()
        return list(get_cipher().index_hash_many([i or None for i in ids]))
    name = {"legal_entity": "uscc", "licence": "licence_id", "credit": "record_id"}.get(library)
    if name and name in held.columns:
        return [v if v else None for v in held.strings(name).tolist()]
    return [None] * held.rows


def record_run(connection: sa.Connection, run: SourceRun, library: str, department: str, evaluation: Evaluation,
               run_time: dt.datetime, rows_path: Path, gx: Any, known: store.KnownKeys) -> dict[str, Any]:
    """Write everything one checked run produced (inside the caller's transaction)."""
    catalogue = load_catalogue(library)
    findings = store.group_findings(evaluation.findings)
    keys = evaluation.source_keys  # Arrow text: a full run's keys never become a million Python str
    verdict = evaluation.verdict
    checked_rules = {r.id for r in evaluation.rules if r.id not in evaluation.skipped}
    rules = {r.id: store.RuleInfo(r.name, r.severity) for r in catalogue.rules}
    defects = store.record_defects(connection, source_id=run.source_id, department=department, run_id=run.run_id, at=run_time,
                                   findings=findings, seen_keys=keys, rules=rules, checked_rules=checked_rules)
    held = np.flatnonzero(verdict == QUARANTINE)
    errors = store.messages_by_key(findings, "error")
    payloads = store.row_payloads(evaluation.quarantined_rows) if len(held) else []
    encrypted = get_cipher().encrypt_many(payloads)
    subjects = _subject_keys(evaluation, library)
    held_keys = [str(k) for k in keys.take(pa.array(held)).to_pylist()]
    quarantined = [{"source_key": key, "subject_key": subjects[i], "row_enc": encrypted[i],
                    "rule_ids": ",".join(errors[key][0])[:1024], "reasons": "\n".join(errors[key][1])}
                   for i, key in enumerate(held_keys)]
    quarantine = store.record_quarantine(connection, source_id=run.source_id, library=library, run_id=run.run_id, at=run_time,
                                         quarantined=quarantined, passed_keys=keys.filter(pa.array(verdict != QUARANTINE)))
    conflicts = _conflict_rows(evaluation)
    conflict_counts = store.record_conflicts(connection, source_id=run.source_id, run_id=run.run_id, conflicts=conflicts,
                                             seen_keys=keys, checked_rules=checked_rules)
    new_keys = known.record(connection, keys, verdict != MERGE, run.run_id)
    counts = evaluation.counts()
    failing_any = np.zeros(evaluation.rows, dtype=bool)
    dimension_rows: dict[str, int] = {}
    for dimension in sorted({r.dimension for r in evaluation.rules}):
        mask = evaluation.any_fail([r for r in evaluation.rules if r.dimension == dimension])
        dimension_rows[dimension] = int(mask.sum())
        failing_any |= mask
    severities = evaluation.findings.column("severity").to_pylist()
    score = round(100.0 * (1 - float(failing_any.sum()) / counts["rows"]), 3) if counts["rows"] else 100.0
    connection.execute(sa.insert(QualityRun.__table__).values(
        source_id=run.source_id, run_id=run.run_id, library=library, department_code=department,
        status="checked" if get_source(run.source_id).merge and library in _loadable() else "checked_only",
        reference_date=reference_date_of(run_time), checked_at=run_time, rows_in=counts["rows"],
        rows_loaded=counts["loaded"], rows_quarantined=counts["quarantined"], rows_merged=counts["merged"],
        rows_warned=counts["warned"], findings_error=severities.count("error"), findings_warning=severities.count("warning"),
        score=score,
        dimension_rows=dimension_rows, rule_counts={r.id: int(evaluation.fail(r.id).sum()) for r in evaluation.rules if evaluation.fail(r.id).any()},
        skipped_rules=evaluation.skipped or None, gx_success=gx.success if gx else None, rules_seconds=round(evaluation.seconds, 4),
        gx_seconds=round(gx.seconds, 4) if gx else None, docs_page=gx.docs_page if gx else None, staging_path=str(rows_path),
        ruleset_version=ruleset_version(library),
    ))
    return {**defects, **quarantine, **conflict_counts, "natural_keys": new_keys, "score": score}


def _loadable() -> set[str]:
    """Libraries the hub can merge today (those with a library spec)."""
    from libraries.registry import available

    return set(available())


def _conflict_rows(evaluation: Evaluation) -> list[dict[str, Any]]:
    """Conflict records of an evaluation, with person subjects keyed by HMAC (never a clear ID number)."""
    table = evaluation.conflicts
    if not table.num_rows:
        return []
    columns = table.to_pydict()
    persons = {r.id for r in evaluation.rules if r.check in ("compare_person_name", "compare_marital_status")}
    hashed = get_cipher().index_hash_many([s if rule in persons else None for s, rule in zip(columns["subject"], columns["rule_id"])])
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for i in range(table.num_rows):
        subject = hashed[i] if columns["rule_id"][i] in persons else columns["subject"][i]
        out[(columns["source_key"][i], columns["rule_id"][i])] = {
            "source_key": columns["source_key"][i], "rule_id": columns["rule_id"][i], "field": columns["field"][i],
            "subject_key": subject or "", "value": (columns["value"][i] or "")[:500] or None,
            "reference_source_id": columns["reference_source"][i] or "", "reference_key": columns["reference_key"][i],
            "reference_value": (columns["reference_value"][i] or "")[:500] or None}
    return list(out.values())


__all__ = ["ConservationError", "build_docs", "check_pending", "check_run"]
