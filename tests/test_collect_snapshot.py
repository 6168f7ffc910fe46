"""Snapshot and diff: row hashes, the diff itself (duplicates, keyless rows, many batches, bounded memory), and
how collect() keeps the baseline (beside the recorded landing; a run without a new snapshot keeps it)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from connectors.base import SourceError, Watermark
from connectors.collect import collect
from connectors.registry import RegistryError, _spec
from connectors.snapshot import KEYS_FILE, SnapshotDiff, row_hashes


class ListSource:
    """A connector over an in-memory table, read in batches of `batch_rows` (a stand-in for any full read)."""

    def __init__(self, table: pa.Table, primary_key: tuple[str, ...] = ("id",)) -> None:
        self.source_id, self.primary_key, self.replication_key = "t_list", primary_key, None
        self.table = table
        self.watermark = Watermark()

    def arrow_schema(self) -> pa.Schema:
        return self.table.schema

    def read_batches(self, since=None, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        yield from self.table.to_batches(max_chunksize=batch_rows)


def diff(table: pa.Table, baseline: Path | None, tmp: Path, batch_rows: int = 50_000, keys=("id",)) -> tuple[pa.Table, SnapshotDiff]:
    """Run one snapshot diff; returns the changed rows and the differ (for its details and keys)."""
    differ = SnapshotDiff(ListSource(table, keys), baseline, tmp / "work")
    batches = list(differ.read_batches(batch_rows=batch_rows))
    differ.close()
    return pa.Table.from_batches(batches, schema=differ.arrow_schema()), differ


def keep_keys(differ: SnapshotDiff, folder: Path) -> Path:
    """Write the snapshot's keys file as collect() would into a landing folder; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    differ.write_extras(folder)
    return folder / KEYS_FILE


def people(ids: range, name: str = "张") -> pa.Table:
    return pa.table({"id": pa.array(list(ids), pa.int64()), "name": [f"{name}{i}" for i in ids],
                     "born": pa.array([None if i % 7 == 0 else f"1990-01-{i % 28 + 1:02d}" for i in ids], pa.string())})


def test_row_hash_is_canonical() -> None:
    base = pa.table({"a": ["x", None], "b": pa.array([1, 2], pa.int64())})
    hashes = row_hashes(base, ["a", "b"])
    assert hashes.dtype == "uint64" and hashes[0] != hashes[1]
    # Column order does not matter; an added column that is empty changes nothing; lineage is left out.
    reordered = pa.table({"b": pa.array([1, 2], pa.int64()), "a": ["x", None]})
    assert list(row_hashes(reordered, ["b", "a"])) == list(hashes)
    added = base.append_column("c", pa.nulls(2, pa.string())).append_column("_file", pa.array(["f1", "f2"]))
    assert list(row_hashes(added, ["a", "b", "c"])) == list(hashes)
    # A value change, an empty string instead of a null, or the same value under another column all differ.
    assert row_hashes(pa.table({"a": ["y"], "b": [1]}), ["a", "b"])[0] != hashes[0]
    assert row_hashes(pa.table({"a": [""], "b": [2]}), ["a", "b"])[0] != hashes[1]
    swapped = pa.table({"a": pa.array([None], pa.string()), "b": pa.array(["x"])})
    assert row_hashes(swapped, ["a", "b"])[0] != row_hashes(pa.table({"a": ["x"], "b": pa.array([None], pa.string())}), ["a", "b"])[0]


