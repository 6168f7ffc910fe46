"""The load streams a run's staged rows group by group, and merges exactly the batches the whole run would give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from libraries import load
from quality.engine import LOAD, MERGE, QUARANTINE
from quality.staging import iter_rows


def _staged(folder: Path, rows: int, group_rows: int) -> Path:
    path = folder / f"rows-{rows}-{group_rows}.parquet"
    table = pa.table({"_source_key": pa.array([str(i) for i in range(rows)], pa.string()),
                      "value": pa.array(np.arange(rows) * 3, pa.int64())})
    pq.write_table(table, path, row_group_size=group_rows)
    return path


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(0, 120), group_rows=st.integers(1, 40), batch_rows=st.integers(1, 50), seed=st.integers(0, 2**16))
def test_streamed_batches_equal_the_whole_runs(tmp_path_factory, rows, group_rows, batch_rows, seed) -> None:
    path = _staged(tmp_path_factory.getbasetemp(), rows, group_rows)
    verdict = np.random.default_rng(seed).choice([LOAD, LOAD, LOAD, QUARANTINE, MERGE], size=rows).astype(np.int8)
    whole = pq.read_table(path).filter(pa.array(verdict == LOAD))
    expected = [whole.slice(start, batch_rows).to_pylist() for start in range(0, whole.num_rows, batch_rows)]
    original = load.BATCH_ROWS
    load.BATCH_ROWS = batch_rows
    try:
        streamed = [table.to_pylist() for table in load._rows_to_load(path, verdict)]
    finally:
        load.BATCH_ROWS = original
    assert streamed == expected


def test_staged_rows_are_read_group_by_group(tmp_path) -> None:
    path = _staged(tmp_path, 25, 10)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    assert [t.num_rows for t in iter_rows(path, 10)] == [10, 10, 5]
    assert pa.concat_tables(iter_rows(path, 7)).to_pylist() == pq.read_table(path).to_pylist()
