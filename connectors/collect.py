"""Collect one source for one run: read it through its connector into an immutable landing, then record the run.

The watermark of the run is committed (in the hub database's source_run table) only after the landing is
published, so a crash between the two re-extracts the same range instead of skipping it. File fingerprints
are committed (connector.commit) after the run is recorded, for the same reason.

Modes (registry `mode`, see connectors.registry): incremental sources read what is newer than the last
watermark; snapshot sources are read whole and only the differences from the previous snapshot land
(connectors.snapshot), the previous snapshot being the keys file beside the latest recorded snapshot landing.

Backfill: collect(source_id, run_id, window=(from, to)) reads the replication-key window (from, to] of an
incremental sql/http source instead of "since the last watermark". Its source_run row carries no watermark (the
window is in the landing's details.backfill), so a backfill never moves the incremental watermark, backwards or
forwards; a rerun of the run id returns its landing, and asking that run id for another window is an error.

Schema drift: before extracting, the connector's schema is compared with the previous landing that had rows
(columns added, removed or retyped). The changes are kept in the landing's metadata (schema_changes); the
registry's `on_schema_drift` (warn | fail, default warn) says whether they only warn or stop the collection.

Retries: a connector error marked retryable (a SQL source's statement timeout or a connection lost mid-read,
connectors.sql.TransientSourceError) is retried within the task — the connector's extract_retry gives the attempts
and the first backoff, doubling — because a partial extract is never published, so the next attempt starts clean
from the same watermark. When the attempts are spent the task fails with a SourceError that says so; Airflow then
retries the task by its own policy (hub.dag_factory). Every other SourceError fails at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from connectors import connections
from connectors.base import Connector, SourceError, Watermark
from connectors.connections import sql_connection
from connectors.files import file_connector
from connectors.http import http_connector
from connectors.landing import METADATA_FILE, Landing, read_landing, write_landing
from connectors.registry import SourceSpec, get_source
from connectors.snapshot import SnapshotDiff
from connectors.sql import sql_connector
from hub.db import engine_for
from hub.faults import fault_point
from hub.models import SourceRun
from hub.settings import get_settings

log = logging.getLogger(__name__)

DRIFT_POLICIES = ("warn", "fail")
_sleep = time.sleep  # the wait between extract attempts (tests replace it)


def connector_for(spec: SourceSpec) -> Connector:
    """The connector of a registered source."""
    if spec.kind == "sql":
        try:
            url, extra = sql_connection(spec.connection)
        except (LookupError, ValueError) as error:  # the messages name the connection, never its content
            raise SourceError(f"数据源 {spec.id}: {error}") from error
        return sql_connector(spec, url, extra)
    if spec.kind == "file":
        return file_connector(spec, connection_fields(spec.id, spec.connection), get_settings().data_root)
    if spec.kind == "http":
        return http_connector(spec, connection_fields(spec.id, spec.connection))
    raise SourceError(f"数据源 {spec.id}: 类型 {spec.kind} 的连接器尚未实现 connector kind not available yet")


def connection_fields(source_id: str, conn_id: str) -> dict[str, Any]:
    """Every field of an Airflow connection, extra included (fs connections keep their folder in extra.path)."""
    try:
        return connections.connection_fields(conn_id)
    except (LookupError, ValueError) as error:  # the messages name the connection, never its content
        raise SourceError(f"数据源 {source_id}: {error}") from error


def last_watermark(engine: sa.Engine, source_id: str) -> str | None:
    """High watermark of the latest published run of a source (None: never collected)."""
    query = (
        sa.select(SourceRun.watermark_to)
        .where(SourceRun.source_id == source_id, SourceRun.watermark_to.is_not(None))
        .order_by(SourceRun.id.desc())
        .limit(1)
    )
    with engine.connect() as connection:
        return connection.execute(query).scalar_one_or_none()


def record_landing(engine: sa.Engine, landing: Landing, started_at: datetime) -> None:
    """Record a published landing as a source_run row (once per source and run id); a backfill records no watermark."""
    incremental = not landing.details.get("backfill")
    with engine.begin() as connection:
        exists = connection.execute(
            sa.select(SourceRun.id).where(SourceRun.source_id == landing.source_id, SourceRun.run_id == landing.run_id)
        ).first()
        if exists:
            return
        connection.execute(
            sa.insert(SourceRun).values(
                source_id=landing.source_id,
                run_id=landing.run_id,
                status="landed",
                started_at=started_at,
                finished_at=datetime.fromisoformat(landing.extracted_at),
                rows_extracted=landing.rows,
                landing_path=landing.path,
                landing_sha256=landing.sha256,
                watermark_from=landing.watermark_low if incremental else None,
                watermark_to=landing.watermark_high if incremental else None,
            )
        )


def previous_schema(engine: sa.Engine, source_id: str, run_id: str) -> pa.Schema | None:
    """Schema of the source's latest earlier landing that had rows (None: nothing to compare with)."""
    query = (
        sa.select(SourceRun.landing_path)
        .where(SourceRun.source_id == source_id, SourceRun.run_id != run_id, SourceRun.rows_extracted > 0,
               SourceRun.landing_path.is_not(None))
        .order_by(SourceRun.id.desc())
        .limit(1)
    )
    with engine.connect() as connection:
        path = connection.execute(query).scalar_one_or_none()
    if path is None or not Path(path).exists():
        return None
    return pq.read_schema(path)


