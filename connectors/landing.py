"""Landing: one immutable Parquet extract per source per run, with its extraction metadata.

A landing is written into a hidden temporary folder and renamed into place only when complete, so a
crash never leaves a partial landing that looks finished, and a rerun of the same run id finds the
finished landing and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from connectors.base import Watermark
from hub.faults import fault_point

DATA_FILE = "data.parquet"
METADATA_FILE = "_landing.json"


@dataclass(frozen=True)
class Landing:
    """Metadata of a finished landing (also stored as _landing.json beside the data)."""

    source_id: str
    run_id: str
    path: str
    rows: int
    sha256: str
    extracted_at: str
    watermark_low: str | None
    watermark_high: str | None
    columns: list[str]
    # Differences from the previous landing's columns (added / removed / retyped), see connectors.collect.
    schema_changes: list[dict] = field(default_factory=list)
    # What the connector wants the record to say about the extract (files and encodings, pages, rejections).
    details: dict = field(default_factory=dict)


def safe_run_id(run_id: str) -> str:
    """A run id usable as a folder name (Airflow run ids contain ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)


def landing_dir(root: Path, source_id: str, run_id: str) -> Path:
    """Folder of one source's landing for one run."""
    return root / source_id / f"run={safe_run_id(run_id)}"


def read_landing(root: Path, source_id: str, run_id: str) -> Landing | None:
    """The finished landing of this run, or None if there is none."""
    metadata = landing_dir(root, source_id, run_id) / METADATA_FILE
    if not metadata.exists():
        return None
    return Landing(**json.loads(metadata.read_text(encoding="utf-8")))


def write_landing(
    root: Path,
    source_id: str,
    run_id: str,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    watermark: Watermark | Callable[[], Watermark] | None = None,
    extracted_at: datetime | None = None,
    schema_changes: list[dict] | None = None,
    details: dict | Callable[[], dict] | None = None,
    extras: Callable[[Path], None] | None = None,
) -> Landing:
    """Stream batches into the run's Parquet file and publish it atomically; a finished landing is returned as is.

    `extras(folder)`, if given, writes further files into the landing folder before it is published (a snapshot's
    keys and hashes), so they appear together with the data or not at all.
    """
    existing = read_landing(root, source_id, run_id)
    if existing is not None:
        return existing
    final = landing_dir(root, source_id, run_id)
    staging = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        rows = 0
        with pq.ParquetWriter(staging / DATA_FILE, schema, compression="zstd") as writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
                fault_point("landing.batch")
        extracted = (extracted_at or datetime.now(timezone.utc)).isoformat()
        # A callable is asked only after the batches are consumed: the high mark is known only then.
        watermark = (watermark() if callable(watermark) else watermark) or Watermark()
        if extras is not None:
            extras(staging)
        landing = Landing(
            source_id=source_id,
            run_id=run_id,
            path=str(final / DATA_FILE),
            rows=rows,
            sha256=file_sha256(staging / DATA_FILE),
            extracted_at=extracted,
            watermark_low=watermark.low,
            watermark_high=watermark.high,
            columns=list(schema.names),
            schema_changes=list(schema_changes or []),
            details=(details() if callable(details) else details) or {},
        )
        (staging / METADATA_FILE).write_text(json.dumps(asdict(landing), ensure_ascii=False, indent=2), encoding="utf-8")
        fault_point("landing.before_rename")
        staging.rename(final)
        fault_point("landing.after_rename")  # published but not recorded: a rerun must record it, not land it again
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return landing


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
