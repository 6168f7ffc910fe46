"""Staging standardises a landed run batch by batch (spooled, never held whole) into the file one pass would give."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.registry import get_source
from quality import staging
from schemas.mapping import standardise

COLUMNS = ("rkid", "gmsfhm", "xm", "xb", "mz", "csrq", "hjdz_xzqh", "hjdz", "lxdh", "hyzk", "swrq", "gxsj")


def _landing(folder: Path, rows: int) -> Path:
    """A 公安 landing of `rows` records in row groups of 3; 死亡日期 only in the last rows, errors in some."""
    values = {name: [f"{name}{i}" for i in range(rows)] for name in COLUMNS}
    values["rkid"] = [str(i) for i in range(rows)]
    values["xb"] = ["男" if i % 2 else "女" for i in range(rows)]
    values["csrq"] = ["1990-01-02" if i % 3 else "not a date" for i in range(rows)]
    values["swrq"] = [None if i < rows - 2 else "2020-05-06" for i in range(rows)]
    values["gxsj"] = ["2026-01-01 08:00:00"] * rows
    path = folder / "data.parquet"
    pq.write_table(pa.table({name: pa.array(v, pa.string()) for name, v in values.items()}), path, row_group_size=3)
    return path


def test_streamed_staging_equals_one_pass(tmp_path, hub_settings, monkeypatch) -> None:
    landing = _landing(tmp_path, 11)
    monkeypatch.setattr(staging, "BATCH_ROWS", 4)
    run = types.SimpleNamespace(source_id="gongan_hjrk", run_id="run-1", landing_path=str(landing))
    path = staging.stage_run(tmp_path / "staging", run)
    expected = standardise(pq.read_table(landing), get_source("gongan_hjrk"), "run-1")
    staged = pq.read_table(path)
    assert staged.schema.equals(expected.schema) and staged.equals(expected)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3  # 4 + 4 + 3 rows
    assert [p.name for p in path.parent.iterdir()] == ["rows.parquet"], "the spool is gone"
    assert staging.stage_run(tmp_path / "staging", run) == path  # staged once


def test_parts_in_one_schema_as_concatenation_gives(tmp_path) -> None:
    parts = [pa.table({"a": pa.nulls(2), "b": pa.array([1, 2])}),
             pa.table({"a": pa.array(["x", None]), "b": pa.array([3, 4]), "c": pa.array(["k", "l"])})]
    files = []
    for n, part in enumerate(parts):
        files.append(tmp_path / f"{n}.parquet")
        pq.write_table(part, files[-1])
    target = tmp_path / "rows.parquet"
    staging._write_parts_atomically(files, target)
    assert pq.read_table(target).equals(pa.concat_tables(parts, promote_options="permissive"))


@settings(max_examples=80, deadline=None)
@given(chunks=st.lists(st.integers(0, 7), min_size=1, max_size=6), data=st.data())
def test_take_rows_equals_take(chunks, data) -> None:
    tables = [pa.table({"k": pa.array([f"r{n}-{i}" for i in range(size)], pa.string()), "v": pa.array(range(size), pa.int64())})
              for n, size in enumerate(chunks)]
    table = pa.concat_tables(tables)
    rows = sorted(data.draw(st.sets(st.integers(0, max(table.num_rows - 1, 0)), max_size=table.num_rows)) if table.num_rows else [])
    taken = staging.take_rows(table, np.array(rows, dtype=np.int64))
    assert taken.to_pylist() == table.take(pa.array(rows, pa.int64())).to_pylist()
    assert taken.schema.equals(table.schema)
