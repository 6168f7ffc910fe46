"""Collect one source for one run: read it through its connector into an immutable landing, then record the run.

The watermark of the run is committed (in the hub database's source_run table) only after the landing is
published, so a crash between the two re-extracts the same range instead of skipping it.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone

import sqlalchemy as sa

from connectors.base import Connector, SourceError
from connectors.connections import sqlalchemy_url
from connectors.landing import Landing, read_landing, write_landing
from connectors.registry import SourceSpec, get_source
from connectors.sql import SqlConnector
from hub.db import engine_for
from hub.models import SourceRun
from hub.settings import get_settings


def connector_for(spec: SourceSpec) -> Connector:
    """The connector of a registered source."""
    if spec.kind == "sql":
        return SqlConnector(spec.id, sqlalchemy_url(spec.connection), spec.table or spec.id, spec.primary_key, spec.replication_key)
    raise SourceError(f"数据源 {spec.id}: 类型 {spec.kind} 的连接器尚未实现 connector kind not available yet")


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


def collect(source_id: str, run_id: str) -> dict:
    """Extract a source into landing for a run (idempotent per run id); returns the landing metadata."""
    settings = get_settings()
    spec = get_source(source_id)
    engine = engine_for(settings.database_url)
    started_at = datetime.now(timezone.utc)
    landing = read_landing(settings.landing_dir, spec.id, run_id)
    if landing is None:
        connector = connector_for(spec)
        since = last_watermark(engine, spec.id) if spec.replication_key else None
        landing = write_landing(
            settings.landing_dir,
            spec.id,
            run_id,
            connector.arrow_schema(),
            connector.read_batches(since=since),
            watermark=lambda: connector.watermark,
        )
    record_landing(engine, landing, started_at)
    return asdict(landing)
