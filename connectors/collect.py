"""Collect one source for one run: read it through its connector into an immutable landing, then record the run.

The watermark of the run is committed (in the hub database's source_run table) only after the landing is
published, so a crash between the two re-extracts the same range instead of skipping it. File fingerprints
are committed (connector.commit) after the run is recorded, for the same reason.

Schema drift: before extracting, the connector's schema is compared with the previous landing that had rows
(columns added, removed or retyped). The changes are kept in the landing's metadata (schema_changes); the
registry's `on_schema_drift` (warn | fail, default warn) says whether they only warn or stop the collection.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from connectors.base import Connector, SourceError
from connectors.connections import env_var_name, sqlalchemy_url
from connectors.files import file_connector
from connectors.http import http_connector
from connectors.landing import Landing, read_landing, write_landing
from connectors.registry import SourceSpec, get_source
from connectors.sql import SqlConnector
from hub.db import engine_for
from hub.models import SourceRun
from hub.settings import get_settings

log = logging.getLogger(__name__)

DRIFT_POLICIES = ("warn", "fail")


def connector_for(spec: SourceSpec) -> Connector:
    """The connector of a registered source."""
    if spec.kind == "sql":
        return SqlConnector(spec.id, sqlalchemy_url(spec.connection), spec.table or spec.id, spec.primary_key, spec.replication_key)
    if spec.kind == "file":
        return file_connector(spec, connection_fields(spec.id, spec.connection), get_settings().data_root)
    if spec.kind == "http":
        return http_connector(spec, connection_fields(spec.id, spec.connection))
    raise SourceError(f"数据源 {spec.id}: 类型 {spec.kind} 的连接器尚未实现 connector kind not available yet")


def connection_fields(source_id: str, conn_id: str) -> dict[str, Any]:
    """Every field of an Airflow connection, extra included (fs connections keep their folder in extra.path)."""
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
        return {"conn_type": conn.conn_type, "host": conn.host, "port": conn.port, "login": conn.login,
                "password": conn.password, "schema": conn.schema, "extra": conn.extra_dejson}
    except Exception as error:  # outside a task Airflow may have no supervisor: fall back to the variable
        raw = os.environ.get(env_var_name(conn_id))
        if raw is None:
            raise SourceError(f"数据源 {source_id}: 未配置连接 connection '{conn_id}' is not defined ({env_var_name(conn_id)})") from error
        try:
            fields = json.loads(raw)
            extra = fields.get("extra") or {}
            fields["extra"] = json.loads(extra) if isinstance(extra, str) else dict(extra)
        except (ValueError, TypeError, AttributeError) as parse_error:
            # The value may hold a password: name the variable, never echo it.
            raise SourceError(f"数据源 {source_id}: 连接 {env_var_name(conn_id)} 不是 JSON 形式 is not a JSON connection") from parse_error
        return fields


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
    """Record a published landing as a source_run row (once per source and run id)."""
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
                watermark_from=landing.watermark_low,
                watermark_to=landing.watermark_high,
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


def extract(connector: Connector, spec: SourceSpec, engine: sa.Engine, landing_root: Path, run_id: str) -> Landing:
    """Read the source into a new landing, after checking its schema against the previous landing."""
    since = last_watermark(engine, spec.id) if spec.replication_key else None
    prepare = getattr(connector, "prepare", None)
    if prepare is not None:  # a connector whose schema depends on what it reads (HTTP) looks first
        prepare(since)
    schema = connector.arrow_schema()
    changes = schema_changes(previous_schema(engine, spec.id, run_id), schema)
    check_drift(spec, changes)
    details = getattr(connector, "details", None)
    return write_landing(
        landing_root,
        spec.id,
        run_id,
        schema,
        connector.read_batches(since=since),
        watermark=lambda: connector.watermark,
        schema_changes=changes,
        details=details,
    )


def collect(source_id: str, run_id: str) -> dict:
    """Extract a source into landing for a run (idempotent per run id); returns the landing metadata."""
    settings = get_settings()
    spec = get_source(source_id)
    engine = engine_for(settings.database_url)
    started_at = datetime.now(timezone.utc)
    connector = connector_for(spec)
    try:
        landing = read_landing(settings.landing_dir, spec.id, run_id)
        if landing is None:
            landing = extract(connector, spec, engine, settings.landing_dir, run_id)
        record_landing(engine, landing, started_at)
        commit = getattr(connector, "commit", None)
        if commit is not None:  # after the run is recorded: a crash before this re-reads, never skips
            commit(landing)
    finally:
        close = getattr(connector, "close", None)
        if close is not None:
            close()
    return asdict(landing)
