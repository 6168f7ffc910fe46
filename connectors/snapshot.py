"""Snapshot and diff: a source without a replication key sends everything each time; only the changes land.

Every run reads the source's complete snapshot (a SQL table without a replication key, an API without
one, or the new files of a file drop whose registry entry says `mode: snapshot`: a department re-sending
its complete list) and compares it with the previous snapshot by primary key:

- each row gets a 64-bit hash (SipHash, through pandas' hash_array) of its canonical text: its non-null
  (column, value) pairs in column-name order, joined with the ASCII unit/record separators. Hub lineage
  columns (`_file`, `_row`, `_page`, `_error`, `_raw`) are left out, so the same content re-sent in another
  file is unchanged; nulls are left out, so a column the source adds (empty for existing rows) does not turn
  every row into an update. Hashes are computed per batch, vectorised;
- a snapshot's keys and hashes (and nothing else) are kept beside its landing as `snapshot_keys.parquet`;
  collect() takes the latest recorded one as the baseline, so the baseline moves exactly when a run is recorded;
- the landing holds only the changes, with `_change`: `insert` (a new key), `update` (a known key whose hash
  differs), `delete` (a key that is gone: a tombstone row with the key, `_change = delete` and every other
  column null). A first snapshot is all inserts.

Memory: the snapshot's rows are spooled to a temporary Parquet file while they are hashed; only keys,
hashes and row positions stay in memory, joined with Arrow's hash join; then the spool is re-read batch by
batch and the changed rows are taken from it.

Rows with an incomplete key (a null key column) cannot be followed from one snapshot to the next: they land
as inserts every time they are sent (counted as unkeyed_rows), never dropped. A key sent twice in one
snapshot keeps its last row (counted as duplicate_keys). A file-drop run that brings no new file has no
new snapshot: nothing lands and the baseline stays; a new file with a header and no rows is an empty list.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.base import Connector, SourceError, Watermark, rebatch
from connectors.landing import Landing

CHANGE = "_change"
HASH = "_hash"
POSITION = "_n"
KEYS_FILE = "snapshot_keys.parquet"
LINEAGE_COLUMNS = frozenset({"_file", "_row", "_page", "_error", "_raw", CHANGE})
HASH_KEY = "hub-snapshot-v1!"  # SipHash key (16 characters); changing it makes the next run update every row
UNIT, RECORD = "\x1f", "\x1e"


def row_hashes(batch: pa.RecordBatch | pa.Table, columns: list[str]) -> np.ndarray:
    """A uint64 hash per row of the canonical text of its non-null (column, value) pairs, in column-name order."""
    from pandas.util import hash_array  # pandas only where snapshots are diffed

    pairs = []
    for name in sorted(columns):
        values = batch.column(name)
        text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
        pairs.append(pc.binary_join_element_wise(pa.scalar(name), text, UNIT))  # null value → null pair, skipped below
    if not pairs:
        return np.zeros(batch.num_rows, dtype=np.uint64)
    canonical = pc.binary_join_element_wise(*pairs, RECORD, null_handling="skip")
    return hash_array(canonical.to_numpy(zero_copy_only=False), hash_key=HASH_KEY, categorize=False)


def read_keys(path: Path, source_id: str) -> pa.Table:
    """A snapshot's keys and hashes."""
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise SourceError(f"数据源 {source_id}: 快照基线无法读取 snapshot baseline unreadable: {path} ({type(error).__name__})") from error