def test_first_snapshot_is_all_inserts_then_exact_changes(tmp_path: Path) -> None:
    first, differ = diff(people(range(1, 101)), None, tmp_path)
    assert first.num_rows == 100 and set(first.column("_change").to_pylist()) == {"insert"}
    baseline = keep_keys(differ, tmp_path / "run1")
    assert pq.read_table(baseline).column_names == ["id", "_hash"]  # keys and hashes, nothing else

    changed = people(range(3, 106)).to_pylist()
    changed[0]["name"] = "李三"  # id 3 updated; 1 and 2 deleted; 101..105 inserted
    changed[1]["born"] = None  # id 4 updated (a value became null)
    second, differ = diff(pa.Table.from_pylist(changed, schema=people(range(1)).schema), baseline, tmp_path)
    kinds = dict(zip(second.column("id").to_pylist(), second.column("_change").to_pylist()))
    assert kinds == {3: "update", 4: "update", 1: "delete", 2: "delete"} | {i: "insert" for i in range(101, 106)}
    tombstones = second.filter(pa.compute.equal(second.column("_change"), "delete"))
    assert tombstones.column("name").null_count == 2 and tombstones.column("born").null_count == 2
    assert differ.details()["snapshot"] | {} == {
        "sent": True, "rows": 103, "inserts": 5, "updates": 2, "deletes": 2, "unchanged": 96, "unkeyed_rows": 0,
        "duplicate_keys": 0, "keys_file": KEYS_FILE, "baseline_run": None}