def schema_changes(before: pa.Schema | None, after: pa.Schema) -> list[dict]:
    """Columns added, removed or retyped since the previous landing (lineage columns, named _*, are the hub's own)."""
    def source_fields(schema: pa.Schema) -> dict[str, pa.Field]:
        return {f.name: f for f in schema if not f.name.startswith("_")}

    old, new = source_fields(before) if before is not None else {}, source_fields(after)
    if not old or not new:  # no earlier landing, or an extract that describes nothing (e.g. no new files)
        return []
    changes = [{"change": "added", "column": n, "type": type_label(f)} for n, f in new.items() if n not in old]
    changes += [{"change": "removed", "column": n, "type": type_label(f)} for n, f in old.items() if n not in new]
    for name in (n for n in new if n in old):
        was, now = type_label(old[name]), type_label(new[name])
        if old[name].type != new[name].type or _source_types_differ(old[name], new[name]):
            changes.append({"change": "retyped", "column": name, "from": was, "to": now})
    return changes


def type_label(column: pa.Field) -> str:
    """A column's landing type, with the source's own type where the landing is text (e.g. 'string (number)')."""
    source_type = (column.metadata or {}).get(b"source_type")
    return f"{column.type} ({source_type.decode()})" if source_type else str(column.type)


def _source_types_differ(old: pa.Field, new: pa.Field) -> bool:
    """True when both landings know the source's value type, neither is mixed, and they differ."""
    types = [(f.metadata or {}).get(b"source_type") for f in (old, new)]
    return None not in types and b"mixed" not in types and types[0] != types[1]


def describe_changes(changes: list[dict], spec: SourceSpec) -> str:
    """Schema changes as one readable line, marking the columns the registry maps."""
    mapped = {m.source: m.target for m in spec.fields}
    labels = {"added": "新增列 added", "removed": "缺少列 removed", "retyped": "类型变化 retyped"}
    parts = []
    for change in changes:
        column = change["column"]
        text = f"{labels[change['change']]} {column}"
        if change["change"] == "retyped":
            text += f" {change['from']}→{change['to']}"
        if column in mapped:
            text += f"（已映射 mapped to {mapped[column]}）"
        parts.append(text)
    return "; ".join(parts)


def check_drift(spec: SourceSpec, changes: list[dict]) -> None:
    """Apply the source's on_schema_drift policy: warn (log) or fail (SourceError)."""
    policy = spec.options.get("on_schema_drift", "warn")
    if policy not in DRIFT_POLICIES:
        raise SourceError(f"数据源 {spec.id}: on_schema_drift 只能是 warn 或 fail must be warn or fail, not {policy!r}")
    if not changes:
        return
    described = describe_changes(changes, spec)
    if policy == "fail":
        raise SourceError(
            f"数据源 {spec.id}: 源结构变化 schema drift: {described}. 按登记策略停止采集 stopped by on_schema_drift: fail — "
            "核对后更新登记簿映射，或临时改为 warn 采集一次以接受新结构 update the registry mapping, or collect once with warn to accept it"
        )
    log.warning("数据源 %s: 源结构变化 schema drift: %s", spec.id, described)