class SnapshotDiff:
    """Wraps a connector that reads a complete snapshot; yields only the rows that changed since the baseline."""

    def __init__(self, inner: Connector, baseline: Path | None, work_dir: Path, baseline_run: str | None = None) -> None:
        self.inner = inner
        self.source_id = inner.source_id
        self.primary_key = tuple(inner.primary_key)
        self.replication_key = None
        self.baseline = baseline
        self.baseline_run = baseline_run
        self.work_dir = work_dir
        self.watermark = Watermark()
        self._keys: pa.Table | None = None  # the new snapshot's keys and hashes, once read
        self._spool_dir: Path | None = None
        self._summary: dict[str, Any] = {"sent": False}

    def prepare(self, since: Any | None = None) -> None:
        """Let the inner connector look first if it needs to (HTTP learns its columns from a first page)."""
        prepare = getattr(self.inner, "prepare", None)
        if prepare is not None:
            prepare(None)

    def arrow_schema(self) -> pa.Schema:
        """The inner connector's schema plus `_change`."""
        return self.inner.arrow_schema().append(pa.field(CHANGE, pa.string()))

    def read_batches(self, since: Any | None = None, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Read the whole snapshot, diff it with the baseline, yield inserts and updates, then tombstones."""
        schema = self.arrow_schema()
        source_schema = self.inner.arrow_schema()
        if not self._snapshot_sent():  # nothing new was sent: nothing lands, the baseline stays
            self._summary = {"sent": False}
            return
        keys = list(self.primary_key)
        missing = [k for k in keys if k not in source_schema.names]
        if missing:
            raise SourceError(f"数据源 {self.source_id}: 快照缺少主键列 snapshot has no key column {missing}; 快照比对需要主键 a snapshot diff needs the primary key")
        hashed = [name for name in source_schema.names if name not in LINEAGE_COLUMNS]
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._spool_dir = Path(tempfile.mkdtemp(prefix=f"{self.source_id}-snapshot-", dir=self.work_dir))
        spool = self._spool_dir / "snapshot.parquet"
        current, rows = self._spool(spool, source_schema, keys, hashed, batch_rows)
        unkeyed = _unkeyed(current, keys)
        current = current.filter(pc.invert(unkeyed)) if unkeyed is not None else current
        current, duplicates = _last_per_key(current, keys)
        previous = self._previous(current.schema, keys)
        positions, kinds, deletes, counts = _classify(current, previous, keys)
        if unkeyed is not None:  # the key table is in snapshot order, so a row's index is its position
            keyless = np.flatnonzero(unkeyed.to_numpy(zero_copy_only=False)).astype(np.int64)
            positions, kinds = _merge(positions, kinds, keyless)
        self._keys = current.select(keys + [HASH])
        self._summary = {
            "sent": True, "rows": rows, "inserts": counts["insert"], "updates": counts["update"], "deletes": deletes.num_rows,
            "unchanged": counts["unchanged"], "unkeyed_rows": 0 if unkeyed is None else int(pc.sum(unkeyed).as_py() or 0),
            "duplicate_keys": duplicates, "keys_file": KEYS_FILE, "baseline_run": self.baseline_run,
        }
        changed = _changed_rows(spool, schema, positions, kinds, batch_rows)
        yield from rebatch(itertools.chain(changed, _tombstones(deletes, schema, batch_rows)), batch_rows)
        self.watermark = Watermark()

    def _spool(self, spool: Path, schema: pa.Schema, keys: list[str], hashed: list[str], batch_rows: int) -> tuple[pa.Table, int]:
        """Write the snapshot to the spool; return its keys, hashes and positions, and its row count."""
        pieces, position = [], 0
        with pq.ParquetWriter(spool, schema, compression="lz4") as writer:
            for batch in self.inner.read_batches(since=None, batch_rows=batch_rows):
                writer.write_batch(batch)
                columns = [batch.column(k) for k in keys]
                columns += [pa.array(row_hashes(batch, hashed), pa.uint64()),
                            pa.array(np.arange(position, position + batch.num_rows, dtype=np.int64))]
                pieces.append(pa.table(columns, names=keys + [HASH, POSITION]))
                position += batch.num_rows
        key_schema = pa.schema([schema.field(k) for k in keys] + [pa.field(HASH, pa.uint64()), pa.field(POSITION, pa.int64())])
        return (pa.concat_tables(pieces) if pieces else key_schema.empty_table()), position

    def _snapshot_sent(self) -> bool:
        """False when the source sent no new snapshot (a file drop without new files), True otherwise."""
        sent = getattr(self.inner, "snapshot_sent", None)
        return True if sent is None else bool(sent())

    def _previous(self, current: pa.Schema, keys: list[str]) -> pa.Table:
        """The baseline's keys and hashes, with key types as the current snapshot has them (empty without one)."""
        target = pa.schema([current.field(k) for k in keys] + [pa.field(HASH, pa.uint64())])
        if self.baseline is None:
            return target.empty_table()
        previous = read_keys(self.baseline, self.source_id)
        absent = [k for k in keys if k not in previous.column_names]
        if absent:
            raise SourceError(f"数据源 {self.source_id}: 主键变化 primary key changed since the baseline (missing {absent}); "
                              "请核对登记簿 check the registry")
        try:
            return previous.select(target.names).cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise SourceError(f"数据源 {self.source_id}: 主键类型变化 key columns retyped since the baseline: {error}") from error

    def details(self) -> dict[str, Any]:
        """The inner connector's details plus the diff's counts."""
        inner = getattr(self.inner, "details", None)
        return (inner() if inner is not None else {}) | {"snapshot": dict(self._summary)}

    def write_extras(self, folder: Path) -> None:
        """Keep this snapshot's keys and hashes in the landing folder (the next run's baseline)."""
        if self._keys is not None:
            pq.write_table(self._keys, folder / KEYS_FILE, compression="zstd")

    def commit(self, landing: Landing) -> None:
        """Pass the commit on (file drops record their fingerprints)."""
        commit = getattr(self.inner, "commit", None)
        if commit is not None:
            commit(landing)

    def close(self) -> None:
        """Remove the spool and close the inner connector (idempotent)."""
        if self._spool_dir is not None:
            shutil.rmtree(self._spool_dir, ignore_errors=True)
            self._spool_dir = None
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


def _unkeyed(keys_table: pa.Table, keys: list[str]) -> pa.ChunkedArray | None:
    """A mask of rows with a null key column (None when there are none)."""
    mask = None
    for key in keys:
        null = pc.is_null(keys_table.column(key))
        mask = null if mask is None else pc.or_(mask, null)
    if mask is None or not pc.any(mask).as_py():
        return None
    return mask


def _last_per_key(current: pa.Table, keys: list[str]) -> tuple[pa.Table, int]:
    """The snapshot's keys with one row per key (the last one sent), and how many rows were dropped as repeats."""
    if current.num_rows == 0:
        return current, 0
    last = current.group_by(keys, use_threads=False).aggregate([(POSITION, "max")])
    if last.num_rows == current.num_rows:
        return current, 0
    kept = current.filter(pc.is_in(current.column(POSITION), value_set=last.column(f"{POSITION}_max")))
    return kept, current.num_rows - kept.num_rows


def _classify(current: pa.Table, previous: pa.Table, keys: list[str]) -> tuple[np.ndarray, np.ndarray, pa.Table, dict[str, int]]:
    """Positions of inserted and updated rows (sorted) with their kind, the deleted keys, and the counts."""
    before = previous.rename_columns(keys + ["_previous"])
    joined = current.join(before, keys=keys, join_type="left outer", use_threads=False)
    previous_hash = joined.column("_previous")
    inserted = pc.is_null(previous_hash)
    updated = pc.fill_null(pc.not_equal(previous_hash, joined.column(HASH)), False)  # null (no previous) is an insert
    changed = pc.or_(inserted, updated)
    positions = joined.column(POSITION).filter(changed).to_numpy()
    kinds = np.where(inserted.filter(changed).to_numpy(zero_copy_only=False), "insert", "update")
    order = np.argsort(positions, kind="stable")
    deletes = previous.join(current.select(keys), keys=keys, join_type="left anti", use_threads=False).select(keys)
    counts = {"insert": int(pc.sum(inserted).as_py() or 0), "update": int(pc.sum(updated).as_py() or 0)}
    counts["unchanged"] = current.num_rows - counts["insert"] - counts["update"]
    return positions[order], kinds[order], deletes, counts


def _merge(positions: np.ndarray, kinds: np.ndarray, inserts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add rows that land as inserts to the sorted positions."""
    merged = np.concatenate([positions, inserts])
    labels = np.concatenate([kinds, np.full(len(inserts), "insert")])
    order = np.argsort(merged, kind="stable")
    return merged[order], labels[order]


def _changed_rows(spool: Path, schema: pa.Schema, positions: np.ndarray, kinds: np.ndarray, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Re-read the spool batch by batch and take the rows at the given (sorted) positions, with their `_change`."""
    if not len(positions):
        return
    offset = 0
    for batch in pq.ParquetFile(spool).iter_batches(batch_size=batch_rows):
        low, high = np.searchsorted(positions, [offset, offset + batch.num_rows])
        if high > low:
            rows = batch.take(pa.array(positions[low:high] - offset))
            yield pa.RecordBatch.from_arrays(list(rows.columns) + [pa.array(kinds[low:high], pa.string())], schema=schema)
        offset += batch.num_rows


def _tombstones(deletes: pa.Table, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Deleted keys as rows: the key, `_change = delete`, every other column null."""
    for start in range(0, deletes.num_rows, batch_rows):
        part = deletes.slice(start, batch_rows)
        arrays = []
        for field in schema:
            if field.name == CHANGE:
                arrays.append(pa.array(["delete"] * part.num_rows, pa.string()))
            elif field.name in part.column_names:
                arrays.append(part.column(field.name).combine_chunks().cast(field.type))
            else:
                arrays.append(pa.nulls(part.num_rows, field.type))
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)