def test_many_batches_composite_key_and_bounded_memory(tmp_path: Path) -> None:
    rows = 60_000
    wide = "填" * 200  # ~600 bytes a row: the full rows must never be held at once
    table = pa.table({"region": pa.array(["420100", "420500"] * (rows // 2)), "no": pa.array(range(rows), pa.int64()),
                      "text": pa.array([wide] * rows)})
    _, differ = diff(table, None, tmp_path, batch_rows=10_000, keys=("region", "no"))
    baseline = keep_keys(differ, tmp_path / "run1")
    # Every 1000th row changes, the last 500 rows are gone, 300 new ones come.
    texts = pa.array([wide + "改" if i % 1000 == 0 else wide for i in range(rows - 500)] + [wide] * 300)
    regions = pa.array((["420100", "420500"] * (rows // 2))[: rows - 500] + ["429000"] * 300)
    numbers = pa.array(list(range(rows - 500)) + list(range(300)), pa.int64())
    changed = pa.table({"region": regions, "no": numbers, "text": texts})

    del table, texts, regions, numbers
    differ = SnapshotDiff(ListSource(changed, ("region", "no")), baseline, tmp_path / "work")
    before = pa.total_allocated_bytes()
    allocated, sizes, kinds = [], [], {}
    for batch in differ.read_batches(batch_rows=10_000):
        allocated.append(pa.total_allocated_bytes())
        sizes.append(batch.num_rows)
        for kind in batch.column(batch.schema.get_field_index("_change")).to_pylist():
            kinds[kind] = kinds.get(kind, 0) + 1
    differ.close()
    assert kinds == {"update": (rows - 500) // 1000 + 1, "insert": 300, "delete": 500}
    assert all(size == 10_000 for size in sizes[:-1])
    assert max(allocated) - before < changed.nbytes / 4, "the diff should hold keys and hashes, not whole snapshots"


def test_duplicate_keys_keep_the_last_row_and_keyless_rows_land_every_time(tmp_path: Path) -> None:
    table = pa.table({"id": pa.array([1, 2, 2, None, 3], pa.int64()), "name": ["a", "b-old", "b", "无主键", "c"]})
    first, differ = diff(table, None, tmp_path)
    landed = dict(zip(first.column("name").to_pylist(), first.column("_change").to_pylist()))
    assert landed == {"a": "insert", "b": "insert", "无主键": "insert", "c": "insert"}
    summary = differ.details()["snapshot"]
    assert summary["duplicate_keys"] == 1 and summary["unkeyed_rows"] == 1
    baseline = keep_keys(differ, tmp_path / "run1")
    again, _ = diff(table, baseline, tmp_path)
    assert again.column("name").to_pylist() == ["无主键"]  # only the row that cannot be followed


def test_a_retyped_key_is_compared_when_it_can_be_and_refused_when_not(tmp_path: Path) -> None:
    _, differ = diff(people(range(1, 4)), None, tmp_path)
    baseline = keep_keys(differ, tmp_path / "run1")
    as_text = people(range(1, 4)).set_column(0, "id", pa.array(["1", "2", "3"]))
    same, _ = diff(as_text, baseline, tmp_path)
    assert same.num_rows == 0  # hashes cover the values' text: ids retyped to text with the same text are unchanged
    _, differ = diff(pa.table({"id": ["A1"], "name": ["x"]}), None, tmp_path)
    text_baseline = keep_keys(differ, tmp_path / "run2")
    with pytest.raises(SourceError, match="retyped"):
        diff(people(range(1, 3)), text_baseline, tmp_path)


def test_registry_modes_are_checked() -> None:
    entry = {"id": "m", "department": "测试厅", "department_code": "t", "kind": "sql", "connection": "m", "library": "credit",
             "primary_key": ["id"], "fields": {"id": {"to": "record_id"}}}
    assert _spec(entry).mode == "snapshot" and not _spec(entry).can_backfill
    assert _spec(entry | {"replication_key": "gxsj"}).mode == "incremental" and _spec(entry | {"replication_key": "gxsj"}).can_backfill
    assert _spec(entry | {"kind": "file"}).mode == "incremental"
    with pytest.raises(RegistryError, match="mode"):
        _spec(entry | {"mode": "sometimes"})
    with pytest.raises(RegistryError, match="replication_key"):
        _spec(entry | {"mode": "incremental"})


@pytest.fixture
def drop(hub_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A snapshot file-drop source `t_list` registered and connected; returns its drop folder."""
    from hub.db import upgrade

    upgrade(hub_settings.database_url)
    folder = tmp_path / "drop"
    folder.mkdir()
    entry = {"id": "t_list", "department": "测试厅", "department_code": "t", "kind": "file", "connection": "t_list",
             "library": "legal_entity", "glob": "list_*.csv", "mode": "snapshot", "primary_key": ["序号"], "schedule": None,
             "fields": {"名称": {"to": "entity_name"}}}
    registry = tmp_path / "sources.yaml"
    registry.write_text(yaml.safe_dump({"sources": [entry]}, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("HUB_SOURCE_REGISTRY", str(registry))
    monkeypatch.setenv("AIRFLOW_CONN_T_LIST", json.dumps({"conn_type": "fs", "extra": {"path": str(folder)}}))
    return folder


def write_list(folder: Path, name: str, rows: dict[int, str]) -> None:
    lines = ["序号,名称"] + [f"{k},{v}" for k, v in rows.items()]
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_run_without_a_new_list_keeps_the_baseline(drop: Path) -> None:
    write_list(drop, "list_01.csv", {1: "甲", 2: "乙", 3: "丙"})
    assert collect("t_list", "r1")["rows"] == 3
    nothing = collect("t_list", "r2")
    assert nothing["rows"] == 0 and nothing["details"]["snapshot"] == {"sent": False}
    write_list(drop, "list_02.csv", {1: "甲", 3: "丙丙", 4: "丁"})
    landing = collect("t_list", "r3")
    table = pq.read_table(landing["path"])
    assert dict(zip(table.column("序号").to_pylist(), table.column("_change").to_pylist())) == {
        "3": "update", "4": "insert", "2": "delete"}
    assert landing["details"]["snapshot"]["baseline_run"] == "r1"
    assert collect("t_list", "r3") == landing  # a rerun of the run id changes nothing


def test_a_lost_baseline_stops_the_diff_with_a_clear_message(drop: Path, hub_settings) -> None:
    write_list(drop, "list_01.csv", {1: "甲"})
    first = collect("t_list", "r1")
    shutil.rmtree(Path(first["path"]).parent)
    write_list(drop, "list_02.csv", {1: "甲", 2: "乙"})
    with pytest.raises(SourceError) as failure:
        collect("t_list", "r2")
    assert "t_list" in str(failure.value) and "r1" in str(failure.value) and "restore" in str(failure.value)