def snapshot_baseline(engine: sa.Engine, source_id: str, run_id: str) -> tuple[Path | None, str | None]:
    """Keys file and run id of the latest recorded snapshot of a source (None, None: no snapshot yet)."""
    query = (
        sa.select(SourceRun.run_id, SourceRun.landing_path)
        .where(SourceRun.source_id == source_id, SourceRun.run_id != run_id, SourceRun.landing_path.is_not(None))
        .order_by(SourceRun.id.desc())
    )
    with engine.connect() as connection:
        runs = connection.execute(query).all()
    for earlier, path in runs:
        folder = Path(path).parent
        try:
            details = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8")).get("details") or {}
        except (OSError, ValueError) as error:
            # Starting afresh would miss every delete since then: stop and let a person restore the landing.
            raise SourceError(
                f"数据源 {source_id}: 上一快照的落地缺失 the landing of run {earlier} is missing or unreadable ({folder}); "
                "无法比对差异 the snapshot diff needs it — 请恢复该落地 restore it"
            ) from error
        snapshot = details.get("snapshot")
        if snapshot is None:
            return None, None  # collected before the source was in snapshot mode: this snapshot starts afresh
        if snapshot.get("sent"):
            keys = folder / snapshot["keys_file"]
            if not keys.exists():
                raise SourceError(f"数据源 {source_id}: 快照基线缺失 snapshot keys of run {earlier} are missing: {keys}; 请恢复该落地 restore it")
            return keys, earlier
    return None, None


def window_from_params(source_id: str, params: Mapping[str, Any]) -> tuple[str, str] | None:
    """The backfill window a DAG run was given (params/conf backfill_from and backfill_to), or None for a normal run."""
    bounds = [params.get(name) for name in ("backfill_from", "backfill_to")]
    given = [b for b in bounds if b not in (None, "")]
    if not given:
        return None
    if len(given) == 1:
        raise SourceError(f"数据源 {source_id}: 回补需要同时给出 backfill_from 和 backfill_to a backfill needs both bounds")
    return str(bounds[0]), str(bounds[1])


def backfill_window(spec: SourceSpec, window: tuple[Any, Any]) -> tuple[str, str]:
    """A checked backfill window (from, to] as text: the source can be backfilled, both bounds given, from < to."""
    if not spec.can_backfill:
        raise SourceError(
            f"数据源 {spec.id}: 不能按时间窗口回补 cannot be backfilled — 只有按增量键（replication_key）采集的 sql/http 数据源可以 "
            f"only incremental sql/http sources with a replication key can (this one is {spec.kind}, {spec.mode})"
        )
    try:
        low, high = (str(bound).strip() for bound in window)
    except (TypeError, ValueError) as error:
        raise SourceError(f"数据源 {spec.id}: 回补窗口应为 (起点, 终点) backfill window must be (from, to)") from error
    if not low or not high:
        raise SourceError(f"数据源 {spec.id}: 回补窗口起点和终点都不能为空 backfill_from and backfill_to must both be given")
    if not _before(low, high):
        raise SourceError(f"数据源 {spec.id}: 回补窗口起点须早于终点 backfill_from ({low}) must be before backfill_to ({high})")
    return low, high


def _before(low: str, high: str) -> bool:
    """low < high, compared as times, else as numbers, else as text."""
    for parse in (datetime.fromisoformat, Decimal):
        try:
            return parse(low) < parse(high)
        except (ValueError, TypeError, InvalidOperation):
            continue
    return low < high


def _same_request(spec: SourceSpec, run_id: str, landing: Landing, window: tuple[str, str] | None) -> None:
    """A rerun of a landed run id must ask for what was landed (the same window, or none)."""
    asked = None if window is None else {"from": window[0], "to": window[1]}
    landed = landing.details.get("backfill")
    if landed != asked:
        def described(bounds: dict | None) -> str:
            return "增量采集 incremental" if bounds is None else f"回补 backfill ({bounds['from']}, {bounds['to']}]"

        raise SourceError(
            f"数据源 {spec.id}: 运行 {run_id} 已作为{described(landed)}落地 already landed, "
            f"不能再作为{described(asked)}采集 cannot be collected again as another request; 请使用新的运行 use a new run"
        )


