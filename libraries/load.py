"""Load landed runs into the base libraries: standardise, set aside rows without a usable key, upsert the rest.

This is the first, simple path (one current row per key, last write wins). Survivorship across sources,
history, lineage per field and the full quality stage come in front of it later; the bookkeeping
(source_run status, counts, a quarantine file for every row not loaded) is already the final one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from connectors.landing import safe_run_id
from connectors.registry import get_source, sources_for
from hub.db import engine_for
from hub.models import SourceRun
from hub.settings import get_settings
from libraries import rows as library_rows

BATCH_ROWS = 50_000


def pending_runs(engine: sa.Engine, library: str) -> list[SourceRun]:
    """Landed runs of the library's sources not loaded yet, oldest first."""
    source_ids = [spec.id for spec in sources_for(library, merged_only=True)]
    query = sa.select(SourceRun).where(SourceRun.source_id.in_(source_ids), SourceRun.status == "landed").order_by(SourceRun.id)
    with sa.orm.Session(engine) as session:
        return list(session.scalars(query))


def load_pending(library: str) -> dict:
    """Load every pending run of a library; returns {source_id/run_id: counts}."""
    engine = engine_for(get_settings().database_url)
    results = {}
    for run in pending_runs(engine, library):
        results[f"{run.source_id}/{run.run_id}"] = load_run(engine, run)
    return results


def load_run(engine: sa.Engine, run: SourceRun) -> dict:
    """Load one landed run; marks it loaded with its counts. Rerunning a loaded run is a no-op."""
    spec = get_source(run.source_id)
    builder = library_rows.BUILDERS[spec.library]
    loaded = rejected = 0
    quarantine = QuarantineWriter(get_settings().quarantine_dir, run.source_id, run.run_id)
    learnt_at = run.finished_at  # when the landing was extracted: reruns stamp the same time
    for batch in _landing_batches(Path(run.landing_path)):
        good, bad = builder.split(batch, spec, run.run_id, learnt_at)
        if bad.num_rows:
            quarantine.write(bad)
        if good:
            builder.upsert(engine, good)
        loaded += len(good)
        rejected += bad.num_rows
    quarantine.close()
    if loaded + rejected != run.rows_extracted:
        raise RuntimeError(
            f"{run.source_id}/{run.run_id}: 行数不守恒 rows not conserved: "
            f"extracted {run.rows_extracted} != loaded {loaded} + rejected {rejected}"
        )
    with engine.begin() as connection:
        connection.execute(
            sa.update(SourceRun)
            .where(SourceRun.id == run.id)
            .values(status="loaded", rows_loaded=loaded, rows_rejected=rejected, finished_at=datetime.now(timezone.utc))
        )
    return {"rows": run.rows_extracted, "loaded": loaded, "rejected": rejected}


def _landing_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The landed Parquet file in batches (memory stays flat whatever its size)."""
    yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS)


class QuarantineWriter:
    """Rows set aside during a load, with their reasons, in quarantine/<source>/run=<run>/rows.parquet."""

    def __init__(self, root: Path, source_id: str, run_id: str) -> None:
        self.path = root / source_id / f"run={safe_run_id(run_id)}" / "rows.parquet"
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        """Append rows (the file is created on the first write; a rerun replaces it)."""
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self._writer.write_table(table.cast(self._writer.schema))

    def close(self) -> None:
        """Finish the file."""
        if self._writer is not None:
            self._writer.close()

