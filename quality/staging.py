"""Staging: each landed run standardised once into Parquet, with the quality verdict of every row beside it.

staging/<source>/run=<run>/rows.parquet holds the standardised rows (standard data elements plus lineage);
verdict.parquet, written by the quality stage, holds each row's verdict (load, quarantine, merge) in the same
order. The load step reads both; cross-source rules read the rows of the anchor sources from here.
Writes go through a temporary file and a rename, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from connectors.landing import safe_run_id
from connectors.registry import get_source
from hub.faults import fault_point
from hub.models import SourceRun
from schemas.mapping import standardise

ROWS_FILE = "rows.parquet"
VERDICT_FILE = "verdict.parquet"
BATCH_ROWS = 100_000


def run_dir(staging_root: Path, source_id: str, run_id: str) -> Path:
    """The staging folder of one source run."""
    return staging_root / source_id / f"run={safe_run_id(run_id)}"


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary name to write the file under; renamed into place once the writing succeeded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    yield temporary
    fault_point("staging.before_replace")
    temporary.replace(path)


def _write_atomically(table: pa.Table, path: Path) -> None:
    """Write a Parquet file under a temporary name, then rename it into place."""
    with _replacing(path) as temporary:
        # row groups of BATCH_ROWS: a reader can then stream a run group by group (libraries.load.load_run)
        pq.write_table(table, temporary, compression="zstd", row_group_size=BATCH_ROWS)


def stage_run(staging_root: Path, run: SourceRun) -> Path:
    """Standardise a run's landing into staging (once: a staged run is returned as is)."""
    path = run_dir(staging_root, run.source_id, run.run_id) / ROWS_FILE
    if path.exists():
        return path
    spec = get_source(run.source_id)
    if not run.landing_path or not Path(run.landing_path).exists():
        raise FileNotFoundError(f"{run.source_id}/{run.run_id}: 落地文件不存在 landing file missing: {run.landing_path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".spool-", dir=path.parent) as spool:
        parts = _standardise_to_spool(Path(run.landing_path), spec, run.run_id, Path(spool))
        if parts:
            _write_parts_atomically(parts, path)
            return path
    # an empty landing (e.g. no new file) may not even carry the source's columns: standardise an empty batch
    empty = pq.read_schema(run.landing_path).empty_table()
    for name in spec.primary_key:
        if name not in empty.column_names:
            empty = empty.append_column(name, pa.array([], pa.string()))
    table = standardise(empty, spec, run.run_id)
    _write_atomically(table, path)
    return path


def read_rows(path: Path, columns: Collection[str] | None = None) -> pa.Table:
    """The staged rows of one run: every column, or only those of `columns` the run has (and `_source_key`)."""
    if columns is None:
        return pq.read_table(path)
    wanted = set(columns) | {"_source_key"}
    return pq.read_table(path, columns=[name for name in pq.read_schema(path).names if name in wanted])


class StagedRows:
    """A staged run as the rules read it: each column read from the file on first use and kept, so a quality stage
    holds the columns its rules read, not every column of the run (a licence's face content, an address never
    checked). Offers what a Frame reads of a table: num_rows, column_names, schema, column() and slice(); take()
    gives whole rows for the few a stage quarantines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        metadata = pq.read_metadata(path)
        self.schema = metadata.schema.to_arrow_schema()
        self.num_rows = metadata.num_rows
        self.column_names = self.schema.names
        self._columns: dict[str, pa.ChunkedArray] = {}
        self._group_starts = np.cumsum([0] + [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)])

    def column(self, name: str) -> pa.ChunkedArray:
        """One column of the run (read once)."""
        if name not in self._columns:
            if name not in self.column_names:
                raise KeyError(f"{self.path}: 无此列 no column {name!r}")
            self._columns[name] = pq.read_table(self.path, columns=[name]).column(0)
        return self._columns[name]

    def column_range(self, name: str, offset: int, length: int) -> pa.ChunkedArray:
        """Rows [offset, offset + length) of one column: from memory if the column was read whole, else only the row
        groups that hold them (a block of the row-by-row rules then holds its own rows, not the run's column)."""
        if name in self._columns or not length:
            return self.column(name).slice(offset, length)
        if name not in self.column_names:
            raise KeyError(f"{self.path}: 无此列 no column {name!r}")
        first, last = (int(g) for g in np.searchsorted(self._group_starts, [offset, offset + length - 1], side="right") - 1)
        part = pq.ParquetFile(self.path).read_row_groups(range(first, last + 1), columns=[name]).column(0)
        return part.slice(offset - int(self._group_starts[first]), length)

    def slice(self, offset: int, length: int) -> "_RowRange":
        """Consecutive rows of the run, reading through this run's columns."""
        return _RowRange(self, offset, max(0, min(length, self.num_rows - offset)))

    def take(self, rows: np.ndarray) -> pa.Table:
        """Every column at these rows (increasing): a column the rules read is taken from memory, any other from
        the file one row group at a time, so the unread columns never come into memory whole."""
        rows = np.asarray(rows, dtype=np.int64)
        file = pq.ParquetFile(self.path)
        groups = [file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)]
        columns = []
        for name in self.column_names:
            if name in self._columns:
                columns.append(_take_chunked(self._columns[name], rows))
                continue
            pieces = [chunk for group, at in _rows_by_piece(rows, groups)
                      for chunk in file.read_row_group(group, columns=[name]).column(0).take(pa.array(at)).chunks]
            columns.append(pa.chunked_array(pieces, self.schema.field(name).type))
        return pa.Table.from_arrays(columns, schema=self.schema)


class _RowRange:
    """Rows [offset, offset + num_rows) of a StagedRows, as a Frame reads them (a block of the row-by-row rules)."""

    def __init__(self, rows: StagedRows, offset: int, num_rows: int) -> None:
        self._rows, self._offset, self.num_rows = rows, offset, num_rows
        self.schema, self.column_names = rows.schema, rows.column_names

    def column(self, name: str) -> pa.ChunkedArray:
        """One column over these rows (read from the run's file unless the run holds the column whole)."""
        return self._rows.column_range(name, self._offset, self.num_rows)

    def slice(self, offset: int, length: int) -> "_RowRange":
        """Rows of this range, as a range of the run."""
        return _RowRange(self._rows, self._offset + offset, max(0, min(length, self.num_rows - offset)))


def rows_with_keys(path: Path, keys: Collection[str]) -> pa.Table:
    """The staged rows of one run whose `_source_key` is one of `keys`, read row group by row group (a run's few
    rows to link or re-merge without holding the whole run)."""
    wanted = pa.array(list(keys), pa.string())
    file = pq.ParquetFile(path)
    parts = [batch.filter(pc.is_in(batch.column("_source_key"), value_set=wanted))
             for batch in file.iter_batches(batch_size=BATCH_ROWS)]
    return pa.Table.from_batches(parts, schema=file.schema_arrow)


def _standardise_to_spool(landing: Path, spec: Any, run_id: str, spool: Path) -> list[Path]:
    """Each landed batch standardised and spooled to a file of its own, so a run is never held whole."""
    parts = []
    for n, batch in enumerate(pq.ParquetFile(landing).iter_batches(batch_size=BATCH_ROWS)):
        parts.append(spool / f"{n:06d}.parquet")
        pq.write_table(standardise(batch, spec, run_id), parts[-1], compression="lz4")
    return parts


def _write_parts_atomically(parts: list[Path], path: Path) -> None:
    """The spooled batches as one file of row groups, in one schema (a column all null in one batch and text in
    another is text: Arrow's permissive promotion, as concatenating the batches would give)."""
    schema = pa.unify_schemas([pq.read_schema(part) for part in parts], promote_options="permissive")
    with _replacing(path) as temporary, pq.ParquetWriter(temporary, schema, compression="zstd") as writer:
        for part in parts:
            table = pq.read_table(part)
            writer.write_table(pa.table([_as_type(table, field) for field in schema], schema=schema), row_group_size=BATCH_ROWS)


def _as_type(table: pa.Table, field: pa.Field) -> pa.ChunkedArray:
    """A column of the table in the field's type (all nulls where the table lacks it)."""
    if field.name not in table.column_names:
        return pa.chunked_array([pa.nulls(table.num_rows, field.type)], field.type)
    return table.column(field.name).cast(field.type)


def iter_rows(path: Path, batch_rows: int) -> Iterator[pa.Table]:
    """The staged rows of one run in consecutive tables of at most batch_rows rows, read row group by row group."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
        yield pa.Table.from_batches([batch])


def take_rows(table: pa.Table | StagedRows, rows: np.ndarray) -> pa.Table:
    """table.take(rows) for rows in increasing order, chunk by chunk: Arrow's take first joins a chunked column into
    one array, which for a staged run (a chunk per row group) copies every column whole."""
    if isinstance(table, StagedRows):
        return table.take(rows)
    rows = np.asarray(rows, dtype=np.int64)
    return pa.Table.from_arrays([_take_chunked(column, rows) for column in table.columns], schema=table.schema)


def _take_chunked(column: pa.ChunkedArray, rows: np.ndarray) -> pa.ChunkedArray:
    """column.take(rows) for rows in increasing order, each chunk taken on its own."""
    pieces = [column.chunk(n).take(pa.array(at)) for n, at in _rows_by_piece(rows, [len(c) for c in column.chunks])]
    return pa.chunked_array(pieces, column.type)


def _rows_by_piece(rows: np.ndarray, lengths: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """For consecutive pieces of these lengths (chunks, row groups), each piece that holds some of the rows
    (increasing): its index and those rows counted from the piece's start."""
    start = 0
    for index, length in enumerate(lengths):
        low, high = np.searchsorted(rows, [start, start + length])
        if high > low:
            yield index, rows[low:high] - start
        start += length


def write_verdict(path: Path, verdict: np.ndarray, source_keys: pa.Array | np.ndarray) -> Path:
    """Store each row's verdict next to its staged rows."""
    target = path.with_name(VERDICT_FILE)
    keys = source_keys if isinstance(source_keys, pa.Array) else pa.array(source_keys, pa.string())
    _write_atomically(pa.table({"_source_key": keys, "_verdict": pa.array(verdict, pa.int8())}), target)
    return target


def read_verdict(path: Path) -> np.ndarray:
    """Verdicts of a staged run (same order as its rows)."""
    return np.asarray(pq.read_table(path.with_name(VERDICT_FILE)).column("_verdict").to_numpy())


def landed_runs(engine: sa.Engine, source_id: str) -> list[SourceRun]:
    """Every published run of a source that has a landing, oldest first."""
    query = (sa.select(SourceRun).where(SourceRun.source_id == source_id, SourceRun.landing_path.is_not(None))
             .order_by(SourceRun.id))
    with sa.orm.Session(engine) as session:
        return list(session.scalars(query))


def current_rows(engine: sa.Engine, staging_root: Path, source_id: str,
                 columns: Collection[str] | None = None) -> pa.Table | None:
    """The source as the hub knows it: every staged run, the latest version of each record (None if never landed);
    columns: only these (and `_source_key`), which is what keeps the references small at province scale."""
    parts = []
    for run in landed_runs(engine, source_id):
        if run.rows_extracted == 0:
            continue
        parts.append(read_rows(stage_run(staging_root, run), columns))
    if not parts:
        return None
    table = pa.concat_tables(parts, promote_options="permissive")
    if len(parts) == 1:
        return table
    keys = np.asarray(pc.fill_null(table.column("_source_key"), "").to_numpy(zero_copy_only=False)).astype(str)
    reversed_keys = keys[::-1]
    _, last_from_end = np.unique(reversed_keys, return_index=True)  # first hit from the end = latest version
    latest = np.sort(len(keys) - 1 - last_from_end)
    return table.take(pa.array(latest))