def extract(
    connector: Connector, spec: SourceSpec, engine: sa.Engine, landing_root: Path, run_id: str,
    window: tuple[str, str] | None = None,
) -> Landing:
    """Read the source into a new landing (since the last watermark, or over a backfill window), after checking its schema."""
    if window is not None:
        since, until = window
    else:
        since = last_watermark(engine, spec.id) if spec.replication_key and spec.mode == "incremental" else None
        until = None
    prepare = getattr(connector, "prepare", None)
    if prepare is not None:  # a connector whose schema depends on what it reads (HTTP) looks first
        prepare(since)
    schema = connector.arrow_schema()
    changes = schema_changes(previous_schema(engine, spec.id, run_id), schema)
    check_drift(spec, changes)
    batches = connector.read_batches(since=since) if until is None else connector.read_batches(since=since, until=until)
    connector_details = getattr(connector, "details", None)

    def details() -> dict:
        described = connector_details() if connector_details is not None else {}
        return described if window is None else described | {"backfill": {"from": since, "to": until}}

    return write_landing(
        landing_root,
        spec.id,
        run_id,
        schema,
        batches,
        # A backfill covered its window, whatever keys it found in it.
        watermark=(lambda: connector.watermark) if window is None else Watermark(low=since, high=until),
        schema_changes=changes,
        details=details,
        extras=getattr(connector, "write_extras", None),
    )


def extract_with_retries(
    connector: Connector, spec: SourceSpec, engine: sa.Engine, landing_root: Path, run_id: str,
    window: tuple[str, str] | None = None, retry: tuple[int, float] = (1, 0.0),
) -> Landing:
    """extract(), again after a retryable failure (retry = attempts, first backoff); a clear SourceError when they are spent."""
    attempts, backoff = retry
    for attempt in range(1, attempts + 1):
        try:
            landing = extract(connector, spec, engine, landing_root, run_id, window)
        except SourceError as error:
            if not getattr(error, "retryable", False):
                raise
            if attempt >= attempts:
                raise SourceError(
                    f"数据源 {spec.id}: 采集 {attempts} 次均失败 failed in all {attempts} attempts of this task try；未发布任何落地，"
                    f"水位未变 nothing was landed, the watermark did not move；任务按重试策略稍后再试，仍失败则运行失败 "
                    f"the task is retried by its retry policy and fails when those run out. 最后一次 last: {error}"
                ) from error
            delay = backoff * 2 ** (attempt - 1)
            log.warning("数据源 %s: 第 %d/%d 次采集失败 attempt failed, %.1f s 后重试 retrying: %s", spec.id, attempt, attempts, delay, error)
            close = getattr(connector, "close", None)
            if close is not None:  # temporary spools of the failed attempt (a snapshot diff's) go now, not at the end
                close()
            _sleep(delay)
        else:
            if attempt > 1:
                log.warning("数据源 %s: 第 %d 次采集成功 landed at attempt %d", spec.id, attempt, attempt)
            return landing
    raise AssertionError("unreachable: attempts >= 1")


def collect(source_id: str, run_id: str, window: tuple[Any, Any] | None = None) -> dict:
    """Extract a source into landing for a run (idempotent per run id); returns the landing metadata.

    window=(from, to) asks for a backfill of the replication-key range (from, to] instead of an incremental read.
    """
    settings = get_settings()
    spec = get_source(source_id)
    bounds = backfill_window(spec, window) if window is not None else None
    engine = engine_for(settings.database_url)
    started_at = datetime.now(timezone.utc)
    connector = connector_for(spec)
    retry = getattr(connector, "extract_retry", (1, 0.0))  # before a snapshot diff wraps the connector
    try:
        landing = read_landing(settings.landing_dir, spec.id, run_id)
        if landing is None:
            if spec.mode == "snapshot":
                baseline, baseline_run = snapshot_baseline(engine, spec.id, run_id)
                connector = SnapshotDiff(connector, baseline, settings.data_root / "tmp", baseline_run)
            landing = extract_with_retries(connector, spec, engine, settings.landing_dir, run_id, bounds, retry)
        else:
            _same_request(spec, run_id, landing, bounds)
        record_landing(engine, landing, started_at)
        fault_point("collect.before_commit")
        commit = getattr(connector, "commit", None)
        if commit is not None:  # after the run is recorded: a crash before this re-reads, never skips
            commit(landing)
    finally:
        close = getattr(connector, "close", None)
        if close is not None:
            close()
    return asdict(landing)
